//! The command line, and the only module that knows clap: `sonde attach`, `sonde run`,
//! `sonde doctor`, `sonde config`.
//!
//! Flags are parsed here and turned into what the rest of Sonde takes ([`Action`]: a
//! [`Settings`](crate::config::Settings) value and a [`Mode`](crate::agent::Mode) for
//! the agent). `cli` depends on `config`, never the reverse. Every numeric flag is
//! parsed by the [`config::limits`](crate::config::limits) parser that the environment
//! and the config file use too, so an out-of-range value is a clap error naming the
//! flag, the value and the accepted range, before anything is loaded or attached.

mod otlp;
mod settings;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use self::otlp::OtlpArgs;
pub use self::settings::Action;
use crate::config::limits;
use crate::programs::{DEFAULT_WAKEUP_BYTES, DEFAULT_WAKEUP_GAP_US, HookChoice};

#[derive(Debug, Parser)]
#[command(
    name = "sonde",
    version,
    about = "Zero-code distributed tracing for running processes, built on eBPF",
    long_about = "Sonde attaches to processes that are already running (any language, no restart, \
                  no code change) and turns their HTTP traffic into distributed traces.\n\n\
                  Needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN (run `sonde doctor`)."
)]
pub struct Cli {
    /// TOML config file (section [otlp]); flags and OTEL_* variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace processes that are already running.
    ///
    /// Targets combine: every process any of them names is traced, with its children.
    #[command(arg_required_else_help = true)]
    Attach {
        /// Process ID to trace (with its descendants); repeatable.
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Executable path glob, e.g. '/usr/sbin/nginx*'; processes started later that
        /// match are picked up too. Repeatable.
        #[arg(long = "exe", value_name = "GLOB")]
        exes: Vec<String>,
        /// Trace whatever listens on this TCP port; repeatable.
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<u16>,
        #[command(flatten)]
        opts: TraceOptions,
    },
    /// Start a program and trace it and its children; exits with its exit code.
    #[command(arg_required_else_help = true)]
    Run {
        #[command(flatten)]
        opts: TraceOptions,
        /// The program and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Check what this host allows (BTF, lockdown, kprobes, tracefs, capabilities...).
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also list the TLS libraries this process maps and what Sonde would probe in
        /// each (repeatable).
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Instead of the report: load every program of the probe object (none attached)
        /// and show which ones this kernel's verifier accepts (`cargo xtask vm-test`).
        #[arg(long, hide = true)]
        verifier_matrix: bool,
    },
    /// Print the effective configuration and where each value comes from
    /// (flag, env, file, default); secrets are masked.
    Config {
        #[command(flatten)]
        otlp: OtlpArgs,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DbQueryText {
    /// Literals replaced by `?`: the statement's shape, never its values.
    #[default]
    Obfuscated,
    /// The text as sent, literals included (may contain personal data).
    Raw,
    /// No query text at all (the span name still summarises the query).
    Off,
}

#[derive(Clone, Debug, Args)]
pub struct TraceOptions {
    /// Span output on stdout.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Tree)]
    pub output: OutputFormat,
    /// service.name for every traced process (default: OTEL_SERVICE_NAME of the
    /// process, else its executable or script name).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// Stop after this many seconds (at most 365 days).
    #[arg(long, value_name = "SECS", value_parser = limits::parse_duration)]
    pub duration: Option<Duration>,
    /// Payload bytes captured per syscall (headers must fit; bodies are never kept).
    #[arg(long, default_value = "2048", value_parser = limits::parse_capture_bytes)]
    pub capture_bytes: u32,
    /// Seconds a request may wait for its response before it is dropped and counted.
    #[arg(long, default_value = "30", value_name = "SECS",
          value_parser = limits::parse_request_timeout)]
    pub request_timeout: Duration,
    /// Ring buffer size in MiB (power of two, at most 2048).
    // Parsed into bytes.
    #[arg(long = "ring-buffer-mib", default_value = "8", value_name = "MIB",
          value_parser = limits::parse_ring_buffer_mib)]
    pub ring_buffer_bytes: u32,
    /// Wake the agent once this many bytes of records wait unread (below that it reads
    /// every 50 ms). Larger means fewer wakeups, but the agent then keeps a CPU for longer
    /// at a time, which stalls a busy application sharing it (docs/benchmarks.md). At
    /// most half the ring buffer.
    #[arg(long, default_value_t = DEFAULT_WAKEUP_BYTES, value_name = "BYTES",
          value_parser = limits::parse_wakeup_bytes)]
    pub wakeup_bytes: u32,
    /// Least time between two wakeups, in µs, at most 1 s (each is an interrupt on the
    /// CPU of the traced thread whose record crossed the threshold).
    #[arg(long, default_value_t = DEFAULT_WAKEUP_GAP_US, value_name = "US",
          value_parser = limits::parse_wakeup_gap_us)]
    pub wakeup_gap_us: u32,
    /// Tree output: print a trace once it has been quiet this long (ms, at most 1 hour).
    #[arg(long = "quiet-ms", default_value = "1000", value_name = "MS",
          value_parser = limits::parse_quiet_ms)]
    pub quiet: Duration,
    /// Serve span metrics (RED, service graph) and the agent's counters for Prometheus
    /// at http://ADDR/metrics, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub prometheus_listen: Option<std::net::SocketAddr>,
    /// Write a line to this file once the probes are attached (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Do not insert `traceparent` into outgoing HTTP/1 requests (spans are still built;
    /// a callee on another host then starts its own trace).
    #[arg(long)]
    pub no_inject: bool,
    /// Do not probe TLS libraries (OpenSSL): HTTPS and other TLS traffic then makes no
    /// spans. The probes cost untraced processes that use the same library file a trap
    /// per TLS read or write while Sonde runs.
    #[arg(long)]
    pub no_tls: bool,
    /// Do not follow goroutines in Go programs: their trace context then follows threads,
    /// which puts calls under the wrong request wherever goroutines move between threads
    /// (most Go servers under load). The probes cost a trap per goroutine started.
    #[arg(long)]
    pub no_go_runtime: bool,
    /// Query text on database spans: obfuscated (literals become `?`), raw, or off.
    #[arg(long, value_enum, default_value_t = DbQueryText::Obfuscated, value_name = "MODE")]
    pub db_query_text: DbQueryText,
    /// Hooks for socket data: auto (the first this kernel offers of socket-tracepoints,
    /// fexit, kprobes, syscall-tracepoints) or one of them.
    #[arg(long, value_enum, default_value_t = HookChoice::Auto, value_name = "CHOICE")]
    pub hooks: HookChoice,
    /// Benchmark floor: attach every hook, but every probe returns at once.
    #[arg(long, hide = true)]
    pub empty_probes: bool,
    /// Show the probes' own diagnostics (why the kernel side skipped an event) at this level
    /// and above, in the agent's log on stderr.
    #[arg(long, value_enum, default_value_t = crate::programs::ProbeLogLevel::Off,
          value_name = "LEVEL")]
    pub probe_log: crate::programs::ProbeLogLevel,
    #[command(flatten)]
    pub otlp: OtlpArgs,
}
