//! `cargo xtask bench`: what the agent costs a busy server. A benchmark, not a test.
//!
//! nginx (one worker) serves a 1 KiB file on loopback; `wrk -t1 -c16 --latency` loads it
//! for `--seconds` per round. Seven configurations alternate, in an order rotated every
//! round, because one round differs from the next by ±20% on these VMs (see
//! docs/benchmarks.md):
//!
//! - `none`:  no agent;
//! - `floor`: `sonde attach --pid <nginx> --empty-probes`: every hook attached, every probe
//!   returns at once: the cost of the hooks themselves;
//! - `full`:  `sonde attach --pid <nginx> -o none`: full tracing, spans not printed;
//! - `floor_syscall` / `full_syscall`: the same with `--hooks syscall-tracepoints`, the
//!   naive hooks (every process on the slow syscall path) the default hooks must beat;
//! - `proxy_no_inject` / `proxy_inject`: wrk loads a second nginx that proxies to the first
//!   over keep-alive upstream connections (a new proxy per run, so its upstream connections
//!   open under the agent); the agent traces the proxy only, with
//!   `--no-inject` and with `traceparent` injection (the default): what injection adds.
//!
//! Reports medians over rounds, ratios against the design targets, the agent's peak RSS
//! and its counters (to show that it did trace, and inject).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;

use crate::util::{self, ChildGuard, TempDir, check_interrupted};

#[derive(Debug, Args)]
pub struct Options {
    /// Rounds; each round runs every configuration once.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// wrk duration per configuration and round, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Also write every round and the summary as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Rewrite docs/benchmarks.md with this run's table.
    #[arg(long)]
    write_docs: bool,
    /// Use this sonde binary instead of building one (cargo build --release -p sonde).
    #[arg(long, env = "SONDE_BIN", value_name = "PATH")]
    sonde_bin: Option<PathBuf>,
    /// Benchmark database servers (pgbench, redis-benchmark) instead of nginx.
    #[arg(long)]
    db: bool,
    /// An extra flag for every agent the benchmark starts, e.g.
    /// `--agent-arg=--wakeup-bytes=65536`; repeatable.
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    agent_args: Vec<String>,
}

/// Throughput with full tracing, as a fraction of no agent: at least this.
const TARGET_FULL_RATIO: f64 = 0.90;
/// Per-request cost of full tracing, as a multiple of the floor's: at most this.
const TARGET_FULL_OVER_FLOOR: f64 = 1.3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    None,
    Floor,
    Full,
    FloorSyscall,
    FullSyscall,
    ProxyNoInject,
    ProxyInject,
}

impl Config {
    const ALL: [Self; 7] = [
        Self::None,
        Self::Floor,
        Self::Full,
        Self::FloorSyscall,
        Self::FullSyscall,
        Self::ProxyNoInject,
        Self::ProxyInject,
    ];
    /// The configurations that load nginx serving the file itself.
    const DIRECT: [Self; 5] = [
        Self::None,
        Self::Floor,
        Self::Full,
        Self::FloorSyscall,
        Self::FullSyscall,
    ];
    /// The configurations that load the proxy in front of it.
    const PROXY: [Self; 2] = [Self::ProxyNoInject, Self::ProxyInject];

    fn label(self) -> &'static str {
        match self {
            Self::None => "(a) no agent",
            Self::Floor => "(b) empty probes (floor)",
            Self::Full => "(c) full tracing (-o none)",
            Self::FloorSyscall => "(f) empty probes, --hooks syscall-tracepoints",
            Self::FullSyscall => "(g) full tracing, --hooks syscall-tracepoints",
            Self::ProxyNoInject => "(d) proxy, full, --no-inject",
            Self::ProxyInject => "(e) proxy, full, injection",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Floor => "floor",
            Self::Full => "full",
            Self::FloorSyscall => "floor_syscall",
            Self::FullSyscall => "full_syscall",
            Self::ProxyNoInject => "proxy_no_inject",
            Self::ProxyInject => "proxy_inject",
        }
    }

    /// The agent's flags after `attach --pid <pid> -o none`; `None`: no agent.
    fn agent_flags(self) -> Option<&'static [&'static str]> {
        match self {
            Self::None => None,
            Self::Floor => Some(&["--empty-probes"]),
            Self::Full | Self::ProxyInject => Some(&[]),
            Self::FloorSyscall => Some(&["--empty-probes", "--hooks", "syscall-tracepoints"]),
            Self::FullSyscall => Some(&["--hooks", "syscall-tracepoints"]),
            Self::ProxyNoInject => Some(&["--no-inject"]),
        }
    }

    fn is_proxy(self) -> bool {
        Self::PROXY.contains(&self)
    }
}

/// One wrk run.
#[derive(Debug)]
struct Sample {
    round: u32,
    config: Config,
    rps: f64,
    p99_ms: f64,
    errors: u64,
    /// Requests wrk completed.
    requests: u64,
    /// Hooks the agent said it attached (`sonde: ready: N hooks attached`).
    hooks: Option<u64>,
    /// Agent peak RSS (VmHWM) in KiB, for agent configurations.
    agent_hwm_kib: Option<u64>,
    /// CPU time per request of the traced nginx (master and workers), in µs.
    server_cpu_us: Option<f64>,
    /// CPU time per request of the agent, in µs.
    agent_cpu_us: Option<f64>,
    /// Share of the host's CPU time left idle during the run.
    idle_share: Option<f64>,
    counters: BTreeMap<String, u64>,
}

