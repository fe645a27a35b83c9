//! Shared harness of the end-to-end tests: drop guards for the agent ([`Agent`]) and for
//! the real servers it traces ([`Server`]), temp dirs, free ports, clients (curl, the
//! Python raw-socket client, raw Rust sockets) and [`SpanTree`] to assert span trees.
//!
//! Every guard kills what it started on `Drop`, also when a test panics: a failed test
//! never leaves a traced nginx or an attached agent behind. Servers run in their own
//! process group, so their children (nginx workers, a handler's curl) go with them.
//!
//! Assertion helpers panic with the whole span list (`eqnice!`, `check!`), so a failure
//! shows what the agent actually produced, not just the one value that was wrong.

#![allow(
    dead_code,
    reason = "each test file uses a different subset of the harness"
)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub mod db;
pub mod go;
pub mod otlp;
pub mod tls;

// ===== gating =====

/// Whether this host can run the agent: root and kernel BTF. When it cannot, prints
/// `skipped: <reason>` and returns false, except under CI (env `CI` set), where a
/// silently skipped suite would pass for the wrong reason: there it panics.
pub fn tracing_available() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let reason = if euid != 0 {
        Some(format!(
            "not root (euid {euid}); the agent needs root to load eBPF programs"
        ))
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("/sys/kernel/btf/vmlinux is missing (kernel without BTF)".to_owned())
    } else {
        None
    };
    match reason {
        None => true,
        Some(reason) if std::env::var_os("CI").is_some() => {
            panic!("CI is set, so the end-to-end tests must run, but: {reason}")
        }
        Some(reason) => {
            eprintln!("skipped: {reason}");
            false
        }
    }
}

/// `require_tracing!();` at the top of a test: returns early (skips) where tracing is
/// impossible, see [`tracing_available`].
macro_rules! require_tracing {
    () => {
        if !$crate::util::tracing_available() {
            return;
        }
    };
}
pub(crate) use require_tracing;

/// Whether an optional tool is there. Missing: prints `skipped: <why>` and returns false,
/// except under CI (env `CI` set), where a missing tool fails the test.
pub fn tool_available(present: bool, why: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set, so this test must run, but {why} (cargo xtask setup installs it)"
    );
    eprintln!("skipped: {why}");
    false
}

// ===== assertions that print the spans =====

/// `eqnice!(tree, left, right, "what")`: `assert_eq!` that prints every span on failure.
macro_rules! eqnice {
    ($tree:expr, $left:expr, $right:expr $(,)?) => {
        $crate::util::eqnice!($tree, $left, $right, "values differ")
    };
    ($tree:expr, $left:expr, $right:expr, $($msg:tt)+) => {
        // `match` keeps temporaries alive for the comparison, as `assert_eq!` does.
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    panic!(
                        "\n{}\n  expected: {:?}\n    actual: {:?}\n  ({} = {})\n{}",
                        format!($($msg)+),
                        right,
                        left,
                        stringify!($left),
                        stringify!($right),
                        $tree.dump()
                    );
                }
            }
        }
    };
}
pub(crate) use eqnice;

/// `check!(tree, condition, "what")`: `assert!` that prints every span on failure.
macro_rules! check {
    ($tree:expr, $cond:expr, $($msg:tt)+) => {{
        // Bound first: `!(a >= b)` on floats trips clippy's neg_cmp_op_on_partial_ord.
        let holds: bool = $cond;
        if !holds {
            panic!(
                "\n{}\n  failed: {}\n{}",
                format!($($msg)+),
                stringify!($cond),
                $tree.dump()
            );
        }
    }};
}
pub(crate) use check;

// ===== paths, temp dirs, ports =====

/// The tests crate's directory (`<workspace>/tests`).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    let p = crate_dir().join("fixtures").join(name);
    assert!(p.exists(), "fixture {} is missing", p.display());
    p
}

/// The agent binary: `$SONDE_BIN`, else `<workspace>/target/debug/sonde`.
pub fn sonde_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SONDE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SONDE_BIN={} is not a file", p.display());
        return p;
    }
    let root = crate_dir()
        .parent()
        .expect("tests crate has a parent")
        .to_path_buf();
    let p = root.join("target/debug/sonde");
    assert!(
        p.is_file(),
        "the agent binary {} is missing: build it with `cargo build -p sonde` in the workspace \
         root, or point SONDE_BIN at a sonde binary",
        p.display()
    );
    p
}

/// Python 3: `$SONDE_E2E_PYTHON`, else `/usr/bin/python3` (the Debian one, not a pyenv
/// shim, so the traced executable is predictable), else `python3` from PATH.
pub fn python() -> OsString {
    if let Some(p) = std::env::var_os("SONDE_E2E_PYTHON") {
        return p;
    }
    if Path::new("/usr/bin/python3").exists() {
        return "/usr/bin/python3".into();
    }
    "python3".into()
}

