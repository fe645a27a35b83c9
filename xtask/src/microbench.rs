//! The syscall-loop microbenchmark of `cargo xtask bench`: the per-event cost of the
//! probes, without nginx's and wrk's noise.
//!
//! `xtask/bench/syscall_loop.c` does HTTP-shaped request/response pairs on one loopback
//! connection inside one process, pinned to one CPU (the agent to the other): 4 data
//! syscalls per request, all traced. Measured with no agent, with empty probes (the hook
//! floor) and with full tracing, each with the default hooks and with
//! `--hooks syscall-tracepoints`, alternating, medians over rounds.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::util::{self, ChildGuard, TempDir};

const ITERATIONS: u32 = 200_000;
/// Data syscalls the loop makes per request.
pub const EVENTS_PER_REQUEST: f64 = 4.0;

/// The configurations, in sample order: (agent?, empty probes?, syscall tracepoints?).
const CONFIGS: [(bool, bool, bool); 5] = [
    (false, false, false),
    (true, true, false),
    (true, false, false),
    (true, true, true),
    (true, false, true),
];

/// Median ns per request for each configuration.
#[derive(Clone, Copy, Debug)]
pub struct MicroResult {
    pub none_ns: f64,
    pub floor_ns: f64,
    pub full_ns: f64,
    /// Floor and full with `--hooks syscall-tracepoints`.
    pub floor_syscall_ns: f64,
    pub full_syscall_ns: f64,
}

impl MicroResult {
    /// Cost per traced syscall of the hooks alone.
    pub fn floor_per_event(&self) -> f64 {
        (self.floor_ns - self.none_ns) / EVENTS_PER_REQUEST
    }

    /// Cost per traced syscall with full tracing.
    pub fn full_per_event(&self) -> f64 {
        (self.full_ns - self.none_ns) / EVENTS_PER_REQUEST
    }

    fn per_event(&self, ns: f64) -> f64 {
        (ns - self.none_ns) / EVENTS_PER_REQUEST
    }

    pub fn markdown(&self, rounds: u32) -> String {
        format!(
            "### Per-event cost (syscall-loop microbenchmark, medians of {rounds} rounds)\n\n\
             | configuration | ns per request (4 traced syscalls) | added per syscall |\n\
             |---|---:|---:|\n\
             | (a) no agent | {:.0} | |\n\
             | (b) empty probes (floor) | {:.0} | {:.0} ns |\n\
             | (c) full tracing | {:.0} | {:.0} ns |\n\
             | (f) empty probes, syscall tracepoints | {:.0} | {:.0} ns |\n\
             | (g) full tracing, syscall tracepoints | {:.0} | {:.0} ns |\n",
            self.none_ns,
            self.floor_ns,
            self.floor_per_event(),
            self.full_ns,
            self.full_per_event(),
            self.floor_syscall_ns,
            self.per_event(self.floor_syscall_ns),
            self.full_syscall_ns,
            self.per_event(self.full_syscall_ns),
        )
    }
}

pub fn run(sonde: &Path, rounds: u32) -> Result<MicroResult> {
    let dir = TempDir::new("sonde-micro")?;
    let exe = dir.path().join("syscall_loop");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/syscall_loop.c");
    util::exec(Command::new("cc").args(["-O2", "-o"]).arg(&exe).arg(&src))?;
    let mut samples: [Vec<f64>; CONFIGS.len()] = Default::default();
    for round in 0..rounds {
        for k in 0..CONFIGS.len() {
            let config = (k + round as usize) % CONFIGS.len();
            util::check_interrupted()?;
            let ns = one_run(sonde, &exe, dir.path(), CONFIGS[config])?;
            samples[config].push(ns);
        }
    }
    let [none, floor, full, floor_syscall, full_syscall] = samples.map(crate::bench::median);
    Ok(MicroResult {
        none_ns: none,
        floor_ns: floor,
        full_ns: full,
        floor_syscall_ns: floor_syscall,
        full_syscall_ns: full_syscall,
    })
}

fn one_run(
    sonde: &Path,
    exe: &Path,
    dir: &Path,
    (with_agent, empty, syscall_hooks): (bool, bool, bool),
) -> Result<f64> {
    let go = dir.join("go");
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&go);
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(exe)
        .arg(ITERATIONS.to_string())
        .arg(&go)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the syscall loop")?;
    let stdout = child.stdout.take().context("syscall loop stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let pid = lines
        .next()
        .context("syscall loop printed nothing")??
        .trim()
        .parse::<u32>()
        .context("syscall loop pid")?;

    let agent = if !with_agent {
        None
    } else {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", "0"])
            .arg(sonde)
            .args([
                "attach",
                "--pid",
                &pid.to_string(),
                "-o",
                "none",
                "--ready-file",
            ])
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if empty {
            cmd.arg("--empty-probes");
        }
        if syscall_hooks {
            cmd.args(["--hooks", "syscall-tracepoints"]);
        }
        let mut agent =
            ChildGuard::spawn("sonde", &mut cmd, libc::SIGINT, Duration::from_secs(15))?;
        util::wait_for_file(&mut agent, &ready, Duration::from_secs(60))?;
        Some(agent)
    };
    std::fs::write(&go, "")?;
    let line = lines.next().context("syscall loop gave no result")??;
    let status = child.wait()?;
    drop(agent);
    if !status.success() {
        bail!("syscall loop failed: {status}");
    }
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected syscall loop output {line:?}"))
}
