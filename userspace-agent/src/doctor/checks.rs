//! Each host check: observe, then classify into a [`Check`].

use std::error::Error;
use std::io;
use std::path::{Path, PathBuf};

use aya::Btf;
use aya_obj::generated::bpf_map_type;

use super::{Check, HostReport, State};
use crate::sys::bpf::{self, BpfError};
use crate::sys::features::{self, Feature, Support};
use crate::sys::fs::{self, MountError, MountOrigin};
use crate::sys::host::{
    self, CAP_BPF, CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE,
    CAP_SYS_RESOURCE,
};
use crate::sys::parse::{self, CgroupLayout};
use crate::sys::sockmap::{self, FionreadProbe};

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";

/// Probes what this host allows. Needs no arguments and never fails: anything it
/// cannot determine is reported as [`State::Unknown`].
///
/// Side effects: mounts tracefs and securityfs if they are not mounted (the agent
/// needs the former anyway), briefly attaches an empty fentry program, and loads (never
/// attaches) every program of the probe object.
pub fn probe_host() -> HostReport {
    let uname = host::uname();
    let release = uname.as_ref().ok().map(|(r, _)| r.clone());
    let mounts = std::fs::read_to_string("/proc/mounts").map(|t| parse::parse_mounts(&t));
    let cap_eff = host::effective_caps();
    let tracefs = fs::ensure_tracefs_with_origin();
    let btf = features::kernel_btf();
    let btf = btf.as_ref().map_err(String::as_str);

    let mut checks = vec![
        kernel_check(&uname),
        arch_check(&uname),
        btf_check(),
        bpf_syscall_check(),
        ringbuf_check(),
        lockdown_check(),
        kprobes_check(release.as_deref()),
    ];
    // Kept: loading Sonde's fexit programs below depends on it.
    let fentry = features::fentry(btf);
    checks.extend([
        fentry_check(&fentry),
        probe_write_user_check(),
        tracefs_check(&tracefs),
        syscall_tracepoints_check(&tracefs),
        socket_tracepoints_check(btf),
    ]);
    super::programs::check_programs(&mut checks, btf, &fentry);
    checks.extend([cgroup2_check(&mounts), sockmap_fionread_check()]);
    checks.extend(CAPS.iter().map(|cap| capability_check(cap, cap_eff)));
    checks.push(uprobes_check(cap_eff));
    checks.push(unprivileged_bpf_check());
    checks.push(memlock_check(release.as_deref()));
    HostReport::new(checks)
}

fn kernel_check(uname: &io::Result<(String, String)>) -> Check {
    match uname {
        Ok((release, _)) => Check::ok("kernel", release.clone()),
        Err(e) => Check::bad(
            "kernel",
            State::Unknown,
            format!("uname failed: {e}"),
            "none by itself (informational)",
        ),
    }
}

fn arch_check(uname: &io::Result<(String, String)>) -> Check {
    match uname {
        Ok((_, machine)) if machine == "x86_64" => Check::ok("arch", machine.clone()),
        Ok((_, machine)) => Check::bad(
            "arch",
            State::Unknown,
            machine.clone(),
            "Sonde's probes are built and tested for x86_64 only; other architectures are untested",
        ),
        Err(e) => Check::bad(
            "arch",
            State::Unknown,
            format!("uname failed: {e}"),
            "none by itself (informational)",
        ),
    }
}

fn btf_check() -> Check {
    const IMPACT: &str = "Sonde cannot run: its probes are CO-RE and need kernel BTF \
                          (a kernel built with CONFIG_DEBUG_INFO_BTF=y)";
    let mut magic = [0u8; 2];
    let read = std::fs::File::open(BTF_PATH).and_then(|mut f| {
        io::Read::read_exact(&mut f, &mut magic)?;
        f.metadata()
    });
    match read {
        // BTF magic 0xeB9F, little-endian on the hosts we support.
        Ok(meta) if magic == [0x9f, 0xeb] => {
            Check::ok("btf", format!("{BTF_PATH} ({} KiB)", meta.len() / 1024))
        }
        Ok(_) => Check::bad(
            "btf",
            State::Unknown,
            format!("{BTF_PATH} exists but has no BTF magic ({magic:02x?})"),
            IMPACT,
        ),
        Err(e) => Check::bad("btf", io_state(&e), format!("{BTF_PATH}: {e}"), IMPACT),
    }
}