pub fn run(opts: Options) -> Result<()> {
    let Options {
        rounds,
        seconds,
        json,
        write_docs,
        sonde_bin,
        db,
        agent_args,
    } = opts;
    if rounds == 0 || seconds == 0 {
        bail!("--rounds and --seconds must be at least 1");
    }
    let command = std::iter::once("cargo xtask bench".to_owned())
        .chain(std::env::args().skip(2))
        .collect::<Vec<_>>()
        .join(" ");
    util::require_root("cargo xtask bench")?;
    util::catch_interrupts();
    crate::setup::run(crate::setup::Options {})?;
    let sonde = match sonde_bin {
        Some(path) => path,
        None => util::build_sonde(true)?,
    };

    if db {
        if !agent_args.is_empty() {
            bail!("--agent-arg applies to the nginx benchmark, not to --db");
        }
        let table = crate::bench_db::run(&sonde, rounds, seconds)?;
        println!("\n{rounds} rounds, medians; the agent traces the database server.\n\n{table}");
        return Ok(());
    }
    let load_before = loadavg();
    if load_before.is_some_and(|l| l > 0.5) {
        println!(
            "bench: warning: load average {:.2} before starting: other work on this machine will add noise",
            load_before.unwrap_or_default()
        );
    }
    let dir = TempDir::new("sonde-bench")?;
    let port = util::free_port()?;
    let mut nginx = start_nginx(&dir.path().join("origin"), port, &NginxRole::Origin)?;
    let url = format!("http://127.0.0.1:{port}/1k.bin");
    let configs = Config::ALL.len();
    println!(
        "bench: nginx pid {} on :{port}; {rounds} rounds x {configs} configs x {seconds} s (about {} s)",
        nginx.pid(),
        u64::from(rounds) * configs as u64 * (u64::from(seconds) + 1)
    );
    wrk(&url, 1).context("warm-up")?;

    let bench = Bench {
        sonde: &sonde,
        agent_args: &agent_args,
        dir: dir.path(),
        seconds,
    };
    let mut samples = Vec::new();
    for round in 0..rounds {
        let mut order = Config::ALL;
        order.rotate_left(usize::try_from(round)? % configs);
        for config in order {
            check_interrupted()?;
            nginx.ensure_running()?;
            // A new proxy for each run: its upstream connections are opened under the
            // agent (a connection opened before the agent attached is never injected).
            let proxy = if config.is_proxy() {
                let proxy_port = util::free_port()?;
                let proxy_dir = dir.path().join(format!("proxy-{round}-{}", config.key()));
                let proxy =
                    start_nginx(&proxy_dir, proxy_port, &NginxRole::Proxy { upstream: port })?;
                Some((proxy, format!("http://127.0.0.1:{proxy_port}/1k.bin")))
            } else {
                None
            };
            let (target, target_url) = match &proxy {
                Some((proxy, proxy_url)) => (proxy.pid(), proxy_url.as_str()),
                None => (nginx.pid(), url.as_str()),
            };
            let sample = measure(&bench, target, target_url, round, config)?;
            drop(proxy);
            println!(
                "bench: round {:>2} {:<28} {:>9.0} req/s  p99 {:>7.2} ms{}",
                round + 1,
                config.label(),
                sample.rps,
                sample.p99_ms,
                sample
                    .counters
                    .get("spans_built")
                    .map(|n| format!("  ({n} spans)"))
                    .unwrap_or_default()
            );
            samples.push(sample);
        }
    }
    drop(nginx);

    let micro_rounds = rounds.clamp(3, 10);
    println!("bench: syscall-loop microbenchmark, {micro_rounds} rounds x 5 configs");
    let micro = crate::microbench::run(&sonde, micro_rounds)?;

    let summary = Summary::new(&samples);
    let mut machine = machine(&sonde)?;
    machine["loadavg_1min_before"] = json!(load_before);
    let table = format!(
        "{}\n{}",
        summary.markdown(rounds, seconds),
        micro.markdown(micro_rounds)
    );
    println!("\n{table}");
    if let Some(path) = json {
        let doc = json!({
            "command": command,
            "machine": machine,
            "rounds": rounds,
            "seconds": seconds,
            "samples": samples.iter().map(|s| json!({
                "round": s.round + 1,
                "config": s.config.key(),
                "requests_per_sec": s.rps,
                "p99_ms": s.p99_ms,
                "errors": s.errors,
                "requests": s.requests,
                "hooks_attached": s.hooks,
                "agent_vmhwm_kib": s.agent_hwm_kib,
                "server_cpu_us_per_request": s.server_cpu_us,
                "agent_cpu_us_per_request": s.agent_cpu_us,
                "host_idle_share": s.idle_share,
                "counters": s.counters,
            })).collect::<Vec<_>>(),
            "summary": summary.json(),
            "microbenchmark_ns_per_request": {
                "none": micro.none_ns,
                "floor": micro.floor_ns,
                "full": micro.full_ns,
                "floor_syscall": micro.floor_syscall_ns,
                "full_syscall": micro.full_syscall_ns,
                "events_per_request": crate::microbench::EVENTS_PER_REQUEST,
            },
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("bench: wrote {}", path.display());
    }
    if write_docs {
        let path = util::workspace_root().join("docs/benchmarks.md");
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let page = docs_page(&table, &machine, &command)? + kept_notes(&old);
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("bench: wrote {}", path.display());
    }
    Ok(())
}

// ===== running one configuration =====

/// What an nginx of the benchmark does.
enum NginxRole {
    /// Serves `1k.bin` from its own docroot.
    Origin,
    /// Proxies everything to the origin on `upstream`, over keep-alive connections (HTTP/1.1
    /// upstream, no `Connection` header), as a traced service calling another would.
    Proxy { upstream: u16 },
}

/// One nginx (one worker) in `dir`, listening on `port`.
fn start_nginx(dir: &Path, port: u16, role: &NginxRole) -> Result<ChildGuard> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let (upstream, server_body) = match role {
        NginxRole::Origin => {
            let root = dir.join("www");
            std::fs::create_dir_all(&root)?;
            std::fs::write(root.join("1k.bin"), vec![b'x'; 1024])?;
            (String::new(), format!("root {d}/www;"))
        }
        NginxRole::Proxy { upstream } => (
            format!(
                "upstream origin {{ server 127.0.0.1:{upstream}; keepalive 32; \
                 keepalive_requests 1000000; }}\n  "
            ),
            "location / { proxy_pass http://origin; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; }"
                .to_owned(),
        ),
    };
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  keepalive_requests 1000000;\n  \
             client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc;\n  \
             uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n  \
             {upstream}server {{\n    listen 127.0.0.1:{port};\n    {server_body}\n  }}\n}}\n"
        ),
    )?;
    let mut nginx = ChildGuard::spawn(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null()),
        libc::SIGTERM,
        Duration::from_secs(3),
    )?;
    util::wait_for_port(&mut nginx, port, Duration::from_secs(10))
        .with_context(|| util::tail(&dir.join("nginx-error.log"), 20))?;
    Ok(nginx)
}