/// Node.js: `$SONDE_E2E_NODE`, else `/usr/bin/node`.
pub fn node() -> OsString {
    std::env::var_os("SONDE_E2E_NODE").unwrap_or_else(|| "/usr/bin/node".into())
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sonde-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Nanoseconds since the Unix epoch, to compare with span timestamps.
pub fn now_unix_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos(),
    )
    .expect("time fits u64")
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_group(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill has no memory preconditions; a stale group only yields ESRCH.
    unsafe {
        libc::kill(-pid, sig);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("waiting for a child") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

// ===== the agent =====

/// How long the agent may take to load and attach its probes (debug build, 2 slow cores,
/// several agents loading at once when tests run in parallel).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Set to a `--hooks` value to run every agent of the tests with that hook family.
pub const HOOKS_ENV: &str = "SONDE_TEST_HOOKS";
/// How long SIGINT may take to flush and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `sonde` (attach or run), killed on drop. Its stdout and stderr go to files
/// in its own temp dir, so a test can poll the spans while it runs.
pub struct Agent {
    child: Option<Child>,
    dir: TempDir,
    args: Vec<OsString>,
    stopped: Option<Stopped>,
}

/// What a stopped agent left: exit status, spans, counters, stderr.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub status: ExitStatus,
    pub spans: Vec<Value>,
    pub counters: BTreeMap<String, u64>,
    pub stderr: String,
}

impl Stopped {
    /// Exit status 0 and no panic, or the test fails with `what` and the agent's stderr.
    pub fn assert_clean(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} ({}); stderr:\n{}",
            self.status,
            self.stderr
        );
        assert_no_panic(&self.stderr);
    }
}

/// Builder for the agent's command line. Always `-o <output> --ready-file <tmp>`, the
/// output being `json` unless [`AgentCmd::output`] says otherwise.
pub struct AgentCmd {
    sub: &'static str,
    args: Vec<OsString>,
    command: Vec<OsString>,
    env: Vec<(String, String)>,
    output: &'static str,
    /// A command the agent runs under, its path and arguments appended (see `wrapped`).
    wrapper: Vec<OsString>,
}

impl AgentCmd {
    /// `sonde attach --pid <pid>...`.
    pub fn attach(pids: &[u32]) -> Self {
        let mut args = Vec::new();
        for pid in pids {
            args.push("--pid".into());
            args.push(pid.to_string().into());
        }
        Self {
            sub: "attach",
            args,
            command: Vec::new(),
            env: Vec::new(),
            output: "json",
            wrapper: Vec::new(),
        }
    }

    /// `sonde run ... -- <command>`.
    pub fn run<S: AsRef<std::ffi::OsStr>>(command: &[S]) -> Self {
        Self {
            sub: "run",
            args: Vec::new(),
            command: command.iter().map(|s| s.as_ref().to_owned()).collect(),
            env: Vec::new(),
            output: "json",
            wrapper: Vec::new(),
        }
    }

    /// Runs the agent as the last arguments of `wrapper` (e.g. `unshare ... sh -c ...`),
    /// which must end by exec'ing them, so the agent keeps the wrapper's pid.
    pub fn wrapped<S: AsRef<std::ffi::OsStr>>(mut self, wrapper: &[S]) -> Self {
        self.wrapper = wrapper.iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// Extra agent flags (`--port 8080`, `--duration 3`, ...).
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// `-o none|json|tree` instead of `-o json` (with `none`, [`Agent::spans_now`] and
    /// [`Agent::stop`] see no spans: the test reads them elsewhere, e.g. from OTLP).
    pub fn output(mut self, format: &'static str) -> Self {
        self.output = format;
        self
    }

    /// An environment variable for the agent (and, with `run`, the traced command).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Starts the agent without waiting for readiness.
    pub fn spawn_unready(self) -> Agent {
        let dir = TempDir::new("agent");
        let mut args: Vec<OsString> = vec![self.sub.into()];
        args.extend(self.args);
        // `cargo xtask test` runs the data-capture suites a second time with another hook
        // family (an explicit `--hooks` never falls back, so a broken family fails here).
        if let Ok(hooks) = std::env::var(HOOKS_ENV)
            && !hooks.is_empty()
            && !args.iter().any(|a| a == "--hooks")
        {
            args.extend(["--hooks".into(), hooks.into()]);
        }
        args.extend(["-o".into(), self.output.into(), "--ready-file".into()]);
        args.push(dir.join("ready").into_os_string());
        if !self.command.is_empty() {
            args.push("--".into());
            args.extend(self.command);
        }
        let stdout = std::fs::File::create(dir.join("stdout")).expect("agent stdout file");
        let stderr = std::fs::File::create(dir.join("stderr")).expect("agent stderr file");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(sonde_bin());
                cmd
            }
            None => Command::new(sonde_bin()),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .env("RUST_BACKTRACE", "1")
            .process_group(0);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", sonde_bin().display()));
        Agent {
            child: Some(child),
            dir,
            args,
            stopped: None,
        }
    }

