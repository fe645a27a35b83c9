//! The kernel features that decide which hooks can carry socket data, probed by trying
//! them: the agent's hook choice and `sonde doctor` ask the same questions here and get
//! the same answers.
//!
//! Each probe returns a [`Feature`]: whether the kernel offers it to this process, lacks
//! it, or has it and refuses it to us (permissions, lockdown), with what was seen.

use std::path::Path;

use aya::Btf;
use aya_obj::btf::BtfKind;

use super::bpf::{self, BpfError};
use super::host;
use super::parse::{self, ConfigValue};

const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// What trying a feature showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Present and usable by this process.
    Available,
    /// The kernel (or its configuration) does not have it.
    Missing,
    /// The kernel has it but refuses it to us (permissions, lockdown, capabilities).
    Denied,
    /// Could not tell (no BTF to look in, an unexpected errno).
    Unknown,
}

impl From<&BpfError> for Support {
    fn from(e: &BpfError) -> Self {
        if e.is_denied() {
            Support::Denied
        } else if e.is_missing() {
            Support::Missing
        } else {
            Support::Unknown
        }
    }
}

/// One probed feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub support: Support,
    /// What was seen, verbatim enough to debug from.
    pub detail: String,
}

impl Feature {
    fn available(detail: impl Into<String>) -> Self {
        Self {
            support: Support::Available,
            detail: detail.into(),
        }
    }

    fn lacking(support: Support, detail: impl Into<String>) -> Self {
        Self {
            support,
            detail: detail.into(),
        }
    }

    pub fn is_available(&self) -> bool {
        self.support == Support::Available
    }
}

/// The running kernel's BTF, parsed (what the hook probes look their targets up in). It
/// takes some 10 MB and tens of milliseconds: parse it once and lend it to each probe.
pub fn kernel_btf() -> Result<Btf, String> {
    Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))
}

/// The socket-layer tracepoints Sonde prefers for socket data (Linux 6.4+): present in
/// BTF, and an empty `tp_btf` program loads and attaches on one (`btf`: the kernel's).
pub fn socket_tracepoints(btf: Result<&Btf, &str>) -> Feature {
    let id = btf
        .map_err(|e| Feature::lacking(Support::Unknown, e))
        .and_then(|btf| {
            btf.id_by_type_name_kind("btf_trace_sock_send_length", BtfKind::Typedef)
                .map_err(|_| {
                    Feature::lacking(
                        Support::Missing,
                        "no sock_send_length tracepoint in BTF (added in Linux 6.4)",
                    )
                })
        });
    let id = match id {
        Ok(id) => id,
        Err(lacking) => return lacking,
    };
    match bpf::try_tp_btf(id) {
        Ok(()) => Feature::available(format!(
            "loaded and attached an empty tp_btf program on sock_send_length (BTF id {id})"
        )),
        Err(e) => Feature::lacking(
            Support::from(&e),
            format!("tp_btf on sock_send_length (BTF id {id}): {e}"),
        ),
    }
}

/// BPF trampolines: an empty fentry program loads and attaches (`btf`: the kernel's).
pub fn fentry(btf: Result<&Btf, &str>) -> Feature {
    // tcp_sendmsg is what Sonde would hook; bpf_fentry_test1 exists only for tests
    // like this one, in case tcp_sendmsg is missing from BTF.
    let target = btf.map_err(str::to_owned).and_then(|btf| {
        ["tcp_sendmsg", "bpf_fentry_test1"]
            .into_iter()
            .find_map(|name| {
                btf.id_by_type_name_kind(name, BtfKind::Func)
                    .ok()
                    .map(|id| (name, id))
            })
            .ok_or_else(|| "neither tcp_sendmsg nor bpf_fentry_test1 is in BTF".to_owned())
    });
    let (name, id) = match target {
        Ok(t) => t,
        Err(e) => return Feature::lacking(Support::Unknown, format!("no attach target: {e}")),
    };
    match bpf::try_fentry(id) {
        Ok(()) => Feature::available(format!(
            "loaded and attached an empty fentry program on {name} (BTF id {id})"
        )),
        Err(e) => Feature::lacking(
            Support::from(&e),
            format!("fentry on {name} (BTF id {id}): {e}"),
        ),
    }
}

/// kprobes: the kprobe PMU exists. The kernel config (read for `release`, the running
/// kernel's) is quoted in the detail, for the operator.
pub fn kprobes(release: Option<&str>) -> Feature {
    let pmu = Path::new(KPROBE_PMU).exists();
    let config = host::kernel_config(release).map(|(src, text)| {
        let value = match parse::kernel_config(&text, "CONFIG_KPROBES") {
            ConfigValue::Set(v) => format!("CONFIG_KPROBES={v}"),
            ConfigValue::NotSet => "CONFIG_KPROBES is not set".to_owned(),
            ConfigValue::Absent => "CONFIG_KPROBES absent".to_owned(),
        };
        format!("{value} ({src})")
    });
    let config = config.unwrap_or_else(|| "kernel config not readable".to_owned());
    if pmu {
        Feature::available(format!("{KPROBE_PMU} present; {config}"))
    } else {
        Feature::lacking(Support::Missing, format!("{KPROBE_PMU} absent; {config}"))
    }
}

/// Whether sendfile to a TCP socket goes through sendmsg on the kernel `btf` describes
/// (Linux 6.5+: `splice_to_socket`).
pub fn sendfile_via_sendmsg(btf: &Btf) -> bool {
    btf.id_by_type_name_kind("splice_to_socket", BtfKind::Func)
        .is_ok()
}