/// What every run of one benchmark shares.
struct Bench<'a> {
    sonde: &'a Path,
    /// `--agent-arg`s, after each configuration's own flags.
    agent_args: &'a [String],
    dir: &'a Path,
    seconds: u32,
}

fn measure(
    bench: &Bench<'_>,
    target: u32,
    url: &str,
    round: u32,
    config: Config,
) -> Result<Sample> {
    let Bench {
        sonde,
        agent_args,
        dir,
        seconds,
    } = *bench;
    let agent_log = dir.join(format!("sonde-{round}-{}.stderr", config.key()));
    let mut agent = match config.agent_flags() {
        None => None,
        Some(flags) => {
            let extra = agent_args.iter().map(String::as_str);
            let flags: Vec<&str> = flags.iter().copied().chain(extra).collect();
            Some(attach_agent(sonde, target, &flags, dir, &agent_log)?)
        }
    };
    let server_cpu0 = tree_cpu_ticks(target);
    let agent_cpu0 = agent.as_ref().and_then(|a| tree_cpu_ticks(a.pid()));
    let host0 = host_cpu_ticks();
    let run = wrk(url, seconds)?;
    let idle_share = host0
        .zip(host_cpu_ticks())
        .and_then(|((idle0, all0), (idle1, all1))| {
            let all = all1.checked_sub(all0).filter(|t| *t > 0)?;
            Some(idle1.saturating_sub(idle0) as f64 / all as f64)
        });
    let per_request = |before: Option<u64>, pid: u32| {
        let ticks = tree_cpu_ticks(pid)?.checked_sub(before?)?;
        (run.requests > 0).then(|| ticks as f64 * 1e6 / clock_ticks_per_sec() / run.requests as f64)
    };
    let server_cpu_us = per_request(server_cpu0, target);
    let agent_cpu_us = agent
        .as_ref()
        .and_then(|a| per_request(agent_cpu0, a.pid()));
    let mut agent_hwm_kib = None;
    let mut counters = BTreeMap::new();
    let mut hooks = None;
    if let Some(agent) = &mut agent {
        agent.ensure_running()?;
        agent_hwm_kib = vm_hwm_kib(agent.pid());
        let status = agent.stop()?;
        let stderr = std::fs::read_to_string(&agent_log)?;
        counters = util::parse_counters(&stderr);
        hooks = stderr.lines().find_map(|line| {
            let rest = line.strip_prefix("sonde: ready: ")?;
            rest.split_once(" hooks attached")?.0.parse().ok()
        });
        if !status.success() {
            bail!(
                "sonde exited with {status}:\n{}",
                util::tail(&agent_log, 30)
            );
        }
    }
    Ok(Sample {
        round,
        config,
        rps: run.rps,
        p99_ms: run.p99_ms,
        errors: run.errors,
        requests: run.requests,
        hooks,
        agent_hwm_kib,
        server_cpu_us,
        agent_cpu_us,
        idle_share,
        counters,
    })
}

