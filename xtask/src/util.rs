//! Shared helpers: running commands with errors that name them, child processes that are
//! stopped when dropped, Ctrl-C as a flag, temporary directories, ports and the agent's
//! counters report.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

// ===== running commands =====

/// Runs `cmd` to completion with inherited stdio; fails naming the command if it cannot
/// start or exits unsuccessfully.
pub fn exec(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        bail!("{} failed with {status}", show(cmd))
    }
}

/// Runs `cmd` and returns its stdout; stderr is inherited. Fails like [`exec`].
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to run {}", show(cmd)))?;
    if !out.status.success() {
        bail!("{} failed with {}", show(cmd), out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("{} printed non-UTF-8", show(cmd)))
}

/// Whether `cmd` runs and exits successfully (its output is discarded).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `program arg arg ...`, for messages.
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cargo that runs this xtask (falls back to `cargo` on PATH).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Whether a program is on PATH (`command -v`).
pub fn on_path(program: &str) -> bool {
    succeeds(Command::new("sh").args(["-c", &format!("command -v {program}")]))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(what: &str) -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        bail!("{what} needs root (eBPF, tracefs, apt): run it with sudo or as root")
    }
}

// ===== building the agent =====

/// Builds the `sonde` binary with cargo and returns its path (read from cargo's JSON
/// messages, so `CARGO_TARGET_DIR` and profiles are honoured).
pub fn build_sonde(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(workspace_root()).args([
        "build",
        "--package",
        "sonde",
        "--bin",
        "sonde",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    println!("xtask: {}", show(&cmd));
    let stdout = output(&mut cmd)?;
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "sonde")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow!("{} produced no `sonde` executable", show(&cmd)))
}

// ===== Ctrl-C =====

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag ([`interrupted`]) so that loops return and drop
/// guards clean up. Children started by [`ChildGuard`] are in their own process group, so
/// a Ctrl-C in the terminal reaches only this process, which then stops them in order.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with "interrupted" once Ctrl-C was pressed; sprinkle between steps.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps up to `d`, waking early on Ctrl-C.
pub fn sleep(d: Duration) {
    let end = Instant::now() + d;
    while !interrupted() {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

// ===== child processes =====

/// A child process that is stopped (signal, grace period, then SIGKILL) when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    signal: libc::c_int,
    grace: Duration,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group. `signal` is what stops it gracefully: it is
    /// sent to the whole group (so nginx workers go with their master).
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        signal: libc::c_int,
        grace: Duration,
    ) -> Result<Self> {
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to start {name}: {}", show(cmd)))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            signal,
            grace,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's stdout, if it was piped (taken once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for {}", self.name))?;
        }
        Ok(self.exited)
    }

    /// Fails if the child has already exited (it should still be serving).
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited early with {status}", self.name),
        }
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the stop signal to the group, waits the grace period, then SIGKILLs.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal_group(self.signal);
        if let Some(status) = self.wait_timeout(self.grace)? {
            self.signal_group(libc::SIGKILL); // leftovers of the group, if any
            return Ok(status);
        }
        eprintln!(
            "xtask: {} did not stop within {:?}; killing it",
            self.name, self.grace
        );
        self.signal_group(libc::SIGKILL);
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for {}", self.name))?;
        self.exited = Some(status);
        Ok(status)
    }

    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill has no memory-safety preconditions; the group is the one we made.
        unsafe { libc::kill(-pgid, signal) };
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("xtask: stopping {}: {e:#}", self.name);
        }
    }
}

/// Copies a child's stdout to ours line by line on a thread, keeping a copy of every line.
pub fn tee_lines(
    stdout: impl std::io::Read + Send + 'static,
    prefix: &'static str,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("{prefix}{line}");
            lines.push(line);
        }
        lines
    })
}

// ===== files, ports, readiness =====

/// A directory under /tmp, removed (with everything in it) when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Leaves the directory in place (for inspection after a failure).
    pub fn keep(self) -> PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts on 127.0.0.1:`port`, failing if `child` exits first.
pub fn wait_for_port(child: &mut ChildGuard, port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let end = Instant::now() + timeout;
    loop {
        check_interrupted()?;
        child.ensure_running()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!(
                "{} did not listen on port {port} within {timeout:?}",
                child.name()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `path` exists (the agent's `--ready-file`), failing if `child` exits first.
pub fn wait_for_file(child: &mut ChildGuard, path: &Path, timeout: Duration) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        check_interrupted()?;
        if path.exists() {
            return Ok(());
        }
        child.ensure_running()?;
        if Instant::now() >= end {
            bail!("{} was not ready within {timeout:?}", child.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ===== the agent's counters =====

/// Parses the counters report `sonde` prints on stderr when it stops (`  name  value  help`
/// lines after `sonde: counters`). The last report wins if there are several (SIGUSR1).
pub fn parse_counters(stderr: &str) -> BTreeMap<String, u64> {
    let mut counters = BTreeMap::new();
    let mut in_report = false;
    for line in stderr.lines() {
        if line.trim_end().ends_with("counters") && line.starts_with("sonde") {
            in_report = true;
            continue;
        }
        if !in_report || !line.starts_with("  ") {
            in_report = false;
            continue;
        }
        let mut fields = line.split_whitespace();
        if let (Some(name), Some(Ok(value))) = (fields.next(), fields.next().map(str::parse)) {
            counters.insert(name.to_owned(), value);
        }
    }
    counters
}

/// The sum of every counter that counts something lost (`*drop*`, timeouts, evictions).
pub fn drops(counters: &BTreeMap<String, u64>) -> u64 {
    counters
        .iter()
        .filter(|(name, _)| {
            name.contains("drop") || name.contains("timed_out") || name.contains("evicted")
        })
        .map(|(_, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_report_is_parsed() {
        let stderr = "some log line\nsonde: counters\n  events_read   12  ring-buffer records read\n  \
                      spans_built    3  spans built\n  spans_dropped  1  spans dropped by a full sink\n";
        let c = parse_counters(stderr);
        assert_eq!(c.get("events_read"), Some(&12));
        assert_eq!(c.get("spans_built"), Some(&3));
        assert_eq!(drops(&c), 1);
    }
}