/// `error: its source: ...`, the whole chain on one line (as anyhow's `{:#}` prints it).
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Classifies a file-access error: absent vs refused vs other.
fn io_state(e: &io::Error) -> State {
    match e.kind() {
        io::ErrorKind::NotFound => State::Missing,
        io::ErrorKind::PermissionDenied => State::Denied,
        _ => State::Unknown,
    }
}

fn bpf_state(e: &BpfError) -> State {
    State::from(Support::from(e))
}

fn bpf_syscall_check() -> Check {
    match bpf::try_create_map(bpf_map_type::BPF_MAP_TYPE_ARRAY, 4, 4, 1) {
        Ok(()) => Check::ok("bpf_syscall", "created and closed a BPF array map"),
        Err(e) => {
            let state = bpf_state(&e);
            let impact = match state {
                State::Denied => {
                    "Sonde cannot load anything: run it as root (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN)"
                }
                State::Missing => "Sonde cannot run: the kernel has no usable bpf() syscall",
                _ => "Sonde probably cannot load its probes",
            };
            Check::bad("bpf_syscall", state, e.to_string(), impact)
        }
    }
}

fn ringbuf_check() -> Check {
    let size = u32::try_from(host::page_size()).unwrap_or(4096);
    match bpf::try_create_map(bpf_map_type::BPF_MAP_TYPE_RINGBUF, 0, 0, size) {
        Ok(()) => Check::ok(
            "ringbuf",
            format!("created and closed a {size}-byte BPF ring buffer"),
        ),
        Err(e) => {
            let state = bpf_state(&e);
            let impact = match state {
                State::Denied => "Sonde cannot create its event channel: run it as root",
                State::Missing => {
                    "Sonde cannot run: BPF ring buffers (Linux 5.8+) carry all its events"
                }
                _ => "Sonde probably cannot create its event channel",
            };
            Check::bad("ringbuf", state, e.to_string(), impact)
        }
    }
}

fn lockdown_check() -> Check {
    let dir = match fs::ensure_securityfs() {
        Ok((dir, _)) => dir,
        Err(e) => {
            return Check::bad(
                "lockdown",
                State::Unknown,
                chain(&e),
                "cannot tell whether bpf_probe_write_user is allowed; injection assumes sk_msg",
            );
        }
    };
    let file = dir.join("lockdown");
    match std::fs::read_to_string(&file) {
        Ok(text) => match parse::parse_lockdown(&text) {
            Some("none") => Check::ok("lockdown", "none"),
            Some(mode) => Check::bad(
                "lockdown",
                State::Denied,
                format!("{mode} ({})", text.trim()),
                lockdown_impact(mode),
            ),
            None => Check::bad(
                "lockdown",
                State::Unknown,
                format!("unexpected content {:?}", text.trim()),
                "cannot tell whether bpf_probe_write_user is allowed; injection assumes sk_msg",
            ),
        },
        // No lockdown LSM in this kernel: nothing is locked down.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Check::ok("lockdown", "lockdown LSM not built in (same as none)")
        }
        Err(e) => Check::bad(
            "lockdown",
            io_state(&e),
            format!("{}: {e}", file.display()),
            "cannot tell whether bpf_probe_write_user is allowed; injection assumes sk_msg",
        ),
    }
}

fn lockdown_impact(mode: &str) -> String {
    let base = "bpf_probe_write_user is refused, so traceparent injection relies on sk_msg \
                (needs cgroup v2 and CAP_NET_ADMIN)";
    if mode == "confidentiality" {
        format!(
            "{base}; reading kernel memory from probes is refused too, so sockets may not be identified"
        )
    } else {
        base.to_owned()
    }
}