/// `sonde attach --pid <pid> -o none` (with `--empty-probes` for the floor), ready;
/// its stderr goes to `log`.
pub(crate) fn attach_agent(
    sonde: &Path,
    pid: u32,
    flags: &[&str],
    dir: &Path,
    log: &Path,
) -> Result<ChildGuard> {
    let ready = dir.join("sonde.ready");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(sonde);
    cmd.args(["attach", "--pid", &pid.to_string(), "-o", "none"])
        .args(flags)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    let mut agent = ChildGuard::spawn("sonde", &mut cmd, libc::SIGINT, Duration::from_secs(15))?;
    util::wait_for_file(&mut agent, &ready, Duration::from_secs(60))
        .with_context(|| util::tail(log, 30))?;
    Ok(agent)
}

struct WrkRun {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    requests: u64,
}

fn wrk(url: &str, seconds: u32) -> Result<WrkRun> {
    let out = util::output(Command::new("wrk").args([
        "-t1",
        "-c16",
        &format!("-d{seconds}s"),
        "--latency",
        url,
    ]))?;
    parse_wrk(&out).with_context(|| format!("parsing wrk output:\n{out}"))
}

/// Reads `Requests/sec:`, the `99%` latency line and error lines of `wrk --latency`.
fn parse_wrk(out: &str) -> Result<WrkRun> {
    let mut rps = None;
    let mut p99_ms = None;
    let mut errors = 0;
    let mut requests = 0;
    for line in out.lines().map(str::trim) {
        // "74012 requests in 3.00s, 90.00MB read"
        if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse()?;
        }
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(v.trim().parse::<f64>()?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99_ms = Some(duration_ms(v.trim())?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    match (rps, p99_ms) {
        (Some(rps), Some(p99_ms)) => Ok(WrkRun {
            rps,
            p99_ms,
            errors,
            requests,
        }),
        _ => bail!("no Requests/sec or 99% line"),
    }
}

/// wrk durations: `812.00us`, `1.71ms`, `2.01s`, `1.10m`.
fn duration_ms(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => bail!("unknown unit in {text:?}"),
    })
}

/// The 1-minute load average (other work on the machine skews every figure).
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Peak resident set size of a process, in KiB.
/// User + system CPU time of pid and its direct children (nginx's workers), in clock ticks.
fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut total = cpu_ticks(pid)?;
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += cpu_ticks(child).unwrap_or(0);
    }
    Some(total)
}

/// utime + stime of one process from /proc/PID/stat (fields 14 and 15; the command name,
/// field 2, may hold spaces, so fields are counted after its closing parenthesis).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// (idle + iowait, all) CPU time of the host so far, in clock ticks (/proc/stat: user,
/// nice, system, idle, iowait, irq, softirq, steal; guest time, after them, is already
/// counted in user and nice).
fn host_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((idle, ticks.iter().sum()))
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ===== summary =====

/// A share as a percentage for the tables ("" when not measured).
fn percent(share: Option<f64>) -> String {
    share
        .map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_default()
}