    /// Starts the agent and waits until it wrote its ready file; panics (with its stderr)
    /// if it exits first or takes longer than a minute.
    pub fn start(self) -> Agent {
        let mut agent = self.spawn_unready();
        match agent.wait_ready(READY_TIMEOUT) {
            Readiness::Ready => agent,
            Readiness::Exited(st) => panic!(
                "sonde {:?} exited ({st}) before it was ready; stderr:\n{}",
                agent.args,
                agent.stderr()
            ),
            Readiness::TimedOut => panic!(
                "sonde {:?} not ready after {READY_TIMEOUT:?}; stderr:\n{}",
                agent.args,
                agent.stderr()
            ),
        }
    }
}

/// Outcome of waiting for the ready file.
#[derive(Debug)]
pub enum Readiness {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

impl Agent {
    /// `sonde attach --pid ...`, started and ready.
    pub fn attach(pids: &[u32]) -> Agent {
        AgentCmd::attach(pids).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    pub fn wait_ready(&mut self, timeout: Duration) -> Readiness {
        let ready = self.dir.join("ready");
        let deadline = Instant::now() + timeout;
        loop {
            if ready.exists() {
                return Readiness::Ready;
            }
            let child = self.child.as_mut().expect("agent running");
            if let Some(st) = child.try_wait().expect("waiting for sonde") {
                // It may have written the file just before exiting.
                return if ready.exists() {
                    Readiness::Ready
                } else {
                    Readiness::Exited(st)
                };
            }
            if Instant::now() >= deadline {
                return Readiness::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr"))
    }

    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The agent's resident set size (`VmRSS` of /proc/PID/status), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading the agent's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in the agent's status:\n{status}"))
    }

    /// The counters as of now: SIGUSR1 makes the agent print its report; waits (5 s at
    /// most) for a report newer than the last one and parses it.
    pub fn counters_now(&self) -> BTreeMap<String, u64> {
        let reports = |s: &str| s.matches("sonde: counters").count();
        let before = reports(&self.stderr());
        signal(self.pid(), libc::SIGUSR1);
        let printed = wait_until(Duration::from_secs(5), || reports(&self.stderr()) > before);
        // The report is one write; a little slack in case it is split.
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr();
        assert!(printed, "SIGUSR1 printed no counters:\n{stderr}");
        let last = stderr.rsplit("sonde: counters").next().unwrap_or_default();
        parse_counters(last)
    }

    /// Polls [`Agent::counters_now`] until `name` reaches `min` (or `timeout` passes);
    /// returns the last value seen.
    pub fn wait_counter(&self, name: &str, min: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.counters_now().get(name).copied().unwrap_or(0);
            if v >= min || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The spans printed so far (complete lines only).
    pub fn spans_now(&self) -> Vec<Value> {
        parse_spans(&read_lossy(&self.dir.join("stdout")), false)
    }

    /// Waits until at least `n` spans were printed or `timeout` passed; returns how many.
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> usize {
        let mut count = 0;
        wait_until(timeout, || {
            count = self.spans_now().len();
            count >= n
        });
        count
    }

    /// Waits for `n` spans (10 s at most), lets 300 ms pass to catch extra ones, stops.
    pub fn collect(&mut self, n: usize) -> SpanTree {
        self.wait_for_spans(n, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(300));
        let spans = self.stop();
        SpanTree::new(spans).with_context(&self.stopped().stderr)
    }

    /// SIGINT, wait for a clean exit (status 0, no panic), return every span. Counters and
    /// stderr are kept for [`Agent::counter`] and [`Agent::stopped`]. Checks the
    /// invariants every span must hold ([`SpanTree::check_invariants`]).
    pub fn stop(&mut self) -> Vec<Value> {
        let stopped = self.stop_unchecked();
        stopped.assert_clean("sonde should exit 0 on SIGINT");
        let tree = SpanTree::new(stopped.spans.clone()).with_context(&stopped.stderr);
        tree.check_invariants();
        stopped.spans
    }

    /// SIGINT and collect, without judging the exit.
    pub fn stop_unchecked(&mut self) -> Stopped {
        if let Some(s) = &self.stopped {
            return s.clone();
        }
        let mut child = self.child.take().expect("agent running");
        if child.try_wait().expect("polling sonde").is_none() {
            signal(child.id(), libc::SIGINT);
        }
        let status = match wait_timeout(&mut child, STOP_TIMEOUT) {
            Some(st) => st,
            None => {
                kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                panic!(
                    "sonde did not exit within {STOP_TIMEOUT:?} of SIGINT; stderr:\n{}",
                    self.stderr()
                );
            }
        };
        self.finish(status)
    }

    /// Waits for the agent to exit on its own (`sonde run`, `--duration`, errors).
    pub fn wait_exit(&mut self, timeout: Duration) -> Stopped {
        let mut child = self.child.take().expect("agent running");
        let Some(status) = wait_timeout(&mut child, timeout) else {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            panic!(
                "sonde {:?} still running after {timeout:?}; stderr:\n{}",
                self.args,
                self.stderr()
            );
        };
        self.finish(status)
    }

    /// [`Agent::wait_exit`] for a `sonde run` whose command must succeed: exit status 0
    /// and no panic, or the test fails with `what` and the agent's stderr.
    pub fn wait_exit_ok(&mut self, timeout: Duration, what: &str) -> Stopped {
        let stopped = self.wait_exit(timeout);
        stopped.assert_clean(&format!("{what} failed"));
        stopped
    }

    fn finish(&mut self, status: ExitStatus) -> Stopped {
        let stderr = self.stderr();
        let stopped = Stopped {
            status,
            spans: parse_spans(&read_lossy(&self.dir.join("stdout")), true),
            counters: parse_counters(&stderr),
            stderr,
        };
        self.stopped = Some(stopped.clone());
        stopped
    }

    /// SIGKILL: no flush, no cleanup by the agent itself.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// A counter from the report printed on exit; panics if the report lacks it.
    pub fn counter(&self, name: &str) -> u64 {
        let s = self
            .stopped
            .as_ref()
            .expect("counters exist once the agent stopped");
        *s.counters.get(name).unwrap_or_else(|| {
            panic!(
                "counter {name} missing from the report; stderr:\n{}",
                s.stderr
            )
        })
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.stopped
            .as_ref()
            .map(|s| s.counters.clone())
            .unwrap_or_default()
    }

    pub fn stopped(&self) -> &Stopped {
        self.stopped.as_ref().expect("agent stopped")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Runs `sonde run -o json -- <command>` to completion (30 s at most); checks it did not
/// panic and that every span holds the invariants.
pub fn sonde_run<S: AsRef<std::ffi::OsStr>>(command: &[S]) -> (Stopped, SpanTree) {
    let mut agent = AgentCmd::run(command).spawn_unready();
    let stopped = agent.wait_exit(Duration::from_secs(30));
    assert_no_panic(&stopped.stderr);
    let tree = SpanTree::new(stopped.spans.clone()).with_context(&stopped.stderr);
    tree.check_invariants();
    (stopped, tree)
}

pub fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "sonde panicked; stderr:\n{stderr}"
    );
}

fn parse_spans(stdout: &str, strict: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let complete = if strict || stdout.ends_with('\n') {
        stdout
    } else {
        // A line still being written is left for the next poll.
        stdout.rsplit_once('\n').map_or("", |(done, _)| done)
    };
    // With `sonde run`, the traced command shares the agent's stdout: its own lines
    // (not JSON objects) are skipped.
    for line in complete.lines().filter(|l| l.trim_start().starts_with('{')) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => out.push(v),
            Err(e) if strict => panic!("sonde printed a line that is not JSON ({e}): {line}"),
            Err(_) => {}
        }
    }
    out
}

/// Lines `  <name> <value>  <help>` of the counters report.
pub fn parse_counters(stderr: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in stderr.lines().filter(|l| l.starts_with("  ")) {
        let mut it = line.split_whitespace();
        if let (Some(name), Some(Ok(v))) = (it.next(), it.next().map(str::parse::<u64>)) {
            m.insert(name.to_owned(), v);
        }
    }
    m
}

/// A counter of an exit report; panics (with every span) when the report lacks it.
pub fn counter(tree: &SpanTree, counters: &BTreeMap<String, u64>, name: &str) -> u64 {
    let v = counters.get(name).copied();
    check!(
        tree,
        v.is_some(),
        "counter {name} missing from the exit report"
    );
    v.unwrap_or_default()
}

// ===== servers =====

/// A real server in its own process group, killed (group-wide) on drop.
pub struct Server {
    child: Option<Child>,
    /// The address it listens on: `127.0.0.1`, or `::1` for [`Server::python_at`].
    pub host: String,
    pub port: u16,
    pub name: String,
    /// Holds the server's files (docroot, config, logs) as long as it runs.
    pub dir: TempDir,
}

impl Server {
    /// Spawns `cmd` (its output goes to files in `dir`) and waits until `port` accepts.
    pub fn spawn(name: &str, cmd: Command, port: u16, dir: TempDir) -> Server {
        Self::spawn_at(name, cmd, "127.0.0.1", port, dir)
    }

