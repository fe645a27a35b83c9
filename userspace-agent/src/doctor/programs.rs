//! Sonde's own programs through this kernel's verifier.
//!
//! A kernel can offer a hook (an empty program loads on it) and still refuse the program
//! Sonde runs there: verifiers differ in how much work they accept, even between builds
//! of one kernel version. So the doctor loads the real programs (the verifier matrix,
//! nothing attached) and judges each hook family by its own programs.

use crate::attach::hooks::{DataHooks, LIFECYCLE};
use crate::attach::matrix::{LoadState, Matrix, ProgramLoad};

use super::{Check, State};

/// The checks that say whether each data-hook family is offered, by family.
const FAMILY_CHECKS: &[(DataHooks, &str)] = &[
    (DataHooks::SocketTracepoints, "socket_tracepoints"),
    (DataHooks::Fexit, "fentry"),
    (DataHooks::Kprobes, "kprobes"),
    (DataHooks::SyscallTracepoints, "syscall_tracepoints"),
];

/// Loads every program and folds the outcome into `checks`: see [`judge`].
pub(super) fn check_programs(checks: &mut Vec<Check>) {
    match crate::attach::matrix::load_every_program() {
        Ok(matrix) => {
            let check = judge(&matrix, checks);
            checks.push(check);
        }
        Err(e) => checks.push(Check::bad(
            "probe_programs",
            State::Unknown,
            format!("could not open the probe object: {e:#}"),
            "Sonde cannot load its probes here",
        )),
    }
}

/// Marks a family whose programs the verifier rejects as denied (the agent falls back
/// to the next family, and so does the verdict), and returns the `probe_programs` check
/// for the programs every run loads: process and connection lifecycle, and injection.
pub(super) fn judge(matrix: &Matrix, checks: &mut [Check]) -> Check {
    let rejected = |p: &&ProgramLoad| p.state == LoadState::Rejected;
    for (family, name) in FAMILY_CHECKS {
        let Some(check) = checks
            .iter_mut()
            .find(|c| c.name == *name && c.state == State::Ok)
        else {
            continue;
        };
        let refused: Vec<&ProgramLoad> = matrix
            .programs
            .iter()
            .filter(rejected)
            .filter(|p| family.every_program_of().any(|h| h.program == p.program))
            .collect();
        if !refused.is_empty() {
            check.state = State::Denied;
            check.detail = format!(
                "{}; but this kernel's verifier rejects Sonde's {}",
                check.detail,
                describe(&refused)
            );
            check.impact = format!(
                "Sonde cannot use the {} hooks here and falls back to the next family \
                 (`sonde doctor --verifier-matrix` shows the verifier's log; please report it)",
                family.name()
            );
        }
    }

    let in_a_family = |p: &ProgramLoad| DataHooks::every_program().any(|h| h.program == p.program);
    let refused: Vec<&ProgramLoad> = matrix
        .programs
        .iter()
        .filter(rejected)
        .filter(|p| !in_a_family(p))
        .collect();
    if refused.is_empty() {
        let count = |state| matrix.programs.iter().filter(|p| p.state == state).count();
        let mut detail = format!(
            "this kernel's verifier accepts {} of Sonde's programs; {} need hooks it lacks",
            count(LoadState::Ok),
            count(LoadState::Unavailable)
        );
        let data_refused = count(LoadState::Rejected);
        if data_refused > 0 {
            detail.push_str(&format!(
                "; {data_refused} socket-data programs are rejected (their hook family above)"
            ));
        }
        return Check::ok("probe_programs", detail);
    }
    let lifecycle = refused
        .iter()
        .any(|p| LIFECYCLE.iter().any(|h| h.program == p.program));
    let impact = if lifecycle {
        "Sonde cannot run here: it follows processes and connections with these programs"
    } else {
        "`sonde attach` fails while injection is on: `--no-inject` runs without these programs"
    };
    Check::bad(
        "probe_programs",
        State::Denied,
        format!("this kernel's verifier rejects {}", describe(&refused)),
        format!(
            "{impact} (`sonde doctor --verifier-matrix` shows the verifier's log; please report it)"
        ),
    )
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
            verifier_budget: crate::attach::matrix::VERIFIER_BUDGET,
        }
    }

    fn offered(name: &'static str) -> Check {
        Check::ok(name, "hook offered")
    }

    #[test]
    fn a_family_whose_programs_are_rejected_is_denied() {
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
        let programs = judge(&matrix, &mut checks);

        assert_eq!(checks[0].state, State::Denied);
        assert!(
            checks[0]
                .detail
                .contains("rejects Sonde's sonde_sock_send (")
        );
        assert!(checks[0].impact.contains("socket-tracepoints"));
        assert_eq!(checks[1].state, State::Ok, "{:?}", checks[1]);
        // Data programs are judged by their family, not here.
        assert_eq!(programs.state, State::Ok, "{programs:?}");
        assert!(
            programs
                .detail
                .contains("accepts 4 of Sonde's programs; 1 need"),
            "{programs:?}"
        );
        assert!(
            programs
                .detail
                .contains("1 socket-data programs are rejected")
        );

        // The verdict then names the family the agent falls back to.
        let verdict = super::super::Verdict::from_checks(&[
            Check::ok("btf", ""),
            Check::ok("bpf_syscall", ""),
            Check::ok("ringbuf", ""),
            Check::ok("tracefs", ""),
            programs,
            checks[0].clone(),
            checks[1].clone(),
        ]);
        assert!(verdict.can_trace);
        assert!(
            verdict.summary.ends_with("syscall tracepoints"),
            "{verdict:?}"
        );
    }

    #[test]
    fn rejected_lifecycle_or_injection_programs_are_reported_with_their_cost() {
        let lifecycle = matrix(vec![
            row("sonde_tp_sched_exec", LoadState::Rejected),
            row("sonde_sk_msg", LoadState::Ok),
        ]);
        let check = judge(&lifecycle, &mut []);
        assert_eq!(check.state, State::Denied);
        assert!(check.detail.contains("sonde_tp_sched_exec"));
        assert!(check.impact.starts_with("Sonde cannot run here"));

        let injection = matrix(vec![
            row("sonde_tp_sched_exec", LoadState::Ok),
            row("sonde_sk_msg", LoadState::Rejected),
        ]);
        let check = judge(&injection, &mut []);
        assert_eq!(check.state, State::Denied);
        assert!(check.impact.contains("--no-inject"), "{check:?}");
    }
}