/// A per-request CPU time for the tables ("" when not measured).
fn micros(us: Option<f64>) -> String {
    us.map(|v| format!("{v:.2} µs")).unwrap_or_default()
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

struct Summary {
    rps: BTreeMap<Config, f64>,
    /// Median over rounds of each round's (c)/(a) and (b)/(a): the two sides of each ratio
    /// ran seconds apart, so a host that is slower in some rounds (other tenants) moves
    /// both; NaN without a round that has both.
    paired_full_none: f64,
    paired_floor_none: f64,
    p99: BTreeMap<Config, f64>,
    /// Medians of the per-request CPU time of the traced nginx and of the agent, in µs.
    server_cpu_us: BTreeMap<Config, Option<f64>>,
    agent_cpu_us: BTreeMap<Config, Option<f64>>,
    /// Median share of the host's CPU left idle.
    idle_share: BTreeMap<Config, Option<f64>>,
    errors: u64,
    full_hwm_kib: Option<u64>,
    full_counters: BTreeMap<String, u64>,
    full_requests: u64,
    /// Counters summed over the rounds of (e), proxy with injection.
    inject_counters: BTreeMap<String, u64>,
    inject_requests: u64,
    hooks: Option<u64>,
}

/// Full tracing's cost per request over the floor's (`Summary::cost_over_floor`).
struct CostOverFloor {
    /// Time per request, 1/throughput: (b)'s req/s over (c)'s.
    time: f64,
    /// CPU time per request of the traced nginx and the agent together.
    cpu: Option<f64>,
    /// Time per request above no agent; `None` when the floor adds nothing measurable.
    added: Option<f64>,
}

impl Summary {
    fn new(samples: &[Sample]) -> Self {
        let of = |config: Config| samples.iter().filter(move |s| s.config == config);
        let mut rps = BTreeMap::new();
        let mut p99 = BTreeMap::new();
        let mut server_cpu_us = BTreeMap::new();
        let mut agent_cpu_us = BTreeMap::new();
        let mut idle_share = BTreeMap::new();
        let median_of = |values: Vec<f64>| (!values.is_empty()).then(|| median(values));
        for config in Config::ALL {
            rps.insert(config, median(of(config).map(|s| s.rps).collect()));
            p99.insert(config, median(of(config).map(|s| s.p99_ms).collect()));
            server_cpu_us.insert(
                config,
                median_of(of(config).filter_map(|s| s.server_cpu_us).collect()),
            );
            agent_cpu_us.insert(
                config,
                median_of(of(config).filter_map(|s| s.agent_cpu_us).collect()),
            );
            idle_share.insert(
                config,
                median_of(of(config).filter_map(|s| s.idle_share).collect()),
            );
        }
        let counters = |config: Config| {
            let mut sum = BTreeMap::new();
            for s in of(config) {
                for (name, value) in &s.counters {
                    *sum.entry(name.clone()).or_insert(0) += value;
                }
            }
            sum
        };
        let paired = |a: Config, b: Config| {
            let ratios = samples
                .iter()
                .filter(|s| s.config == a)
                .filter_map(|s| {
                    of(b)
                        .find(|t| t.round == s.round && t.rps > 0.0)
                        .map(|t| s.rps / t.rps)
                })
                .collect();
            median(ratios)
        };
        Self {
            paired_full_none: paired(Config::Full, Config::None),
            paired_floor_none: paired(Config::Floor, Config::None),
            rps,
            p99,
            server_cpu_us,
            agent_cpu_us,
            idle_share,
            errors: samples.iter().map(|s| s.errors).sum(),
            full_hwm_kib: of(Config::Full).filter_map(|s| s.agent_hwm_kib).max(),
            full_counters: counters(Config::Full),
            full_requests: of(Config::Full).map(|s| s.requests).sum(),
            inject_counters: counters(Config::ProxyInject),
            inject_requests: of(Config::ProxyInject).map(|s| s.requests).sum(),
            hooks: samples.iter().find_map(|s| s.hooks),
        }
    }

    fn ratio(&self, a: Config, b: Config) -> f64 {
        self.rps[&a] / self.rps[&b]
    }

    /// Time per request (1/throughput) above no agent's, in µs; negative when `config`
    /// ran faster than no agent (noise).
    fn time_added_us(&self, config: Config) -> f64 {
        (1.0 / self.rps[&config] - 1.0 / self.rps[&Config::None]) * 1e6
    }

    /// "Full tracing costs at most 1.3x the floor per request", read in the three ways
    /// [`CostOverFloor`] lists, since the issue leaves "cost" open.
    fn cost_over_floor(&self) -> CostOverFloor {
        let cpu = |c: Config| Some(self.server_cpu_us[&c]? + self.agent_cpu_us[&c].unwrap_or(0.0));
        let added_floor = self.time_added_us(Config::Floor);
        CostOverFloor {
            time: self.ratio(Config::Floor, Config::Full),
            cpu: cpu(Config::Full)
                .zip(cpu(Config::Floor))
                .map(|(full, floor)| full / floor),
            added: (added_floor > 0.0).then(|| self.time_added_us(Config::Full) / added_floor),
        }
    }

    fn markdown(&self, rounds: u32, seconds: u32) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| configuration | median req/s | median p99 latency | req/s vs (a) | nginx CPU per request | agent CPU per request | host CPU idle |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for config in Config::DIRECT {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2} ms | {:.3} | {} | {} | {} |",
                config.label(),
                self.rps[&config],
                self.p99[&config],
                self.ratio(config, Config::None),
                micros(self.server_cpu_us[&config]),
                micros(self.agent_cpu_us[&config]),
                percent(self.idle_share[&config]),
            );
        }
        let full = self.ratio(Config::Full, Config::None);
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let _ = writeln!(s, "\n| ratio | value | design target |\n|---|---:|---|");
        let _ = writeln!(
            s,
            "| (b)/(a) floor vs no agent | {:.3} | (the hooks' own cost) |",
            self.ratio(Config::Floor, Config::None)
        );
        let _ = writeln!(
            s,
            "| (c)/(a) full vs no agent | {full:.3} | >= {TARGET_FULL_RATIO:.2}: {} |",
            verdict(full >= TARGET_FULL_RATIO)
        );
        let _ = writeln!(
            s,
            "| (c)/(a) and (b)/(a) paired by round (median of each round's ratio) | {:.3} and {:.3} | (less sensitive to the host's speed drifting between rounds) |",
            self.paired_full_none, self.paired_floor_none
        );
        let _ = writeln!(
            s,
            "| (c)/(b) full vs floor | {:.3} | |",
            self.ratio(Config::Full, Config::Floor)
        );
        let _ = writeln!(
            s,
            "| (f)/(a) floor of the syscall tracepoints vs no agent | {:.3} | (the naive hooks) |",
            self.ratio(Config::FloorSyscall, Config::None)
        );
        let _ = writeln!(
            s,
            "| (g)/(a) full tracing through syscall tracepoints vs no agent | {:.3} | |",
            self.ratio(Config::FullSyscall, Config::None)
        );
        let _ = writeln!(
            s,
            "| (c)/(g) default hooks vs syscall tracepoints, full tracing | {:.3} | > 1: hooking less pays |",
            self.ratio(Config::Full, Config::FullSyscall)
        );
        let _ = writeln!(
            s,
            "| time per request above (a): floor / full | {:.2} µs / {:.2} µs | |",
            self.time_added_us(Config::Floor),
            self.time_added_us(Config::Full)
        );
        let cost = self.cost_over_floor();
        for (reading, value) in [
            ("time per request (1/throughput)", Some(cost.time)),
            ("CPU per request (nginx + agent)", cost.cpu),
            ("time per request added to (a)", cost.added),
        ] {
            let _ = match value {
                Some(x) => writeln!(
                    s,
                    "| full / floor, {reading} | {x:.2} | <= {TARGET_FULL_OVER_FLOOR}: {} |",
                    verdict(x <= TARGET_FULL_OVER_FLOOR)
                ),
                None => writeln!(
                    s,
                    "| full / floor, {reading} | n/a | <= {TARGET_FULL_OVER_FLOOR}: not computable, the floor costs nothing measurable here |"
                ),
            };
        }
        let get = |name: &str| self.full_counters.get(name).copied().unwrap_or(0);
        let lost: Vec<String> = self
            .full_counters
            .iter()
            .filter(|(name, value)| **value > 0 && is_loss(name))
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        let hwm = self.full_hwm_kib.map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
        );
        let _ = writeln!(
            s,
            "\nHooks attached by the agent: {}. Agent in full mode: peak RSS (VmHWM) {hwm}; over all full rounds {} spans built \
             for {} requests answered to wrk, {} dropped/lost ({}).",
            self.hooks
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
            get("spans_built"),
            self.full_requests,
            util::drops(&self.full_counters),
            if lost.is_empty() {
                "none".to_owned()
            } else {
                lost.join(", ")
            },
        );
        self.proxy_markdown(&mut s);
        let _ = writeln!(
            s,
            "\n{rounds} rounds x {seconds} s per configuration, order rotated each round; medians over rounds. wrk errors (non-2xx, socket): {}.",
            self.errors
        );
        s
    }

    /// The proxy configurations: what `traceparent` injection adds to full tracing.
    fn proxy_markdown(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n### Injection (nginx proxying to nginx over keep-alive upstream connections, the proxy traced)\n\n\
             | configuration | median req/s | median p99 latency | req/s vs (d) | proxy CPU per request | agent CPU per request | host CPU idle |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for config in Config::PROXY {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2} ms | {:.3} | {} | {} | {} |",
                config.label(),
                self.rps[&config],
                self.p99[&config],
                self.ratio(config, Config::ProxyNoInject),
                micros(self.server_cpu_us[&config]),
                micros(self.agent_cpu_us[&config]),
                percent(self.idle_share[&config]),
            );
        }
        let added =
            (1.0 / self.rps[&Config::ProxyInject] - 1.0 / self.rps[&Config::ProxyNoInject]) * 1e6;
        let _ = writeln!(
            s,
            "\n| ratio | value |\n|---|---:|\n\
             | (e)/(d) injection vs --no-inject, req/s | {:.3} |\n\
             | (e)/(d) p99 latency | {:.3} |\n\
             | time per request added by injection | {added:.2} µs |",
            self.ratio(Config::ProxyInject, Config::ProxyNoInject),
            self.p99[&Config::ProxyInject] / self.p99[&Config::ProxyNoInject],
        );
        let get = |name: &str| self.inject_counters.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "\nOver all (e) rounds: {} requests answered to wrk, {} upstream requests injected \
             (`inject_done`), {} keep-alive sockets re-enrolled, {} left out (`reenrol_skipped`), \
             {} re-enrolment requests dropped, {} sockets enrolled at connect.",
            self.inject_requests,
            get("inject_done"),
            get("reenrolled"),
            get("reenrol_skipped"),
            get("reenrol_dropped"),
            get("inject_sockets_enrolled"),
        );
    }

    fn json(&self) -> serde_json::Value {
        fn per<T: Clone + Into<serde_json::Value>>(
            m: &BTreeMap<Config, T>,
        ) -> serde_json::Map<String, serde_json::Value> {
            m.iter()
                .map(|(c, v)| (c.key().to_owned(), v.clone().into()))
                .collect()
        }
        let cost = self.cost_over_floor();
        json!({
            "median_requests_per_sec": per(&self.rps),
            "median_p99_ms": per(&self.p99),
            "median_server_cpu_us_per_request": per(&self.server_cpu_us),
            "median_agent_cpu_us_per_request": per(&self.agent_cpu_us),
            "median_host_idle_share": per(&self.idle_share),
            "ratio_floor_none": self.ratio(Config::Floor, Config::None),
            "ratio_full_none": self.ratio(Config::Full, Config::None),
            "ratio_full_floor": self.ratio(Config::Full, Config::Floor),
            "ratio_full_none_paired_by_round": self.paired_full_none,
            "ratio_floor_none_paired_by_round": self.paired_floor_none,
            "ratio_floor_syscall_none": self.ratio(Config::FloorSyscall, Config::None),
            "ratio_full_syscall_none": self.ratio(Config::FullSyscall, Config::None),
            "ratio_proxy_inject_no_inject": self.ratio(Config::ProxyInject, Config::ProxyNoInject),
            "proxy_inject_counters_total": self.inject_counters,
            "full_over_floor_time_per_request": cost.time,
            "full_over_floor_cpu_per_request": cost.cpu,
            "full_over_floor_added_time_per_request": cost.added,
            "target_full_none_min": TARGET_FULL_RATIO,
            "target_full_cost_over_floor_max": TARGET_FULL_OVER_FLOOR,
            "full_agent_vmhwm_kib": self.full_hwm_kib,
            "hooks_attached": self.hooks,
            "full_counters_total": self.full_counters,
            "wrk_errors": self.errors,
        })
    }
}