fn kprobes_check(release: Option<&str>) -> Check {
    feature_check(
        "kprobes",
        features::kprobes(release),
        "no kretprobe hooks on the socket layer (used where neither socket \
         tracepoints nor BPF trampolines exist)",
    )
}

fn socket_tracepoints_check(btf: Result<&Btf, &str>) -> Check {
    feature_check(
        "socket_tracepoints",
        features::socket_tracepoints(btf),
        "socket data is hooked elsewhere (fexit, kprobes or syscall tracepoints, in that \
         order): syscall tracepoints put every process of the host on the slow syscall path",
    )
}

fn fentry_check(fentry: &Feature) -> Check {
    feature_check(
        "fentry",
        fentry.clone(),
        "no BPF trampolines: no fexit hooks on the socket layer (used where socket \
         tracepoints do not exist)",
    )
}

/// The check `name` for a probed feature, with what lacking it costs.
fn feature_check(name: &'static str, feature: Feature, impact: &str) -> Check {
    let Feature { support, detail } = feature;
    match support {
        Support::Available => Check::ok(name, detail),
        lacking => Check::bad(name, State::from(lacking), detail, impact),
    }
}

fn probe_write_user_check() -> Check {
    const IMPACT: &str = "library-level context injection (bpf_probe_write_user) is off; \
                          outgoing HTTP/1 still gets traceparent through sk_msg";
    match bpf::try_probe_write_user() {
        Ok(()) => Check::ok(
            "probe_write_user",
            "the verifier accepted a program calling bpf_probe_write_user (not attached)",
        ),
        // Under lockdown the verifier does not offer the helper at all: "program of this
        // type cannot use helper" (6.18), "unknown func" (older kernels).
        Err(e)
            if e.errno == libc::EINVAL
                && (e.log.contains("cannot use helper") || e.log.contains("unknown func")) =>
        {
            Check::bad(
                "probe_write_user",
                State::Denied,
                format!("the verifier does not offer the helper (kernel lockdown): {e}"),
                IMPACT,
            )
        }
        Err(e) => Check::bad("probe_write_user", bpf_state(&e), e.to_string(), IMPACT),
    }
}

fn tracefs_check(tracefs: &Result<(PathBuf, MountOrigin), MountError>) -> Check {
    match tracefs {
        Ok((path, MountOrigin::WasMounted)) => {
            Check::ok("tracefs", format!("{} (was mounted)", path.display()))
        }
        Ok((path, MountOrigin::MountedNow)) => Check::ok(
            "tracefs",
            format!(
                "{} (mounted now; left mounted for the agent)",
                path.display()
            ),
        ),
        Err(e) => {
            let state = e
                .io_error()
                .map_or(State::Missing, |io| match io.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => State::Denied,
                    Some(libc::ENODEV) => State::Missing,
                    _ => io_state(io),
                });
            Check::bad(
                "tracefs",
                state,
                chain(e),
                "tracepoints cannot be attached: Sonde cannot see socket reads and writes and traces nothing",
            )
        }
    }
}

fn syscall_tracepoints_check(tracefs: &Result<(PathBuf, MountOrigin), MountError>) -> Check {
    const IMPACT: &str = "the last resort for socket data is missing: without socket \
                          tracepoints, fexit or kprobes Sonde sees no socket reads and writes";
    let Ok((root, _)) = tracefs else {
        return Check::bad(
            "syscall_tracepoints",
            State::Unknown,
            "tracefs unavailable, cannot look",
            IMPACT,
        );
    };
    let event = root.join("events/syscalls/sys_exit_read");
    match std::fs::metadata(&event) {
        Ok(_) => Check::ok(
            "syscall_tracepoints",
            format!("{} present", event.display()),
        ),
        Err(e) => {
            let state = io_state(&e);
            let why = match state {
                State::Missing => " (kernel built without CONFIG_FTRACE_SYSCALLS)",
                State::Denied => " (run as root)",
                _ => "",
            };
            Check::bad(
                "syscall_tracepoints",
                state,
                format!("{}: {e}", event.display()),
                format!("{IMPACT}{why}"),
            )
        }
    }
}

