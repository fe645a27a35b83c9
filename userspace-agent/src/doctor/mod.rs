//! `sonde doctor`: what this host lets Sonde do, probed rather than guessed.
//!
//! Every check tries the feature itself (creates the map, loads the program, reads the
//! file) instead of trusting version strings, because hardened and custom kernels
//! (lockdown, no kprobes) lie about nothing but lack a lot. Probing has two deliberate
//! side effects, both of which the agent itself would cause anyway: tracefs and
//! securityfs get mounted if they were not.
//!
//! The doctor owns the judging, not the probing: observations come from [`crate::sys`]
//! (every syscall, and the feature probes the agent's hook choice runs too) and from
//! [`crate::programs`] (Sonde's own programs through the verifier). `checks` turns them
//! into [`Check`]s, `programs` judges each hook family by the programs Sonde would attach
//! on it, `report` derives the verdict and prints it as text or JSON.

mod checks;
mod programs;
mod report;
pub mod tls;

use serde::Serialize;

use crate::sys::features::Support;

pub use checks::probe_host;
pub use report::{Verdict, print_report};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Present and usable by this process.
    Ok,
    /// The kernel (or its configuration) does not have it.
    Missing,
    /// The kernel has it but refuses it to us (permissions, lockdown, capabilities).
    Denied,
    /// Could not tell (unreadable file, unexpected errno).
    Unknown,
}

impl From<Support> for State {
    fn from(support: Support) -> Self {
        match support {
            Support::Available => State::Ok,
            Support::Missing => State::Missing,
            Support::Denied => State::Denied,
            Support::Unknown => State::Unknown,
        }
    }
}

/// One probed fact about the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `"btf"`, `"fentry"`, `"CAP_BPF"`.
    pub name: &'static str,
    pub state: State,
    /// What was seen, verbatim enough to debug from.
    pub detail: String,
    /// What the gap costs the operator, in plain words; empty when `state` is `Ok`.
    pub impact: String,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            state: State::Ok,
            detail: detail.into(),
            impact: String::new(),
        }
    }

    fn bad(
        name: &'static str,
        state: State,
        detail: impl Into<String>,
        impact: impl Into<String>,
    ) -> Self {
        Self {
            name,
            state,
            detail: detail.into(),
            impact: impact.into(),
        }
    }
}

/// All checks in a fixed order, plus the conclusion drawn from them.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub checks: Vec<Check>,
    pub verdict: Verdict,
    /// `--pid`: the TLS libraries of each process asked about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<tls::ProcessTls>,
}

impl HostReport {
    /// Builds a report and derives its verdict from the checks.
    pub fn new(checks: Vec<Check>) -> Self {
        let verdict = Verdict::from_checks(&checks);
        Self {
            checks,
            verdict,
            processes: Vec::new(),
        }
    }

    /// The check called `name`, if it was run.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Names of every check `probe_host` runs, in report order.
pub const CHECK_NAMES: &[&str] = &[
    "kernel",
    "arch",
    "btf",
    "bpf_syscall",
    "ringbuf",
    "lockdown",
    "kprobes",
    "fentry",
    "probe_write_user",
    "tracefs",
    "syscall_tracepoints",
    "socket_tracepoints",
    "probe_programs",
    "inject_programs",
    "cgroup2",
    "sockmap_fionread",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_ADMIN",
    "CAP_NET_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RESOURCE",
    "CAP_DAC_READ_SEARCH",
    "uprobes",
    "unprivileged_bpf",
    "memlock",
];

#[cfg(test)]
mod tests;