    /// [`Server::spawn`] for a server listening on `host` (`127.0.0.1`, `::1`).
    pub fn spawn_at(name: &str, mut cmd: Command, host: &str, port: u16, dir: TempDir) -> Server {
        let ip: std::net::IpAddr = host.parse().expect("an IP address");
        let out = std::fs::File::create(dir.join("server.out")).expect("server log");
        let err = std::fs::File::create(dir.join("server.err")).expect("server log");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({cmd:?}): {e}"));
        let mut server = Server {
            child: Some(child),
            host: host.to_owned(),
            port,
            name: name.to_owned(),
            dir,
        };
        let up = wait_until(Duration::from_secs(15), || {
            if let Some(st) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{name} exited ({st}) before listening:\n{}", server.logs());
            }
            TcpStream::connect((ip, port)).is_ok()
        });
        assert!(
            up,
            "{name} not listening on {host} port {port} after 15 s:\n{}",
            server.logs()
        );
        server
    }

    /// `tests/fixtures/py_server.py`: ThreadingHTTPServer, HTTP/1.1 keep-alive, routes in
    /// the fixture's docstring.
    pub fn python() -> Server {
        Self::python_env(&[])
    }

    pub fn python_env(env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.arg(fixture("py_server.py"))
            .arg(port.to_string())
            .env_remove("OTEL_SERVICE_NAME");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn("py_server.py", cmd, port, TempDir::new("py"))
    }