fn sockmap_fionread_check() -> Check {
    const NAME: &str = "sockmap_fionread";
    match sockmap::probe_fionread() {
        Ok(FionreadProbe::Correct) => Check::ok(
            NAME,
            "FIONREAD is right on sockhash-enrolled sockets (no hazard on this kernel)",
        ),
        Ok(FionreadProbe::Broken { reported }) => Check::ok(
            NAME,
            format!(
                "hazard present: FIONREAD said {reported} with {} bytes waiting on an enrolled \
                 socket. Handled: Sonde keeps a socket enrolled only until its request is sent, \
                 so no response is ever read through the broken path",
                FionreadProbe::bytes()
            ),
        ),
        Err(e) => Check::bad(
            NAME,
            State::Unknown,
            e.to_string(),
            "none: injection keeps sockets enrolled only until their request is sent either way",
        ),
    }
}

fn cgroup2_check(mounts: &io::Result<Vec<parse::MountEntry>>) -> Check {
    const IMPACT: &str = "sock_ops/sk_msg cannot attach, so no traceparent injection: \
                          spans are recorded but not linked across services";
    let mounts = match mounts {
        Ok(m) => m,
        Err(e) => {
            return Check::bad(
                "cgroup2",
                State::Unknown,
                format!("/proc/mounts: {e}"),
                IMPACT,
            );
        }
    };
    match parse::cgroup2_layout(mounts) {
        Some((point, CgroupLayout::Unified)) => {
            Check::ok("cgroup2", format!("{} (unified)", point.display()))
        }
        Some((point, CgroupLayout::Hybrid)) => Check::ok(
            "cgroup2",
            format!(
                "{} (hybrid: cgroup v1 controllers beside it)",
                point.display()
            ),
        ),
        None => Check::bad(
            "cgroup2",
            State::Missing,
            "no cgroup2 mount in /proc/mounts",
            IMPACT,
        ),
    }
}

struct CapInfo {
    name: &'static str,
    bit: u32,
    /// What Sonde uses it for.
    used_for: &'static str,
    /// What happens without it.
    without: &'static str,
}

const CAPS: &[CapInfo] = &[
    CapInfo {
        name: "CAP_BPF",
        bit: CAP_BPF,
        used_for: "load eBPF programs and create maps",
        without: "Sonde cannot load its probes unless it holds CAP_SYS_ADMIN",
    },
    CapInfo {
        name: "CAP_PERFMON",
        bit: CAP_PERFMON,
        used_for: "attach tracepoints and uprobes, read kernel memory from probes",
        without: "tracepoint and uprobe attachment needs CAP_SYS_ADMIN instead",
    },
    CapInfo {
        name: "CAP_SYS_ADMIN",
        bit: CAP_SYS_ADMIN,
        used_for: "mount tracefs/securityfs; stands in for CAP_BPF/CAP_PERFMON before Linux 5.8",
        without: "Sonde cannot mount tracefs itself, and on kernels before 5.8 cannot load probes",
    },
    CapInfo {
        name: "CAP_NET_ADMIN",
        bit: CAP_NET_ADMIN,
        used_for: "attach sock_ops/sk_msg programs that inject traceparent headers",
        without: "no header injection: spans are not linked across services",
    },
    CapInfo {
        name: "CAP_SYS_PTRACE",
        bit: CAP_SYS_PTRACE,
        used_for: "read /proc/<pid>/maps and exe of other users' processes to place TLS uprobes",
        without: "HTTPS traffic of processes owned by other users stays invisible",
    },
    CapInfo {
        name: "CAP_SYS_RESOURCE",
        bit: CAP_SYS_RESOURCE,
        used_for: "raise RLIMIT_MEMLOCK for BPF maps (only matters before Linux 5.11)",
        without: "little on Linux 5.11+ (BPF memory is charged to the cgroup); on older \
                  kernels maps may fail to allocate under a low RLIMIT_MEMLOCK",
    },
    CapInfo {
        name: "CAP_DAC_READ_SEARCH",
        bit: CAP_DAC_READ_SEARCH,
        used_for: "open binaries and libraries regardless of file permissions",
        without: "uprobes cannot be placed on libraries the agent's user cannot read",
    },
];

