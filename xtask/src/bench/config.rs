//! The configurations a round runs: their labels, JSON keys and agent flags.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Config {
    None,
    Floor,
    Full,
    FloorSyscall,
    FullSyscall,
    ProxyNoInject,
    ProxyInject,
}

impl Config {
    pub(super) const ALL: [Self; 7] = [
        Self::None,
        Self::Floor,
        Self::Full,
        Self::FloorSyscall,
        Self::FullSyscall,
        Self::ProxyNoInject,
        Self::ProxyInject,
    ];
    /// The configurations that load nginx serving the file itself.
    pub(super) const DIRECT: [Self; 5] = [
        Self::None,
        Self::Floor,
        Self::Full,
        Self::FloorSyscall,
        Self::FullSyscall,
    ];
    /// The configurations that load the proxy in front of it.
    pub(super) const PROXY: [Self; 2] = [Self::ProxyNoInject, Self::ProxyInject];

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::None => "(a) no agent",
            Self::Floor => "(b) empty probes (floor)",
            Self::Full => "(c) full tracing (-o none)",
            Self::FloorSyscall => "(f) empty probes, --hooks syscall-tracepoints",
            Self::FullSyscall => "(g) full tracing, --hooks syscall-tracepoints",
            Self::ProxyNoInject => "(d) proxy, full, --no-inject",
            Self::ProxyInject => "(e) proxy, full, injection",
        }
    }

    pub(super) fn key(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Floor => "floor",
            Self::Full => "full",
            Self::FloorSyscall => "floor_syscall",
            Self::FullSyscall => "full_syscall",
            Self::ProxyNoInject => "proxy_no_inject",
            Self::ProxyInject => "proxy_inject",
        }
    }

    /// The agent's flags after `attach --pid <pid> -o none`; `None`: no agent.
    pub(super) fn agent_flags(self) -> Option<&'static [&'static str]> {
        match self {
            Self::None => None,
            Self::Floor => Some(&["--empty-probes"]),
            Self::Full | Self::ProxyInject => Some(&[]),
            Self::FloorSyscall => Some(&["--empty-probes", "--hooks", "syscall-tracepoints"]),
            Self::FullSyscall => Some(&["--hooks", "syscall-tracepoints"]),
            Self::ProxyNoInject => Some(&["--no-inject"]),
        }
    }

    pub(super) fn is_proxy(self) -> bool {
        Self::PROXY.contains(&self)
    }
}