    /// `tests/fixtures/py_server.py` bound to `host` (`::1` for IPv6).
    pub fn python_at(host: &str) -> Server {
        let ip: std::net::IpAddr = host.parse().expect("an IP address");
        let port = TcpListener::bind((ip, 0))
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("binding {host} port 0: {e}"))
            .port();
        let mut cmd = Command::new(python());
        cmd.arg(fixture("py_server.py"))
            .arg(port.to_string())
            .arg(host)
            .env_remove("OTEL_SERVICE_NAME");
        Self::spawn_at("py_server.py", cmd, host, port, TempDir::new("py"))
    }

    /// `python3 -m http.server` serving `docroot` (HTTP/1.0, one thread per request).
    pub fn python_http_server(docroot: &Path) -> Server {
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(docroot)
            .arg(port.to_string())
            .env_remove("OTEL_SERVICE_NAME");
        Self::spawn(
            "python3 -m http.server",
            cmd,
            port,
            TempDir::new("httpserver"),
        )
    }

    /// `tests/fixtures/node_server.js`.
    pub fn node() -> Server {
        let port = free_port();
        let mut cmd = Command::new(node());
        cmd.arg(fixture("node_server.js"))
            .arg(port.to_string())
            .env_remove("OTEL_SERVICE_NAME");
        Self::spawn("node_server.js", cmd, port, TempDir::new("node"))
    }