/// Counters worth showing next to the drops: anything lost or resynchronised.
fn is_loss(name: &str) -> bool {
    ["drop", "timed_out", "evicted", "desync"]
        .iter()
        .any(|word| name.contains(word))
}

// ===== docs =====

fn machine(sonde: &Path) -> Result<serde_json::Value> {
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = util::output(Command::new("uname").arg("-r"))?
        .trim()
        .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let nginx = util::output(Command::new("sh").args(["-c", "nginx -v 2>&1"]))?
        .trim()
        .to_owned();
    let agent = util::output(Command::new(sonde).arg("--version"))?
        .trim()
        .to_owned();
    let commit = util::output(
        Command::new("git")
            .current_dir(util::workspace_root())
            .args(["describe", "--always", "--dirty"]),
    )
    .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    Ok(json!({
        "nproc": nproc,
        "kernel": kernel,
        "cpu": cpu,
        "nginx": nginx,
        "agent": format!("{agent} ({})", sonde.display()),
        "workspace_commit": commit,
    }))
}

/// Where docs/benchmarks.md's hand-written notes start: `--write-docs` keeps them.
const KEPT_MARKER: &str = "<!-- kept by cargo xtask bench --write-docs: notes below -->";

/// The hand-written part of the page (from [`KEPT_MARKER`] on), or nothing.
fn kept_notes(old_page: &str) -> &str {
    old_page
        .find(KEPT_MARKER)
        .and_then(|at| old_page.get(at..))
        .unwrap_or_default()
}

