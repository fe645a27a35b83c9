//! Turning checks into a verdict and printing them.

use std::io::{self, Write};

use serde::Serialize;

use super::{Check, HostReport, State};

/// Checks without which Sonde traces nothing.
const REQUIRED: &[&str] = &["btf", "bpf_syscall", "ringbuf", "tracefs", "probe_programs"];

/// The checks behind each family of socket-data hooks, in the order the agent prefers them
/// (`programs::DataHooks::PREFERENCE`), and how the verdict names the family. One of them
/// is required.
const DATA_HOOKS: &[(&str, &str)] = &[
    (
        "socket_tracepoints",
        "socket-layer tracepoints (sock_send_length/sock_recv_length)",
    ),
    (
        "fentry",
        "fexit hooks on the socket layer (BPF trampolines)",
    ),
    ("kprobes", "kretprobes on the socket layer"),
    ("syscall_tracepoints", "syscall tracepoints"),
];

/// What the checks add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Sonde can capture HTTP spans on this host at all.
    pub can_trace: bool,
    /// One sentence: how it will trace, or what blocks it.
    pub summary: String,
    /// Reduced features that still leave tracing possible.
    pub limitations: Vec<String>,
}

impl Verdict {
    /// Derives the verdict from a set of checks (absent checks count as not Ok).
    pub fn from_checks(checks: &[Check]) -> Self {
        let ok = |name: &str| {
            checks
                .iter()
                .any(|c| c.name == name && c.state == State::Ok)
        };
        let hooks = DATA_HOOKS.iter().find(|(check, _)| ok(check));
        let mut blockers: Vec<String> = REQUIRED
            .iter()
            .filter(|name| !ok(name))
            .map(|name| {
                let state = checks
                    .iter()
                    .find(|c| c.name == *name)
                    .map_or("not checked", |c| mark(c.state));
                format!("{name} ({state})")
            })
            .collect();
        if hooks.is_none() {
            let names: Vec<&str> = DATA_HOOKS.iter().map(|(check, _)| *check).collect();
            blockers.push(format!(
                "no socket-data hooks (none of {})",
                names.join(", ")
            ));
        }
        if !blockers.is_empty() {
            return Self {
                can_trace: false,
                summary: format!(
                    "Sonde cannot trace on this host: blocked by {}",
                    blockers.join(", ")
                ),
                limitations: Vec::new(),
            };
        }

        let hooks = hooks.map_or("syscall tracepoints", |(_, what)| *what);
        let mut limitations = Vec::new();
        if !ok("cgroup2") || !ok("CAP_NET_ADMIN") {
            limitations.push(
                "no traceparent injection (needs cgroup v2 and CAP_NET_ADMIN): \
                 spans are not linked across services"
                    .to_owned(),
            );
        } else if !ok("inject_programs") {
            limitations.push(
                "no traceparent injection (this kernel refuses its programs): spans are not \
                 linked across services"
                    .to_owned(),
            );
        } else if !ok("probe_write_user") {
            limitations.push(
                "traceparent injection uses sk_msg (bpf_probe_write_user refused)".to_owned(),
            );
        }
        if !ok("uprobes") {
            limitations.push("no TLS visibility: HTTPS traffic produces no spans".to_owned());
        }
        Self {
            can_trace: true,
            summary: format!("Sonde can trace HTTP on this host using {hooks}"),
            limitations,
        }
    }
}

fn mark(state: State) -> &'static str {
    match state {
        State::Ok => "ok",
        State::Missing => "MISSING",
        State::Denied => "DENIED",
        State::Unknown => "UNKNOWN",
    }
}

/// Writes `report` as an aligned text table (or as JSON when `json` is set).
pub fn print_report(report: &HostReport, json: bool, out: &mut impl Write) -> io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report).map_err(io::Error::other)?;
        return writeln!(out);
    }
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    writeln!(out, "Sonde host check")?;
    for check in &report.checks {
        writeln!(
            out,
            "  {:<8} {:<width$}  {}",
            mark(check.state),
            check.name,
            check.detail
        )?;
        if !check.impact.is_empty() {
            writeln!(out, "  {:<8} {:<width$}  -> {}", "", "", check.impact)?;
        }
    }
    writeln!(out)?;
    writeln!(out, "Verdict: {}", report.verdict.summary)?;
    for limitation in &report.verdict.limitations {
        writeln!(out, "  - {limitation}")?;
    }
    super::tls::print(&report.processes, out)
}