    /// nginx (one worker) from `tests/fixtures/<template>`, with `@PORT@`, `@DIR@` and the
    /// given extra `@KEY@` placeholders substituted. `@DIR@/www` is the docroot; `setup`
    /// fills it before nginx starts.
    pub fn nginx(template: &str, vars: &[(&str, String)], setup: impl FnOnce(&Path)) -> Server {
        let port = free_port();
        let dir = TempDir::new("nginx");
        let www = dir.join("www");
        std::fs::create_dir_all(&www).expect("docroot");
        setup(&www);
        let mut conf = std::fs::read_to_string(fixture(template)).expect("nginx template");
        conf = conf.replace("@PORT@", &port.to_string());
        conf = conf.replace("@DIR@", dir.path().to_str().expect("utf-8 temp path"));
        for (k, v) in vars {
            conf = conf.replace(&format!("@{k}@"), v);
        }
        assert!(
            !conf.contains('@'),
            "unsubstituted placeholder in {template}:\n{conf}"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("writing nginx.conf");
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed (apt-get install nginx)");
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path);
        Self::spawn("nginx", cmd, port, dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn url(&self, path: &str) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}{path}", self.host, self.port)
        } else {
            format!("http://{}:{}{path}", self.host, self.port)
        }
    }

    pub fn logs(&self) -> String {
        format!(
            "--- {} stdout\n{}--- stderr\n{}",
            self.name,
            read_lossy(&self.dir.join("server.out")),
            read_lossy(&self.dir.join("server.err"))
        )
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// A plain child process (a client waiting for a go signal, `sleep`), killed on drop.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Proc(Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}")),
        ))
    }
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }
    /// Waits for exit (30 s at most) and returns its output.
    pub fn output(mut self) -> Output {
        let mut child = self.0.take().expect("running");
        let Some(status) = wait_timeout(&mut child, Duration::from_secs(30)) else {
            kill_group(child.id(), libc::SIGKILL);
            let out = child.wait_with_output().expect("collecting output");
            panic!(
                "process still running after 30 s; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        child.stdout.take().map(|mut s| s.read_to_end(&mut stdout));
        child.stderr.take().map(|mut s| s.read_to_end(&mut stderr));
        Output {
            status,
            stdout,
            stderr,
        }
    }
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ===== clients =====

/// Result of one curl run: `-w` output is after the body, separated by a marker line.
#[derive(Debug)]
pub struct Curl {
    pub status: ExitStatus,
    pub body: Vec<u8>,
    /// `%{http_code} %{local_port} %{num_connects} %{size_download}` per URL.
    pub writeouts: Vec<CurlWrite>,
    pub stderr: String,
}

#[derive(Debug, Clone, Copy)]
pub struct CurlWrite {
    pub http_code: u16,
    pub local_port: u16,
    pub num_connects: u32,
    pub size_download: u64,
}

pub const CURL_MARK: &str = "\n@@sonde-e2e@@ ";

/// The curl arguments that make it print [`CurlWrite`] fields after each body.
pub fn curl_writeout_args() -> [String; 2] {
    [
        "-w".to_owned(),
        format!("{CURL_MARK}%{{http_code}} %{{local_port}} %{{num_connects}} %{{size_download}}\n"),
    ]
}

/// `curl -sS --max-time 30 <args>` (untraced), parsing the write-out of every URL.
pub fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(curl_writeout_args())
        .args(args)
        .output()
        .expect("running curl (apt-get install curl)");
    parse_curl(out)
}

pub fn parse_curl(out: Output) -> Curl {
    let text = out.stdout;
    let mut body = Vec::new();
    let mut writeouts = Vec::new();
    let mark = CURL_MARK.as_bytes();
    let mut rest: &[u8] = &text;
    while let Some(i) = rest.windows(mark.len()).position(|w| w == mark) {
        body.extend_from_slice(&rest[..i]);
        let after = &rest[i + mark.len()..];
        let end = after
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(after.len());
        let line = String::from_utf8_lossy(&after[..end]).into_owned();
        let f: Vec<&str> = line.split_whitespace().collect();
        writeouts.push(CurlWrite {
            http_code: f.first().and_then(|s| s.parse().ok()).unwrap_or(0),
            local_port: f.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
            num_connects: f.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
            size_download: f.get(3).and_then(|s| s.parse().ok()).unwrap_or(0),
        });
        rest = &after[(end + 1).min(after.len())..];
    }
    body.extend_from_slice(rest);
    Curl {
        status: out.status,
        body,
        writeouts,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `curl` spawned in the background (for concurrent clients).
pub fn curl_spawn(args: &[&str]) -> Proc {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30"])
        .args(curl_writeout_args())
        .args(args);
    Proc::spawn(cmd)
}

/// `tests/fixtures/raw_client.py` with a JSON script of steps (see the fixture); returns
/// its JSON report (`local_port`, `responses: [{status, body_len, body}]`).
pub fn raw_client(script: &Value) -> Value {
    let out = raw_client_spawn(script).output();
    raw_client_report(&out)
}

pub fn raw_client_spawn(script: &Value) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(fixture("raw_client.py")).arg(script.to_string());
    Proc::spawn(cmd)
}

/// `out` is a successful run of `what`, or the test fails with its output.
pub fn assert_succeeded(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` (`what` names it) to its end; it must succeed.
pub fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: running {cmd:?}: {e}"));
    assert_succeeded(&format!("{what} ({cmd:?})"), &out);
    out
}

pub fn raw_client_report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "raw_client.py failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "raw_client.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// An untraced raw TCP client in the test process.
pub fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads until EOF (or the 10 s read timeout); returns what arrived.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends one `Connection: close` GET and returns the raw response bytes.
pub fn raw_get_close(port: u16, path: &str) -> Vec<u8> {
    let mut s = tcp(port);
    // One buffer, one send(): `write!` would issue a write per formatted piece.
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    read_to_close(&mut s)
}

/// Byte offset just after the header block (`\r\n\r\n`).
pub fn header_end(resp: &[u8]) -> usize {
    resp.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .expect("response has a header block")
}

/// Deterministic pseudo-random bytes (xorshift), for garbage traffic.
pub fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A process id that is not in use (for "nonexistent pid" cases).
pub fn unused_pid() -> u32 {
    (4_000_000..4_190_000)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("an unused pid")
}

// ===== spans =====

pub const SERVER: i64 = 2;
pub const CLIENT: i64 = 3;

/// Tolerance for "child within parent" (both from the same host clock).
pub const NESTING_SLACK_NS: u64 = 5_000_000;

/// Accessors on one OTLP-JSON span.
pub trait SpanExt {
    fn name(&self) -> &str;
    fn kind(&self) -> i64;
    fn trace_id(&self) -> &str;
    fn span_id(&self) -> &str;
    fn parent_id(&self) -> Option<&str>;
    fn start(&self) -> u64;
    fn end(&self) -> u64;
    fn duration(&self) -> Duration;
    /// `status.code`: 0 unset, 2 error.
    fn status_code(&self) -> i64;
    fn attr(&self, key: &str) -> Option<&Value>;
    /// Any attribute value as a string (int values are strings in OTLP JSON already).
    fn attr_str(&self, key: &str) -> Option<String>;
    fn attr_int(&self, key: &str) -> Option<i64>;
    fn res_attr(&self, key: &str) -> Option<String>;
    fn summary(&self) -> String;
}

fn any_value_str(v: &Value) -> Option<String> {
    if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        return Some(s.to_owned());
    }
    if let Some(i) = v.get("intValue") {
        return Some(i.as_str().map_or_else(|| i.to_string(), str::to_owned));
    }
    v.get("boolValue")
        .and_then(Value::as_bool)
        .map(|b| b.to_string())
}

fn find_kv<'a>(list: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    list?
        .as_array()?
        .iter()
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")
}

impl SpanExt for Value {
    fn name(&self) -> &str {
        self["name"].as_str().unwrap_or("")
    }
    fn kind(&self) -> i64 {
        self["kind"].as_i64().unwrap_or(-1)
    }
    fn trace_id(&self) -> &str {
        self["traceId"].as_str().unwrap_or("")
    }
    fn span_id(&self) -> &str {
        self["spanId"].as_str().unwrap_or("")
    }
    fn parent_id(&self) -> Option<&str> {
        self.get("parentSpanId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
    fn start(&self) -> u64 {
        self["startTimeUnixNano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    fn end(&self) -> u64 {
        self["endTimeUnixNano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    fn duration(&self) -> Duration {
        Duration::from_nanos(self.end().saturating_sub(self.start()))
    }
    fn status_code(&self) -> i64 {
        self["status"]
            .get("code")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
    fn attr(&self, key: &str) -> Option<&Value> {
        find_kv(self.get("attributes"), key)
    }
    fn attr_str(&self, key: &str) -> Option<String> {
        self.attr(key).and_then(any_value_str)
    }
    fn attr_int(&self, key: &str) -> Option<i64> {
        self.attr_str(key).and_then(|s| s.parse().ok())
    }
    fn res_attr(&self, key: &str) -> Option<String> {
        find_kv(self.get("resource").and_then(|r| r.get("attributes")), key).and_then(any_value_str)
    }
    fn summary(&self) -> String {
        let kind = match self.kind() {
            SERVER => "SERVER",
            CLIENT => "CLIENT",
            _ => "?",
        };
        format!(
            "{kind} {:?} span={} parent={} trace={} status={} code={} dur={:?} svc={} src={}",
            self.name(),
            self.span_id(),
            self.parent_id().unwrap_or("-"),
            self.trace_id(),
            self.status_code(),
            self.attr_str("http.response.status_code")
                .unwrap_or_default(),
            self.duration(),
            self.res_attr("service.name").unwrap_or_default(),
            self.attr_str("sonde.parent.source").unwrap_or_default(),
        )
    }
}

/// The spans of one test, with tree queries and assertions that print them all.
pub struct SpanTree {
    pub spans: Vec<Value>,
    context: String,
}

impl SpanTree {
    pub fn new(spans: Vec<Value>) -> Self {
        Self {
            spans,
            context: String::new(),
        }
    }

    /// Extra text printed with the spans on failure (agent stderr, counters).
    pub fn with_context(mut self, ctx: &str) -> Self {
        self.context = ctx.to_owned();
        self
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Every span: a one-line summary each, then the full JSON.
    pub fn dump(&self) -> String {
        let mut s = format!("--- {} span(s):\n", self.spans.len());
        for sp in &self.spans {
            let _ = writeln!(s, "  {}", sp.summary());
        }
        s.push_str("--- full JSON:\n");
        for sp in &self.spans {
            let _ = writeln!(s, "{sp}");
        }
        if !self.context.is_empty() {
            let _ = write!(s, "--- context:\n{}", self.context);
        }
        s
    }

    pub fn of_kind(&self, kind: i64) -> Vec<&Value> {
        self.spans.iter().filter(|s| s.kind() == kind).collect()
    }

    pub fn all(&self, kind: i64, name: &str) -> Vec<&Value> {
        self.spans
            .iter()
            .filter(|s| s.kind() == kind && s.name() == name)
            .collect()
    }

    /// The one span of this kind and name; panics (printing all) unless exactly one.
    pub fn find(&self, kind: i64, name: &str) -> &Value {
        let found = self.all(kind, name);
        check!(
            self,
            found.len() == 1,
            "expected exactly one span kind={kind} name={name:?}, found {}",
            found.len()
        );
        found[0]
    }

    pub fn by_id(&self, id: &str) -> Option<&Value> {
        self.spans.iter().find(|s| s.span_id() == id)
    }

    pub fn parent_of(&self, s: &Value) -> Option<&Value> {
        s.parent_id().and_then(|p| self.by_id(p))
    }

    pub fn children_of(&self, s: &Value) -> Vec<&Value> {
        self.spans
            .iter()
            .filter(|c| c.parent_id() == Some(s.span_id()))
            .collect()
    }

    /// The multiset of `(kind, name)` must be exactly `expected`.
    pub fn assert_names(&self, expected: &[(i64, &str)]) {
        let mut got: Vec<(i64, String)> = self
            .spans
            .iter()
            .map(|s| (s.kind(), s.name().to_owned()))
            .collect();
        let mut want: Vec<(i64, String)> = expected
            .iter()
            .map(|(k, n)| (*k, (*n).to_owned()))
            .collect();
        got.sort();
        want.sort();
        eqnice!(self, got, want, "span (kind, name) set");
    }

    pub fn assert_root(&self, s: &Value) {
        check!(
            self,
            s.parent_id().is_none(),
            "{} should be a root span",
            s.name()
        );
        check!(
            self,
            s.attr("sonde.parent.source").is_none(),
            "a root span has no sonde.parent.source"
        );
    }

    /// `child`'s parent is `parent`, same trace, provenance `source`, nested in time.
    pub fn assert_child(&self, parent: &Value, child: &Value, source: &str) {
        eqnice!(
            self,
            child.parent_id(),
            Some(parent.span_id()),
            "{} should be the child of {}",
            child.summary(),
            parent.summary()
        );
        eqnice!(
            self,
            child.trace_id(),
            parent.trace_id(),
            "child and parent share the trace id"
        );
        eqnice!(
            self,
            child.attr_str("sonde.parent.source").as_deref(),
            Some(source),
            "sonde.parent.source of {}",
            child.name()
        );
        self.assert_nested(parent, child);
    }

    pub fn assert_nested(&self, parent: &Value, child: &Value) {
        check!(
            self,
            child.start() + NESTING_SLACK_NS >= parent.start()
                && child.end() <= parent.end() + NESTING_SLACK_NS,
            "{} [{}..{}] should lie within {} [{}..{}] (± {} ns)",
            child.name(),
            child.start(),
            child.end(),
            parent.name(),
            parent.start(),
            parent.end(),
            NESTING_SLACK_NS
        );
    }

    /// Attribute as string equals `want`.
    pub fn assert_attr(&self, s: &Value, key: &str, want: &str) {
        eqnice!(
            self,
            s.attr_str(key).as_deref(),
            Some(want),
            "attribute {key} of {}",
            s.name()
        );
    }

    /// What every span must satisfy whatever the scenario: ids, kinds, times, resource,
    /// parent provenance, nesting under a parent present in the output.
    pub fn check_invariants(&self) {
        let now = now_unix_nanos();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        for s in &self.spans {
            let sum = s.summary();
            check!(
                self,
                hex(s.trace_id(), 32) && s.trace_id() != "0".repeat(32),
                "traceId of {sum}"
            );
            check!(
                self,
                hex(s.span_id(), 16) && s.span_id() != "0".repeat(16),
                "spanId of {sum}"
            );
            check!(
                self,
                s.kind() == SERVER || s.kind() == CLIENT,
                "kind of {sum}"
            );
            check!(self, !s.name().is_empty(), "name of {sum}");
            check!(
                self,
                s.start() > 0 && s.start() <= s.end(),
                "start <= end for {sum}"
            );
            check!(
                self,
                s.end() <= now + 60_000_000_000,
                "end not in the future for {sum}"
            );
            check!(
                self,
                s.start() + 3_600_000_000_000 >= now,
                "start within the last hour for {sum}"
            );
            check!(
                self,
                s.duration() < Duration::from_secs(60),
                "duration under a minute for {sum}"
            );
            check!(
                self,
                s["status"].is_object(),
                "status is an object for {sum}"
            );
            for key in [
                "service.name",
                "process.pid",
                "process.executable.name",
                "host.name",
                "service.instance.id",
            ] {
                check!(
                    self,
                    s.res_attr(key).is_some_and(|v| !v.is_empty()),
                    "resource {key} of {sum}"
                );
            }
            check!(
                self,
                s.attr_str("http.request.method").is_some()
                    || s.attr_str("db.system.name").is_some(),
                "http.request.method or db.system.name of {sum}"
            );
            match s.parent_id() {
                None => check!(
                    self,
                    s.attr("sonde.parent.source").is_none(),
                    "root with a parent source: {sum}"
                ),
                Some(pid) => {
                    check!(self, hex(pid, 16), "parentSpanId of {sum}");
                    let src = s.attr_str("sonde.parent.source").unwrap_or_default();
                    check!(
                        self,
                        [
                            "thread",
                            "goroutine",
                            "thread_last_read",
                            "fork",
                            "local_peer",
                            "header",
                            "injected",
                            "tcp_option"
                        ]
                        .contains(&src.as_str()),
                        "sonde.parent.source of {sum}"
                    );
                    if let Some(p) = self.by_id(pid) {
                        eqnice!(
                            self,
                            s.trace_id(),
                            p.trace_id(),
                            "child {} and parent share the trace",
                            s.name()
                        );
                        // A guessed parent (an event loop's last request) may be any
                        // request that was open when the call started.
                        if src != "thread_last_read" {
                            self.assert_nested(p, s);
                        }
                    }
                }
            }
        }
        let mut ids: Vec<&str> = self.spans.iter().map(|s| s.span_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        eqnice!(self, ids.len(), self.spans.len(), "span ids are unique");
    }
}

/// Signals a process (not its group).
pub fn send_signal(pid: u32, sig: libc::c_int) {
    signal(pid, sig);
}

/// Whether `status` is "killed by `sig`".
pub fn killed_by(status: ExitStatus, sig: libc::c_int) -> bool {
    status.signal() == Some(sig)
}
