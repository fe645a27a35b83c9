use std::path::PathBuf;

use super::parse::{self, CgroupLayout, ConfigValue};
use super::tracefs::find_tracefs;
use super::*;

const MOUNTS_HYBRID: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
debugfs /sys/kernel/debug debugfs rw,relatime 0 0
tracefs /sys/kernel/debug/tracing tracefs rw,relatime 0 0
/dev/sda1 /mnt/my\\040disk ext4 rw 0 0
";

#[test]
fn mounts_parse_fields_and_octal_escapes() {
    let mounts = parse::parse_mounts(MOUNTS_HYBRID);
    assert_eq!(mounts.len(), 7);
    assert_eq!(mounts[3].fstype, "cgroup2");
    assert_eq!(mounts[3].source, "cgroup2");
    assert_eq!(mounts[6].mount_point, PathBuf::from("/mnt/my disk"));
    // A truncated escape is kept literally rather than dropped.
    let odd = parse::parse_mounts("a /x\\04 ext4 rw 0 0\n\nshort\n");
    assert_eq!(odd.len(), 1);
    assert_eq!(odd[0].mount_point, PathBuf::from("/x\\04"));
}

#[test]
fn cgroup_layout_hybrid_vs_unified() {
    let hybrid = parse::parse_mounts(MOUNTS_HYBRID);
    assert_eq!(
        parse::cgroup2_layout(&hybrid),
        Some((
            PathBuf::from("/sys/fs/cgroup/unified"),
            CgroupLayout::Hybrid
        ))
    );
    let unified = parse::parse_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n");
    assert_eq!(
        parse::cgroup2_layout(&unified),
        Some((PathBuf::from("/sys/fs/cgroup"), CgroupLayout::Unified))
    );
    assert_eq!(parse::cgroup2_layout(&[]), None);
}

#[test]
fn tracefs_location_prefers_modern_path() {
    let legacy = parse::parse_mounts(MOUNTS_HYBRID);
    assert_eq!(
        find_tracefs(&legacy),
        Some(PathBuf::from("/sys/kernel/debug/tracing"))
    );
    let both = parse::parse_mounts(
        "tracefs /sys/kernel/debug/tracing tracefs rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\n",
    );
    assert_eq!(
        find_tracefs(&both),
        Some(PathBuf::from("/sys/kernel/tracing"))
    );
    let elsewhere = parse::parse_mounts("nodev /tmp/t tracefs rw 0 0\n");
    assert_eq!(find_tracefs(&elsewhere), Some(PathBuf::from("/tmp/t")));
    assert_eq!(
        find_tracefs(&parse::parse_mounts("proc /proc proc rw 0 0\n")),
        None
    );
}

#[test]
fn cap_eff_parsing() {
    let status = "Name:\tsonde\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                  CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
    let mask = parse::parse_cap_eff(status).expect("CapEff present");
    assert_eq!(mask, 0x0000_01ff_feff_ffff);
    assert!(parse::has_cap(mask, 39)); // CAP_BPF
    assert!(parse::has_cap(mask, 21)); // CAP_SYS_ADMIN
    assert!(!parse::has_cap(mask, 24)); // CAP_SYS_RESOURCE dropped in this mask
    assert!(!parse::has_cap(mask, 64));
    assert_eq!(parse::parse_cap_eff("CapEff:\t0000000000000000\n"), Some(0));
    assert_eq!(parse::parse_cap_eff("CapPrm:\t01\n"), None);
    assert_eq!(parse::parse_cap_eff("CapEff:\tzz\n"), None);
}

#[test]
fn lockdown_parsing() {
    assert_eq!(
        parse::parse_lockdown("none [integrity] confidentiality\n"),
        Some("integrity")
    );
    assert_eq!(
        parse::parse_lockdown("[none] integrity confidentiality\n"),
        Some("none")
    );
    assert_eq!(
        parse::parse_lockdown("none integrity [confidentiality]"),
        Some("confidentiality")
    );
    assert_eq!(parse::parse_lockdown("none integrity"), None);
    assert_eq!(parse::parse_lockdown("[]"), None);
}

#[test]
fn kernel_config_lookup() {
    let config = "\
# CONFIG_KPROBES is not set
CONFIG_KPROBES_ON_FTRACE=y
CONFIG_UPROBES=y
CONFIG_HZ=250
CONFIG_LOCALVERSION=\"-fc\"
";
    assert_eq!(
        parse::kernel_config(config, "CONFIG_KPROBES"),
        ConfigValue::NotSet
    );
    assert_eq!(
        parse::kernel_config(config, "CONFIG_UPROBES"),
        ConfigValue::Set("y".into())
    );
    assert_eq!(
        parse::kernel_config(config, "CONFIG_HZ"),
        ConfigValue::Set("250".into())
    );
    // Prefix of a longer option name must not match.
    assert_eq!(
        parse::kernel_config(config, "CONFIG_UPROBE"),
        ConfigValue::Absent
    );
    assert_eq!(
        parse::kernel_config(config, "CONFIG_BPF"),
        ConfigValue::Absent
    );
}

#[test]
fn kernel_version_parsing() {
    assert_eq!(parse::kernel_major_minor("6.18.44-fc-v669"), Some((6, 18)));
    assert_eq!(parse::kernel_major_minor("5.4.0"), Some((5, 4)));
    assert_eq!(parse::kernel_major_minor("garbage"), None);
}

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
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
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
