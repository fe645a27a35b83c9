//! Sonde's own programs, loaded (never attached) on this kernel.
//!
//! A kernel can offer a hook (an empty program loads on it) and still refuse the program
//! Sonde runs there: verifiers differ in how much work they accept, even between builds
//! of one kernel version. So the doctor loads the real programs (the verifier matrix)
//! and judges each hook family by the programs it would attach on this kernel.

use aya::Btf;

use crate::programs::{
    DataHooks, LIFECYCLE, LoadState, Matrix, ProgramLoad, load_every_program_with,
};

use super::{Check, State};
use crate::sys::features::{self, Feature};

/// The checks that say whether each data-hook family is offered, by family.
const FAMILY_CHECKS: &[(DataHooks, &str)] = &[
    (DataHooks::SocketTracepoints, "socket_tracepoints"),
    (DataHooks::Fexit, "fentry"),
    (DataHooks::Kprobes, "kprobes"),
    (DataHooks::SyscallTracepoints, "syscall_tracepoints"),
];

const REPORT: &str = "`sonde doctor --verifier-matrix` shows why; please report it";

/// Loads every program and folds the outcome into `checks`, which hold the checks made
/// before (the family checks, `bpf_syscall` and `btf` among them): see [`judge`].
/// `btf` is the kernel's, `fentry` what probing BPF trampolines found.
pub(super) fn check_programs(checks: &mut Vec<Check>, btf: Result<&Btf, &str>, fentry: &Feature) {
    let ok = |name: &str| {
        checks
            .iter()
            .any(|c| c.name == name && c.state == State::Ok)
    };
    let matrix = if ok("bpf_syscall") && ok("btf") {
        load_every_program_with(btf, fentry)
            .map_err(|e| format!("could not open the probe object: {e:#}"))
    } else {
        Err("not loaded: needs the BPF syscall and kernel BTF".to_owned())
    };
    let judged = match matrix {
        Ok(matrix) => judge(
            &matrix,
            checks,
            btf.is_ok_and(features::sendfile_via_sendmsg),
        ),
        Err(why) => ["probe_programs", "inject_programs"].map(|name| {
            Check::bad(
                name,
                State::Unknown,
                why.clone(),
                "Sonde cannot load its probes here",
            )
        }),
    };
    checks.extend(judged);
}

/// Marks a family some of whose programs this kernel refuses as denied (the agent falls
/// back to the next family, and so does the verdict), and returns the `probe_programs`
/// check (process and connection lifecycle: every run needs them) and the
/// `inject_programs` check (sock_ops, sk_msg and the arming iterator: without them the
/// agent traces without injecting). `via_sendmsg`: sendfile reaches sendmsg here, so the
/// families need no sendfile program of their own.
pub(super) fn judge(matrix: &Matrix, checks: &mut [Check], via_sendmsg: bool) -> [Check; 2] {
    let refused = |p: &&ProgramLoad| p.state == LoadState::Rejected;
    for (family, name) in FAMILY_CHECKS {
        let Some(check) = checks
            .iter_mut()
            .find(|c| c.name == *name && c.state == State::Ok)
        else {
            continue;
        };
        let programs: Vec<&ProgramLoad> = matrix
            .programs
            .iter()
            .filter(refused)
            .filter(|p| {
                family
                    .programs_where(via_sendmsg)
                    .any(|h| h.program == p.program)
            })
            .collect();
        if !programs.is_empty() {
            check.state = State::Denied;
            check.detail = format!(
                "{}; but this kernel refuses Sonde's {}",
                check.detail,
                describe(&programs)
            );
            check.impact = format!(
                "Sonde cannot use the {} hooks here and falls back to the next family ({REPORT})",
                family.name()
            );
        }
    }

    let lifecycle = |p: &ProgramLoad| LIFECYCLE.iter().any(|h| h.program == p.program);
    let data = |p: &ProgramLoad| DataHooks::every_program().any(|h| h.program == p.program);
    let count = |state| matrix.programs.iter().filter(|p| p.state == state).count();

    let refused_lifecycle: Vec<&ProgramLoad> = matrix
        .programs
        .iter()
        .filter(refused)
        .filter(|p| lifecycle(p))
        .collect();
    let probe_programs = refusal(
        "probe_programs",
        &refused_lifecycle,
        "Sonde cannot run here: it follows processes and connections with these programs",
    )
    .unwrap_or_else(|| {
        let mut detail = format!(
            "this kernel loads {} of Sonde's programs; {} need hooks it lacks",
            count(LoadState::Ok),
            count(LoadState::Unavailable)
        );
        let refused_elsewhere = count(LoadState::Rejected);
        if refused_elsewhere > 0 {
            detail.push_str(&format!(
                "; it refuses {refused_elsewhere} (under their hook family or inject_programs)"
            ));
        }
        Check::ok("probe_programs", detail)
    });

    let injection: Vec<&ProgramLoad> = matrix
        .programs
        .iter()
        .filter(|p| !lifecycle(p) && !data(p))
        .collect();
    let refused_injection: Vec<&ProgramLoad> = injection.iter().copied().filter(refused).collect();
    let inject_programs = refusal(
        "inject_programs",
        &refused_injection,
        "no traceparent injection: the agent traces without it and says so at start",
    )
    .unwrap_or_else(|| {
        let names: Vec<&str> = injection.iter().map(|p| p.program.as_str()).collect();
        Check::ok(
            "inject_programs",
            format!("this kernel loads {}", names.join(", ")),
        )
    });
    [probe_programs, inject_programs]
}

