//! `sonde run`'s command: started traced from its first instruction, sent the stop
//! signals the agent gets, and waited for, with the shell's exit-code convention.

use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result};

use super::Ended;
use crate::attach::probes::Probes;
use crate::metrics::Counters;

/// How long `sonde run` waits for its command to exit after passing on a stop signal.
pub(super) const CHILD_GRACE: Duration = Duration::from_secs(10);

/// A stop request: with a child (`sonde run`), pass `sig` on and keep going until it
/// exits (returns `None`); without one, stop now (returns `why`).
pub(super) fn stop(
    child: &mut Option<&mut Child>,
    deadline: &mut Option<tokio::time::Instant>,
    sig: libc::c_int,
    why: Ended,
) -> Option<Ended> {
    match child {
        Some(c) => {
            forward_signal(c, sig);
            deadline.get_or_insert(tokio::time::Instant::now() + CHILD_GRACE);
            None
        }
        None => Some(why),
    }
}

fn forward_signal(child: &Child, sig: libc::c_int) {
    // Our own child, not yet reaped: its pid cannot have been reused.
    if let Ok(pid) = libc::pid_t::try_from(child.id())
        && let Err(e) = crate::sys::host::kill(pid, sig)
    {
        log::debug!("passing signal {sig} on to pid {pid}: {e}");
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed the child.
pub(super) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Starts the command traced from its first instruction: between fork and exec the
/// child adds its own pid to the traced set (std's `spawn` only returns after exec,
/// so the parent could not do it in time).
pub(super) fn spawn_traced(
    cmd: &[String],
    probes: &mut Probes,
    counters: &Counters,
) -> Result<Child> {
    let (program, args) = cmd.split_first().context("no command given")?;
    // Its TLS libraries are probed before it runs: it may speak TLS at once.
    if let Some(path) = executable_path(program) {
        probes.probe_tls_before_run(&path);
    }
    let map_fd = probes.traced_map_fd();
    let mut command = Command::new(program);
    command.args(args);
    crate::sys::bpf::enroll_before_exec(&mut command, map_fd);
    let child = command
        .spawn()
        .with_context(|| format!("starting {program} traced"))?;
    Counters::inc(&counters.processes_traced);
    Ok(child)
}

/// The file `program` runs, as `execvp` finds it: a path as given, else the first match
/// in `PATH`.
fn executable_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = std::path::PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
    })
}