fn docs_page(table: &str, machine: &serde_json::Value, command: &str) -> Result<String> {
    let date = util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    Ok(format!(
        "# Benchmarks\n\n\
         What Sonde costs a busy server, measured by `cargo xtask bench` (see `xtask/src/bench.rs`).\n\n\
         nginx with one worker serves a 1 KiB file on loopback; `wrk -t1 -c16 --latency` loads it.\n\
         Seven configurations alternate, in an order rotated every round:\n\n\
         - **(a) no agent**;\n\
         - **(b) empty probes**: `sonde attach --pid <nginx> --empty-probes`: every hook Sonde uses is \
         attached but each probe returns at once. This is the floor any design with these hooks pays;\n\
         - **(c) full tracing**: `sonde attach --pid <nginx> -o none`: spans are built but not printed;\n\
         - **(f)** and **(g)**: (b) and (c) with `--hooks syscall-tracepoints`, the hooks that work on \
         every kernel and put every process on the slow syscall path: what the default hooks \
         (socket-layer tracepoints where the kernel has them) save;\n\
         - **(d)** and **(e)**: wrk loads a second nginx that proxies to the first over keep-alive \
         upstream connections; the agent traces the proxy with full tracing, (d) with `--no-inject`, \
         (e) with `traceparent` injection into its upstream requests (the default). (e)/(d) is what \
         injection costs.\n\n\
         CPU per request is the user + system time of the traced nginx (master and workers) and of \
         the agent during the wrk run, from /proc/PID/stat, divided by the requests wrk completed: \
         it shows where the cost goes, with less noise than throughput. Host CPU idle is the share \
         of both CPUs' time nobody used during the run (/proc/stat): nginx and wrk keep each other \
         busy, and it rises when the agent holds a CPU long enough to stall that pipeline.\n\n\
         Design targets: (c) keeps at least {TARGET_FULL_RATIO:.2} of (a)'s throughput, and full tracing \
         costs at most {TARGET_FULL_OVER_FLOOR}x the floor per request. The second leaves \"cost\" open: \
         the table reads it three ways, as the time per request (1/throughput), as the CPU time the \
         traced nginx and the agent spend per request, and as the time per request added to (a); \
         the notes below say why the third cannot be met.\n\n\
         ## Latest run\n\n\
         - date: {date}\n\
         - machine: {nproc} CPUs ({cpu}), kernel {kernel}, {nginx}\n\
         - agent: {agent}; workspace at `{commit}`\n\
         - 1-minute load average before the run: {load_before} (above about 0.5, other work was \
         running and the figures are noisier)\n\
         - command: `{command}`\n\n\
         {table}\n\
         ## Reading these numbers\n\n\
         On these 2-core VMs one 5-second round differs from the next by about ±20% at the nginx \
         level, and there are no hardware counters: only medians over many alternating rounds mean \
         anything, and ratios between configurations of the same run are what to compare, never \
         absolute figures across machines. wrk, nginx and the agent share the two CPUs, so the \
         agent's own CPU time shows up as lost throughput, twice over when it comes in bursts \
         longer than the work nginx and wrk keep in flight (host CPU idle). A few hundred \
         nanoseconds per hook are better seen with the syscall-loop microbenchmark \
         (`xtask/bench/syscall_loop.c`, second table): one process pinned to one CPU doing \
         HTTP-shaped write/read pairs on a loopback connection, 4 traced syscalls per request, \
         the agent pinned to the other CPU. Its figures repeat within a few percent from run to \
         run.\n\n",
        date = date.trim(),
        nproc = machine["nproc"],
        cpu = machine["cpu"].as_str().unwrap_or("?"),
        kernel = machine["kernel"].as_str().unwrap_or("?"),
        nginx = machine["nginx"].as_str().unwrap_or("nginx"),
        agent = machine["agent"].as_str().unwrap_or("?"),
        commit = machine["workspace_commit"].as_str().unwrap_or("?"),
        load_before = machine["loadavg_1min_before"],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_notes_survive_a_rewrite() {
        let page = format!("# Benchmarks\nold table\n\n{KEPT_MARKER}\n## Notes\nkept\n");
        assert_eq!(
            kept_notes(&page),
            format!("{KEPT_MARKER}\n## Notes\nkept\n")
        );
        assert_eq!(kept_notes("# Benchmarks\nno notes\n"), "");
    }

    #[test]
    fn wrk_latency_output_is_parsed() {
        let out = "Running 3s test @ http://127.0.0.1:1/1k.bin\n  1 threads and 16 connections\n  \
                   Latency Distribution\n     50%  549.00us\n     75%  700.00us\n     90%    1.01ms\n     \
                   99%    1.71ms\n  74012 requests in 3.00s, 90.00MB read\n  \
                   Socket errors: connect 0, read 2, write 0, timeout 1\n\
                   Requests/sec:  24670.12\nTransfer/sec:     30.06MB\n";
        let run = parse_wrk(out).expect("parses");
        assert!((run.rps - 24670.12).abs() < 1e-6);
        assert!((run.p99_ms - 1.71).abs() < 1e-9);
        assert_eq!(run.errors, 3);
        assert_eq!(run.requests, 74012);
        assert!((duration_ms("812.00us").expect("us") - 0.812).abs() < 1e-9);
        assert!((duration_ms("2.00s").expect("s") - 2000.0).abs() < 1e-9);
    }

    fn sample(round: u32, config: Config, rps: f64) -> Sample {
        Sample {
            round,
            config,
            rps,
            p99_ms: 1.0,
            errors: 0,
            requests: 1,
            hooks: None,
            agent_hwm_kib: None,
            server_cpu_us: None,
            agent_cpu_us: None,
            idle_share: None,
            counters: BTreeMap::new(),
        }
    }

    /// Round 2 ran on a host twice as slow: each round's ratio is still 0.9.
    #[test]
    fn ratios_paired_by_round() {
        let samples = [
            sample(1, Config::None, 100.0),
            sample(1, Config::Full, 90.0),
            sample(2, Config::None, 50.0),
            sample(2, Config::Full, 45.0),
            sample(3, Config::None, 100.0),
            sample(3, Config::Full, 90.0),
        ];
        let summary = Summary::new(&samples);
        assert!((summary.paired_full_none - 0.9).abs() < 1e-9);
        assert!(summary.paired_floor_none.is_nan(), "no floor rounds");
    }

    #[test]
    fn cost_over_floor_read_three_ways() {
        let with_cpu = |config, rps, server, agent| Sample {
            server_cpu_us: Some(server),
            agent_cpu_us: agent,
            ..sample(1, config, rps)
        };
        // 1/throughput: (a) 10 µs, floor 10.5 µs, full 12 µs per request.
        let samples = [
            with_cpu(Config::None, 100_000.0, 7.0, None),
            with_cpu(Config::Floor, 1e6 / 10.5, 7.0, Some(0.0)),
            with_cpu(Config::Full, 1e6 / 12.0, 7.5, Some(1.5)),
        ];
        let cost = Summary::new(&samples).cost_over_floor();
        assert!((cost.time - 12.0 / 10.5).abs() < 1e-9);
        assert!((cost.cpu.expect("both have CPU figures") - 9.0 / 7.0).abs() < 1e-9);
        assert!((cost.added.expect("the floor costs time") - 4.0).abs() < 1e-9);

        // A floor faster than no agent (noise) has no added cost to divide by.
        let samples = [
            with_cpu(Config::None, 100_000.0, 7.0, None),
            with_cpu(Config::Floor, 101_000.0, 7.0, Some(0.0)),
            with_cpu(Config::Full, 90_000.0, 7.5, Some(1.5)),
        ];
        assert!(Summary::new(&samples).cost_over_floor().added.is_none());
    }

    #[test]
    fn median_of_even_and_odd() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(vec![4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
    }
}
