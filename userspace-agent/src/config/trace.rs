//! How `sonde attach` and `sonde run` trace: output, limits, hooks, injection.
//!
//! These settings come from flags only (`cli` builds them, each number checked by its
//! [`limits`](super::limits) parser): no `OTEL_*` variable means any of them, and the
//! agent's own `OTEL_SERVICE_NAME` is deliberately not read, since every traced process
//! has its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::programs::{HookChoice, ProbeLogLevel};
use crate::protocols::db::ParseOptions;

/// Validated tracing settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSettings {
    /// Span output on stdout.
    pub output: OutputFormat,
    /// `service.name` for every traced process, instead of each process's own.
    pub service_name: Option<String>,
    /// Stop after this long (`None`: until a signal or the end of `sonde run`'s child).
    pub duration: Option<Duration>,
    /// Payload bytes captured per syscall.
    pub capture_bytes: u32,
    /// How long a request may wait for its response before it is dropped and counted.
    pub request_timeout: Duration,
    /// Ring buffer size in bytes: a power of two, 1 MiB to 2 GiB.
    pub ring_buffer_bytes: u32,
    /// When a record wakes the agent.
    pub wakeup: Wakeup,
    /// Tree output: a trace prints once it has been quiet this long.
    pub tree_quiet: Duration,
    /// Serve span metrics for Prometheus here.
    pub prometheus_listen: Option<SocketAddr>,
    /// Written once the probes are attached.
    pub ready_file: Option<PathBuf>,
    /// Insert `traceparent` into outgoing HTTP/1 requests.
    pub inject: bool,
    /// Probe TLS libraries for the plaintext of TLS connections.
    pub tls: bool,
    /// Follow goroutines in Go programs (trace context per goroutine, not per thread).
    pub go_runtime: bool,
    /// What database spans keep of the query text.
    pub db_query_text: DbQueryText,
    /// Which hooks carry socket data.
    pub hooks: HookChoice,
    /// Benchmark floor: attach every hook, but every probe returns at once.
    pub empty_probes: bool,
    /// Probe diagnostics shown in the agent's log (`--probe-log`).
    pub probe_log: ProbeLogLevel,
}

/// When a record wakes the agent: once `bytes` of records wait unread, at most once per
/// `gap`. Below the threshold the agent reads the ring on its timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wakeup {
    pub bytes: u32,
    pub gap: Duration,
}

/// Span output on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// A readable tree per trace.
    #[default]
    Tree,
    /// One span per line, OTLP JSON field names.
    Json,
    /// No span output (counters only).
    None,
}

/// What database spans keep of the query text (`db.query.text`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DbQueryText {
    /// Literals replaced by `?`: the statement's shape, never its values.
    #[default]
    Obfuscated,
    /// The text as sent, literals included (may contain personal data).
    Raw,
    /// No query text at all (the span name still summarises the query).
    Off,
}

impl DbQueryText {
    pub fn parse_options(self) -> ParseOptions {
        let defaults = ParseOptions::default();
        match self {
            DbQueryText::Obfuscated => defaults,
            DbQueryText::Raw => ParseOptions {
                obfuscate_literals: false,
                ..defaults
            },
            DbQueryText::Off => ParseOptions {
                max_query_text: 0,
                ..defaults
            },
        }
    }
}
