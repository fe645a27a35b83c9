use super::*;

fn check(name: &'static str, state: State) -> Check {
    Check {
        name,
        state,
        detail: String::new(),
        impact: String::new(),
    }
}

fn all_ok() -> Vec<Check> {
    CHECK_NAMES.iter().map(|n| check(n, State::Ok)).collect()
}

fn set(checks: &mut [Check], name: &str, state: State) {
    if let Some(c) = checks.iter_mut().find(|c| c.name == name) {
        c.state = state;
    }
}

#[test]
fn verdict_prefers_cheapest_available_hooks() {
    let mut checks = all_ok();
    let summary = |checks: &[Check]| Verdict::from_checks(checks).summary;
    assert_eq!(
        summary(&checks),
        "Sonde can trace HTTP on this host using socket-layer tracepoints \
         (sock_send_length/sock_recv_length)"
    );
    set(&mut checks, "socket_tracepoints", State::Missing);
    assert_eq!(
        summary(&checks),
        "Sonde can trace HTTP on this host using fexit hooks on the socket layer (BPF trampolines)"
    );
    set(&mut checks, "fentry", State::Denied);
    assert_eq!(
        summary(&checks),
        "Sonde can trace HTTP on this host using kretprobes on the socket layer"
    );
    set(&mut checks, "kprobes", State::Missing);
    set(&mut checks, "lockdown", State::Denied);
    set(&mut checks, "probe_write_user", State::Denied);
    let v = Verdict::from_checks(&checks);
    assert!(v.can_trace);
    assert_eq!(
        v.summary,
        "Sonde can trace HTTP on this host using syscall tracepoints"
    );
    assert_eq!(v.limitations.len(), 1, "{:?}", v.limitations);

    set(&mut checks, "syscall_tracepoints", State::Missing);
    let v = Verdict::from_checks(&checks);
    assert!(!v.can_trace);
    assert!(v.summary.contains("no socket-data hooks"), "{}", v.summary);
}

#[test]
fn verdict_names_blockers() {
    let mut checks = all_ok();
    set(&mut checks, "btf", State::Missing);
    set(&mut checks, "ringbuf", State::Denied);
    let v = Verdict::from_checks(&checks);
    assert!(!v.can_trace);
    assert!(v.summary.contains("btf (MISSING)"), "{}", v.summary);
    assert!(v.summary.contains("ringbuf (DENIED)"), "{}", v.summary);
}

#[test]
fn text_and_json_output() {
    let mut checks = all_ok();
    checks[6] = Check {
        name: "kprobes",
        state: State::Missing,
        detail: "absent".into(),
        impact: "costs a bit".into(),
    };
    let report = HostReport::new(checks);
    let mut text = Vec::new();
    print_report(&report, false, &mut text).expect("write to Vec");
    let text = String::from_utf8(text).expect("utf8");
    assert!(text.contains("MISSING  kprobes"), "{text}");
    assert!(text.contains("-> costs a bit"), "{text}");
    assert!(
        text.trim_end()
            .lines()
            .any(|l| l.starts_with("Verdict: Sonde can trace"))
    );

    let mut json = Vec::new();
    print_report(&report, true, &mut json).expect("write to Vec");
    let value: serde_json::Value = serde_json::from_slice(&json).expect("valid json");
    assert_eq!(value["checks"][6]["state"], "missing");
    assert_eq!(value["verdict"]["can_trace"], true);
}

/// Runs every real probe on this machine and checks the report's shape.
#[test]
fn probe_host_structural_sanity() {
    let report = probe_host();
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, CHECK_NAMES, "every check present, in order");
    for c in &report.checks {
        assert!(!c.detail.is_empty(), "{} has no detail", c.name);
        assert_eq!(
            c.impact.is_empty(),
            c.state == State::Ok,
            "{}: impact must be empty exactly when Ok: {c:?}",
            c.name
        );
    }
    if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert_eq!(report.get("btf").map(|c| c.state), Some(State::Ok));
        if crate::sys::host::euid() == 0 {
            // As root the doctor loads every program: a kernel that refuses one of ours
            // (where it offers the hook) is a bug to fix, not a host limitation.
            for name in ["probe_programs", "inject_programs"] {
                let check = report.get(name);
                assert_eq!(check.map(|c| c.state), Some(State::Ok), "{check:?}");
            }
            for family in [
                "socket_tracepoints",
                "fentry",
                "kprobes",
                "syscall_tracepoints",
            ] {
                let check = report.get(family);
                assert!(
                    check.is_some_and(|c| !c.detail.contains("refuses Sonde's")),
                    "{check:?}"
                );
            }
        }
    }
    assert_eq!(report.verdict, Verdict::from_checks(&report.checks));

    let mut out = Vec::new();
    print_report(&report, false, &mut out).expect("write to Vec");
    println!("{}", String::from_utf8_lossy(&out));
}
