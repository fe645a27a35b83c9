//! Which processes to trace: by pid, by executable path glob, or by listening port.
//!
//! Everything here works on TGIDs (what userspace calls a pid): `/proc` lists one
//! entry per process, threads are hidden in `/proc/PID/task`.

mod listen;
mod process_tree;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::str::FromStr;

use glob::{MatchOptions, Pattern};
use thiserror::Error;

use crate::process::ProcessError;
use crate::process::proc_files::{read_exe, read_stat, read_tgid};

pub use listen::{ListenSocket, parse_net_tcp, parse_socket_inode};
pub use process_tree::descendants_of;

/// Why targets could not be resolved.
#[derive(Debug, Error)]
pub enum TargetError {
    #[error("no process with pid {0}")]
    NoSuchPid(u32),
    #[error("nothing is listening on TCP port {0}")]
    NothingListening(u16),
    /// The socket exists but no visible process has it open (e.g. it belongs to
    /// another PID namespace, or the kernel).
    #[error("TCP port {0} is listening, but no visible process holds the socket")]
    NoSocketOwner(u16),
    #[error("invalid executable glob {pattern:?}: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("invalid target {spec:?}: {reason} (expected pid:N, port:N or exe:GLOB)")]
    BadSpec { spec: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// One way of naming processes to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This process (a thread id is mapped to its process) and its descendants.
    Pid(u32),
    /// Processes whose executable's full path matches (see [`MATCH_OPTIONS`]).
    ExeGlob(Pattern),
    /// Processes holding a listening TCP socket (IPv4 or IPv6) on this port.
    Port(u16),
}

/// How exe globs match: like a shell, `*` stays within one directory (use `**`
/// for any depth: `/**/nginx`), case-sensitive.
pub const MATCH_OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Target {
    /// An [`Target::ExeGlob`] from a pattern matched against the full executable
    /// path, e.g. `/usr/sbin/nginx*`. Rejects invalid globs, and patterns without
    /// a `/` since they could never match a full path.
    pub fn exe_glob(pattern: &str) -> Result<Target, TargetError> {
        let bad = |reason: String| TargetError::BadGlob {
            pattern: pattern.to_owned(),
            reason,
        };
        if !pattern.contains('/') {
            return Err(bad(format!(
                "it is matched against the full executable path; try '/**/{pattern}'"
            )));
        }
        Pattern::new(pattern)
            .map(Target::ExeGlob)
            .map_err(|e| bad(e.to_string()))
    }
}

/// Parses `pid:N`, `port:N` or `exe:GLOB`.
impl FromStr for Target {
    type Err = TargetError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| TargetError::BadSpec {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, value) = spec.split_once(':').ok_or_else(|| bad("no kind"))?;
        match kind {
            "pid" => match value.parse() {
                Ok(0) | Err(_) => Err(bad("pid must be a positive integer")),
                Ok(pid) => Ok(Target::Pid(pid)),
            },
            "port" => match value.parse() {
                Ok(0) | Err(_) => Err(bad("port must be 1-65535")),
                Ok(port) => Ok(Target::Port(port)),
            },
            "exe" => Target::exe_glob(value),
            _ => Err(bad("unknown kind")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pid(pid) => write!(f, "pid:{pid}"),
            Target::ExeGlob(pattern) => write!(f, "exe:{pattern}"),
            Target::Port(port) => write!(f, "port:{port}"),
        }
    }
}

/// The outcome of [`resolve`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedTargets {
    /// Processes (TGIDs) to trace now.
    pub pids: BTreeSet<u32>,
    /// Globs to test processes that exec later against ([`exe_matches`]).
    pub exe_globs: Vec<Pattern>,
}

impl ResolvedTargets {
    /// Whether `pid` is traced.
    pub fn contains(&self, pid: u32) -> bool {
        self.pids.contains(&pid)
    }
}

/// The processes to trace now.
///
/// - `Pid`: must exist ([`TargetError::NoSuchPid`]); its existing descendants are
///   included (an nginx master brings its workers).
/// - `ExeGlob`: every process whose executable matches; none is not an error (the
///   program may start later, see [`ResolvedTargets::exe_globs`]).
/// - `Port`: every process holding a listening socket on it, in the agent's network
///   namespace; none is an error.
///
/// Processes exiting during the scan are skipped.
pub fn resolve(targets: &[Target]) -> Result<ResolvedTargets, TargetError> {
    let mut resolved = ResolvedTargets::default();
    for target in targets {
        match target {
            Target::Pid(pid) => {
                let pid = process_of(*pid)?;
                resolved.pids.insert(pid);
                resolved.pids.extend(descendants(pid));
            }
            Target::ExeGlob(pattern) => {
                let globs = std::slice::from_ref(pattern);
                resolved.pids.extend(
                    all_pids()?
                        .into_iter()
                        .filter(|&pid| exe_matches(pid, globs)),
                );
                resolved.exe_globs.push(pattern.clone());
            }
            Target::Port(port) => {
                let inodes = listen::listening_inodes(*port)?;
                if inodes.is_empty() {
                    return Err(TargetError::NothingListening(*port));
                }
                let holders = listen::pids_holding(&inodes, &all_pids()?);
                if holders.is_empty() {
                    return Err(TargetError::NoSocketOwner(*port));
                }
                resolved.pids.extend(holders);
            }
        }
    }
    Ok(resolved)
}

/// Whether `pid`'s executable path matches one of `globs` (for processes that exec
/// after [`resolve`]). A replaced binary (" (deleted)") is matched by its old path;
/// unreadable or vanished processes do not match.
pub fn exe_matches(pid: u32, globs: &[Pattern]) -> bool {
    if globs.is_empty() {
        return false;
    }
    match read_exe(pid) {
        Ok(Some(path)) => globs.iter().any(|g| g.matches_with(&path, MATCH_OPTIONS)),
        _ => false,
    }
}

/// Every existing descendant process of `pid` (children, grandchildren, ...),
/// sorted, without `pid` itself. Empty if `/proc` cannot be listed.
pub fn descendants(pid: u32) -> Vec<u32> {
    match process_tree::parent_links() {
        Ok(links) => descendants_of(pid, &links),
        Err(err) => {
            log::warn!("listing /proc for descendants of {pid}: {err}");
            Vec::new()
        }
    }
}

/// The process (TGID) `pid` denotes: itself, or its process if it is a thread id.
fn process_of(pid: u32) -> Result<u32, TargetError> {
    let gone = |err: ProcessError| match err {
        ProcessError::Gone { .. } => TargetError::NoSuchPid(pid),
        other => TargetError::Process(other),
    };
    // pid 0 is the idle task, /proc/0 never exists.
    read_stat(pid).map_err(gone)?;
    let tgid = read_tgid(pid).map_err(gone)?;
    if tgid != pid {
        log::info!("{pid} is a thread of process {tgid}; tracing the process");
    }
    Ok(tgid)
}

fn all_pids() -> Result<Vec<u32>, TargetError> {
    crate::process::proc_files::list_pids().map_err(|source| TargetError::Io {
        path: "/proc".into(),
        source,
    })
}

#[cfg(test)]
mod tests;