fn capability_check(cap: &CapInfo, cap_eff: Option<u64>) -> Check {
    match cap_eff {
        Some(mask) if parse::has_cap(mask, cap.bit) => {
            Check::ok(cap.name, format!("held: {}", cap.used_for))
        }
        Some(mask) => Check::bad(
            cap.name,
            State::Denied,
            format!("not in CapEff {mask:016x}; needed to {}", cap.used_for),
            cap.without,
        ),
        None => Check::bad(
            cap.name,
            State::Unknown,
            format!("CapEff unreadable; needed to {}", cap.used_for),
            cap.without,
        ),
    }
}

fn uprobes_check(cap_eff: Option<u64>) -> Check {
    const IMPACT_MISSING: &str = "no TLS visibility: HTTPS requests made through OpenSSL \
                                  produce no spans (uprobes see the plaintext)";
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unreadable ({e})"));
    let euid = host::euid();
    let present = Path::new(UPROBE_PMU).exists();
    let detail = format!(
        "{UPROBE_PMU} {}; perf_event_paranoid={paranoid}; euid={euid}",
        if present { "present" } else { "absent" }
    );
    if !present {
        return Check::bad("uprobes", State::Missing, detail, IMPACT_MISSING);
    }
    let held = |bit| cap_eff.is_some_and(|m| parse::has_cap(m, bit));
    // perf_event_paranoid does not apply to CAP_PERFMON/CAP_SYS_ADMIN holders, and the
    // uprobe PMU needs one of them.
    if held(CAP_PERFMON) || held(CAP_SYS_ADMIN) {
        Check::ok("uprobes", detail)
    } else {
        Check::bad(
            "uprobes",
            if cap_eff.is_some() {
                State::Denied
            } else {
                State::Unknown
            },
            format!("{detail}; neither CAP_PERFMON nor CAP_SYS_ADMIN held"),
            "uprobes cannot be attached (run as root): HTTPS requests produce no spans",
        )
    }
}

fn unprivileged_bpf_check() -> Check {
    let path = "/proc/sys/kernel/unprivileged_bpf_disabled";
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let value = text.trim();
            let meaning = match value {
                "0" => "unprivileged users may load some BPF",
                "1" => "unprivileged BPF disabled until reboot",
                "2" => "unprivileged BPF disabled (admin may re-enable)",
                _ => "unrecognised value",
            };
            Check::ok(
                "unprivileged_bpf",
                format!(
                    "kernel.unprivileged_bpf_disabled={value}: {meaning}; irrelevant to Sonde, which runs privileged"
                ),
            )
        }
        Err(e) => Check::bad(
            "unprivileged_bpf",
            State::Unknown,
            format!("{path}: {e}"),
            "none: informational only (Sonde runs privileged)",
        ),
    }
}

fn memlock_check(release: Option<&str>) -> Check {
    let limit = match host::memlock_limit() {
        Ok(Some(bytes)) => format!("{} KiB", bytes / 1024),
        Ok(None) => "unlimited".to_owned(),
        Err(e) => format!("unreadable ({e})"),
    };
    // Informational only: since 5.11 BPF memory is charged to the memory cgroup, and
    // aya raises the limit itself when it matters. A version check is acceptable here
    // because nothing is decided on it.
    let memcg = release
        .and_then(parse::kernel_major_minor)
        .is_some_and(|v| v >= (5, 11));
    let note = if memcg {
        "kernel charges BPF memory to the memory cgroup (5.11+), so the limit is irrelevant"
    } else {
        "older kernels count BPF maps against this limit; Sonde raises it when it holds CAP_SYS_RESOURCE"
    };
    Check::ok(
        "memlock",
        format!("RLIMIT_MEMLOCK soft limit {limit}; {note}"),
    )
}
