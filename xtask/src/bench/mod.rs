//! `cargo xtask bench`: what the agent costs a busy server. A benchmark, not a test.
//!
//! nginx (one worker) serves a 1 KiB file on loopback; `wrk -t1 -c16 --latency` loads it
//! for `--seconds` per round. Eleven configurations alternate, in an order rotated every
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
//!   `--no-inject` and with `traceparent` injection (the default): what injection adds;
//! - the HTTPS leg (`--https` runs it alone): a third nginx serves the file over HTTPS
//!   (a throwaway certificate from the `openssl` CLI) and wrk loads `https://` URLs, with
//!   its own copy of libssl so that the TLS probes, attached to nginx's libssl file for
//!   every process that maps it, fire in nginx only: `https_none`; `https_floor`
//!   (`--empty-probes`: the TLS uprobes attached, empty: the floor of an empty uprobe);
//!   `https_full` (plaintext from the TLS probes); `https_no_tls` (`--no-tls`: the socket
//!   hooks see ciphertext only).
//!
//! Reports medians over rounds, ratios against the design targets, the agent's peak RSS
//! and its counters (to show that it did trace, and inject), and how often its programs
//! run per request (counted in the first round, after the timed run).
//!
//! Layout: `config` lists the configurations; `measure` runs one (nginx, the agent, `wrk`,
//! `procfs` figures around it, and `probes`, the program runs); `summary` computes medians
//! and ratios; `report` prints them as markdown and JSON; `docs` writes docs/benchmarks.md.

mod config;
mod docs;
mod measure;
mod probes;
pub(crate) use probes::count_probes;
mod procfs;
mod report;
mod summary;
mod wrk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;

use crate::util::{self, ChildGuard, TempDir, check_interrupted};
use config::{Config, Server};
use docs::{docs_page, kept_notes, machine};
use measure::{Bench, Cert, measure};
pub(crate) use measure::{NginxRole, start_nginx};
use probes::ProbeCounts;
use procfs::loadavg;
use summary::Summary;
use wrk::Wrk;

pub(crate) use measure::attach_agent;
pub(crate) use summary::median;

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
    /// Only the HTTPS leg (nginx with TLS, four configurations); without it the HTTPS leg
    /// runs with the others.
    #[arg(long, conflicts_with_all = ["db", "write_docs"])]
    https: bool,
    /// An extra flag for every agent the benchmark starts, e.g.
    /// `--agent-arg=--wakeup-bytes=65536`; repeatable.
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    agent_args: Vec<String>,
}

/// Throughput with full tracing, as a fraction of no agent: at least this.
const TARGET_FULL_RATIO: f64 = 0.90;
/// Per-request cost of full tracing, as a multiple of the floor's: at most this.
const TARGET_FULL_OVER_FLOOR: f64 = 1.3;
/// Probe runs per TLS read or write (its entry and its return): at most this.
const TARGET_TLS_RUNS_PER_CALL: f64 = 2.0;

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
    /// The agent's program runs over a counting run after the timed one (first round).
    probes: Option<ProbeCounts>,
}

/// An nginx serving the file, warmed up.
struct Served {
    nginx: ChildGuard,
    port: u16,
    url: String,
}

impl Served {
    /// Over HTTPS with `tls`.
    fn start(dir: &Path, tls: Option<&Cert>, wrk: &Wrk) -> Result<Self> {
        let port = util::free_port()?;
        let nginx = start_nginx(dir, port, &NginxRole::Origin, tls)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}/1k.bin");
        println!("bench: nginx pid {} serving {url}", nginx.pid());
        wrk.run(&url, 1).context("warm-up")?;
        Ok(Self { nginx, port, url })
    }
}

pub fn run(opts: Options) -> Result<()> {
    let Options {
        rounds,
        seconds,
        json,
        write_docs,
        sonde_bin,
        db,
        https,
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
    let configs: &[Config] = if https { &Config::HTTPS } else { &Config::ALL };
    let uses = |server: Server| configs.iter().any(|c| c.server() == server);
    let wrk = Wrk::new(dir.path())?;
    // The origin serves the plain HTTP configurations, and the proxies' upstream.
    let mut origin = if uses(Server::Origin) || uses(Server::Proxy) {
        Some(Served::start(&dir.path().join("origin"), None, &wrk)?)
    } else {
        None
    };
    let mut tls_origin = if uses(Server::Tls) {
        let cert = Cert::new(dir.path())?;
        Some(Served::start(&dir.path().join("tls"), Some(&cert), &wrk)?)
    } else {
        None
    };
    let n = configs.len();
    println!(
        "bench: {rounds} rounds x {n} configs x {seconds} s (about {} s)",
        u64::from(rounds) * n as u64 * (u64::from(seconds) + 1)
    );

    let bench = Bench {
        sonde: &sonde,
        wrk: &wrk,
        agent_args: &agent_args,
        dir: dir.path(),
        seconds,
    };
    let mut samples = Vec::new();
    for round in 0..rounds {
        let mut order = configs.to_vec();
        order.rotate_left(usize::try_from(round)? % n);
        for config in order {
            check_interrupted()?;
            let served = match config.server() {
                Server::Tls => tls_origin.as_mut(),
                Server::Origin | Server::Proxy => origin.as_mut(),
            }
            .context("no nginx for this configuration")?;
            served.nginx.ensure_running()?;
            // A new proxy for each run: its upstream connections are opened under the
            // agent (a connection opened before the agent attached is never injected).
            let proxy = if config.server() == Server::Proxy {
                let proxy_port = util::free_port()?;
                let proxy_dir = dir.path().join(format!("proxy-{round}-{}", config.key()));
                let upstream = NginxRole::Proxy {
                    upstream: served.port,
                    rewrite: None,
                };
                let proxy = start_nginx(&proxy_dir, proxy_port, &upstream, None)?;
                Some((proxy, format!("http://127.0.0.1:{proxy_port}/1k.bin")))
            } else {
                None
            };
            let (target, target_url) = match &proxy {
                Some((proxy, proxy_url)) => (proxy.pid(), proxy_url.as_str()),
                None => (served.nginx.pid(), served.url.as_str()),
            };
            // Program runs are counted once per configuration: they hardly vary.
            let sample = measure(&bench, target, target_url, round, config, round == 0)?;
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
    drop((origin, tls_origin));

    // The syscall-loop microbenchmark goes with the plain HTTP leg.
    let micro_rounds = rounds.clamp(3, 10);
    let micro = if https {
        None
    } else {
        println!("bench: syscall-loop microbenchmark, {micro_rounds} rounds x 5 configs");
        Some(crate::microbench::run(&sonde, micro_rounds)?)
    };

    let summary = Summary::new(&samples);
    let mut machine = machine(&sonde)?;
    machine["loadavg_1min_before"] = json!(load_before);
    let table = format!(
        "{}\n{}",
        summary.markdown(rounds, seconds),
        micro
            .as_ref()
            .map(|m| m.markdown(micro_rounds))
            .unwrap_or_default()
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
                "probes": s.probes.as_ref().map(ProbeCounts::json),
            })).collect::<Vec<_>>(),
            "summary": summary.json(),
            "microbenchmark_ns_per_request": micro.as_ref().map(|micro| json!({
                "none": micro.none_ns,
                "floor": micro.floor_ns,
                "full": micro.full_ns,
                "floor_syscall": micro.floor_syscall_ns,
                "full_syscall": micro.full_syscall_ns,
                "events_per_request": crate::microbench::EVENTS_PER_REQUEST,
            })),
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
