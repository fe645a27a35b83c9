//! Choosing the socket-data hooks: what this kernel offers each family of
//! [`crate::programs::DataHooks`], probed once per start with the probes `sonde doctor`
//! runs ([`crate::sys::features`]).

use aya::Btf;

use crate::programs::{DataHooks, ProgramHook};
use crate::sys::features::{self, Feature};
use crate::sys::host;

/// What this kernel offers the data hooks, probed once per start (the same probes as
/// `sonde doctor`).
pub struct KernelHooks {
    /// The kernel's BTF (needed by every family but syscall-tracepoints).
    pub btf: Result<Btf, String>,
    /// `sock_send_length`/`sock_recv_length` exist (Linux 6.4+).
    socket_tracepoints: Result<(), String>,
    /// fentry/fexit programs load and attach.
    trampolines: Result<(), String>,
    /// kprobes are built in.
    kprobes: Result<(), String>,
    /// sendfile to a TCP socket goes through sendmsg (Linux 6.5+: `splice_to_socket`).
    sendfile_via_sendmsg: bool,
}

impl KernelHooks {
    pub fn probe() -> Self {
        let btf = features::kernel_btf();
        let parsed = btf.as_ref().map_err(String::as_str);
        // Named as `sonde doctor` names the checks, so a refusal reads the same in both.
        let socket_tracepoints =
            available("socket_tracepoints", features::socket_tracepoints(parsed));
        let trampolines = available("fentry", features::fentry(parsed));
        let release = host::uname().ok().map(|(release, _)| release);
        let kprobes = available("kprobes", features::kprobes(release.as_deref()));
        let sendfile_via_sendmsg = btf.as_ref().is_ok_and(features::sendfile_via_sendmsg);
        Self {
            btf,
            socket_tracepoints,
            trampolines,
            kprobes,
            sendfile_via_sendmsg,
        }
    }

    /// The programs of `family` on this kernel.
    pub fn programs(&self, family: DataHooks) -> Vec<ProgramHook> {
        family.programs_where(self.sendfile_via_sendmsg).collect()
    }

    /// Why `family` cannot run here, or `None` when it can.
    pub fn unavailable(&self, family: DataHooks) -> Option<String> {
        let needs_btf = || self.btf.as_ref().err().cloned();
        match family {
            DataHooks::SocketTracepoints => self.socket_tracepoints.as_ref().err().cloned(),
            DataHooks::Fexit => needs_btf().or_else(|| self.trampolines.as_ref().err().cloned()),
            DataHooks::Kprobes => needs_btf().or_else(|| self.kprobes.as_ref().err().cloned()),
            DataHooks::SyscallTracepoints => None,
        }
    }
}

/// `Err("name: what was seen")` unless `feature` is available.
fn available(name: &str, feature: Feature) -> Result<(), String> {
    if feature.is_available() {
        Ok(())
    } else {
        Err(format!("{name}: {}", feature.detail))
    }
}
