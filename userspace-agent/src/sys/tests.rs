//! The parsers of the kernel's text files, on literal inputs.

use std::path::PathBuf;

use super::fs::find_tracefs;
use super::parse::{self, CgroupLayout, ConfigValue};

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
