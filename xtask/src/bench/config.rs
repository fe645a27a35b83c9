//! The configurations a round runs: their labels, JSON keys, agent flags, and the nginx
//! wrk loads.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Config {
    None,
    Floor,
    Full,
    FloorSyscall,
    FullSyscall,
    ProxyNoInject,
    ProxyInject,
    HttpsNone,
    HttpsFloor,
    HttpsFull,
    HttpsNoTls,
}

/// The nginx a configuration's wrk loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Server {
    /// Serving the file over HTTP.
    Origin,
    /// A proxy in front of the origin, new for each run.
    Proxy,
    /// Serving the file over HTTPS.
    Tls,
}

impl Config {
    pub(super) const ALL: [Self; 11] = [
        Self::None,
        Self::Floor,
        Self::Full,
        Self::FloorSyscall,
        Self::FullSyscall,
        Self::ProxyNoInject,
        Self::ProxyInject,
        Self::HttpsNone,
        Self::HttpsFloor,
        Self::HttpsFull,
        Self::HttpsNoTls,
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
    /// The HTTPS leg (`--https` runs only these).
    pub(super) const HTTPS: [Self; 4] = [
        Self::HttpsNone,
        Self::HttpsFloor,
        Self::HttpsFull,
        Self::HttpsNoTls,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::None => "(a) no agent",
            Self::Floor => "(b) empty probes (floor)",
            Self::Full => "(c) full tracing (-o none)",
            Self::FloorSyscall => "(f) empty probes, --hooks syscall-tracepoints",
            Self::FullSyscall => "(g) full tracing, --hooks syscall-tracepoints",
            Self::ProxyNoInject => "(d) proxy, full, --no-inject",
            Self::ProxyInject => "(e) proxy, full, injection",
            Self::HttpsNone => "(h) HTTPS, no agent",
            Self::HttpsFloor => "(i) HTTPS, empty probes (floor)",
            Self::HttpsFull => "(j) HTTPS, full tracing, TLS probes",
            Self::HttpsNoTls => "(k) HTTPS, full tracing, --no-tls",
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
            Self::HttpsNone => "https_none",
            Self::HttpsFloor => "https_floor",
            Self::HttpsFull => "https_full",
            Self::HttpsNoTls => "https_no_tls",
        }
    }

    /// The agent's flags after `attach --pid <pid> -o none`; `None`: no agent.
    pub(super) fn agent_flags(self) -> Option<&'static [&'static str]> {
        match self {
            Self::None | Self::HttpsNone => None,
            Self::Floor | Self::HttpsFloor => Some(&["--empty-probes"]),
            Self::Full | Self::ProxyInject | Self::HttpsFull => Some(&[]),
            Self::FloorSyscall => Some(&["--empty-probes", "--hooks", "syscall-tracepoints"]),
            Self::FullSyscall => Some(&["--hooks", "syscall-tracepoints"]),
            Self::ProxyNoInject => Some(&["--no-inject"]),
            Self::HttpsNoTls => Some(&["--no-tls"]),
        }
    }

    /// What the configuration is compared with, round by round: no agent on the same
    /// nginx, or for the proxy, tracing without injection.
    pub(super) fn baseline(self) -> Self {
        match self.server() {
            Server::Origin => Self::None,
            Server::Proxy => Self::ProxyNoInject,
            Server::Tls => Self::HttpsNone,
        }
    }

    pub(super) fn server(self) -> Server {
        if Self::PROXY.contains(&self) {
            Server::Proxy
        } else if Self::HTTPS.contains(&self) {
            Server::Tls
        } else {
            Server::Origin
        }
    }
}