/// The check `name` denied for the `refused` programs and what that costs, or `None`
/// when none was refused.
fn refusal(name: &'static str, refused: &[&ProgramLoad], impact: &str) -> Option<Check> {
    (!refused.is_empty()).then(|| {
        Check::bad(
            name,
            State::Denied,
            format!("this kernel refuses {}", describe(refused)),
            format!("{impact} ({REPORT})"),
        )
    })
}

/// "sonde_a, sonde_b (the verifier rejected it: ...)": names, and the first reason.
fn describe(programs: &[&ProgramLoad]) -> String {
    let names: Vec<&str> = programs.iter().map(|p| p.program.as_str()).collect();
    let why = programs.first().map_or("", |p| p.error.as_str());
    format!("{} ({why})", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(program: &str, state: LoadState) -> ProgramLoad {
        ProgramLoad {
            program: program.to_owned(),
            kind: "test",
            state,
            error: match state {
                LoadState::Ok => String::new(),
                _ => "the verifier rejected it: Argument list too long (os error 7)".to_owned(),
            },
            log_tail: Vec::new(),
            verified_insns: None,
        }
    }

    fn matrix(programs: Vec<ProgramLoad>) -> Matrix {
        Matrix {
            programs,
            verifier_budget: crate::programs::VERIFIER_BUDGET,
        }
    }

    fn offered(name: &'static str) -> Check {
        Check::ok(name, "hook offered")
    }

    /// The checks the verdict needs besides the ones under test.
    fn basics() -> Vec<Check> {
        [
            "btf",
            "bpf_syscall",
            "ringbuf",
            "tracefs",
            "cgroup2",
            "CAP_NET_ADMIN",
            "uprobes",
        ]
        .into_iter()
        .map(offered)
        .collect()
    }

    #[test]
    fn a_family_whose_programs_are_refused_is_denied() {
        let matrix = matrix(vec![
            row("sonde_sock_send", LoadState::Rejected),
            row("sonde_sock_recv", LoadState::Ok),
            row("sonde_tp_exit_read", LoadState::Ok),
            row("sonde_fexit_inet_sendmsg", LoadState::Unavailable),
            row("sonde_tp_sched_fork", LoadState::Ok),
            row("sonde_sk_msg", LoadState::Ok),
        ]);
        let mut checks = vec![
            offered("socket_tracepoints"),
            offered("syscall_tracepoints"),
        ];
        let [programs, inject] = judge(&matrix, &mut checks, true);

        assert_eq!(checks[0].state, State::Denied);
        assert!(
            checks[0]
                .detail
                .contains("refuses Sonde's sonde_sock_send (the verifier rejected it")
        );
        assert!(checks[0].impact.contains("socket-tracepoints"));
        assert_eq!(checks[1].state, State::Ok, "{:?}", checks[1]);
        // Data programs are judged by their family, not here.
        assert_eq!(programs.state, State::Ok, "{programs:?}");
        assert!(
            programs
                .detail
                .contains("loads 4 of Sonde's programs; 1 need hooks it lacks; it refuses 1"),
            "{programs:?}"
        );
        assert_eq!(inject.state, State::Ok, "{inject:?}");

        // The verdict then names the family the agent falls back to.
        let mut all = basics();
        all.extend([programs, inject, checks[0].clone(), checks[1].clone()]);
        let verdict = super::super::Verdict::from_checks(&all);
        assert!(verdict.can_trace);
        assert!(
            verdict.summary.ends_with("syscall tracepoints"),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_sendfile_hook_this_kernel_does_not_need_is_not_held_against_its_family() {
        let matrix = matrix(vec![
            row("sonde_sock_send", LoadState::Ok),
            row("sonde_sock_recv", LoadState::Ok),
            row("sonde_tp_exit_sendfile64", LoadState::Rejected),
        ]);
        let mut checks = vec![offered("socket_tracepoints")];
        judge(&matrix, &mut checks, true);
        assert_eq!(checks[0].state, State::Ok, "sendfile reaches sendmsg here");
        judge(&matrix, &mut checks, false);
        assert_eq!(checks[0].state, State::Denied, "here the family needs it");
    }

    #[test]
    fn refused_lifecycle_programs_block_and_refused_injection_only_limits() {
        let lifecycle = matrix(vec![
            row("sonde_tp_sched_exec", LoadState::Rejected),
            row("sonde_sk_msg", LoadState::Ok),
        ]);
        let [programs, inject] = judge(&lifecycle, &mut [], true);
        assert_eq!(programs.state, State::Denied);
        assert!(programs.detail.contains("sonde_tp_sched_exec"));
        assert!(programs.impact.starts_with("Sonde cannot run here"));
        assert_eq!(inject.state, State::Ok);
        let mut all = basics();
        all.extend([offered("socket_tracepoints"), programs, inject]);
        assert!(!super::super::Verdict::from_checks(&all).can_trace);

        let injection = matrix(vec![
            row("sonde_tp_sched_exec", LoadState::Ok),
            row("sonde_sk_msg", LoadState::Rejected),
            row("sonde_sockops", LoadState::Ok),
        ]);
        let [programs, inject] = judge(&injection, &mut [], true);
        assert_eq!(programs.state, State::Ok);
        assert_eq!(inject.state, State::Denied);
        assert!(inject.detail.contains("refuses sonde_sk_msg"), "{inject:?}");
        let mut all = basics();
        all.extend([offered("socket_tracepoints"), programs, inject]);
        let verdict = super::super::Verdict::from_checks(&all);
        assert!(verdict.can_trace, "{verdict:?}");
        assert!(
            verdict
                .limitations
                .iter()
                .any(|l| l.starts_with("no traceparent injection")),
            "{verdict:?}"
        );
    }
}
