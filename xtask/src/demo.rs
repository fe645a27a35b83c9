//! `cargo xtask demo`: Sonde on a small multi-process app, start to finish.
//!
//! ```text
//! curl -> frontend (nginx, reverse proxy) -> orders (Python) -> inventory (Node.js)
//! ```
//!
//! All on 127.0.0.1 ports picked at run time, in a temporary directory (sources in
//! `xtask/demo/`). `sonde attach --pid` traces the three services; a handful of requests
//! (one path fails: inventory 404 -> orders 502) become one trace each across the services,
//! printed as sonde's tree output. Everything is stopped on exit or Ctrl-C (drop guards).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::util::{self, ChildGuard, TempDir, check_interrupted, interrupted};

#[derive(Debug, Args)]
pub struct Options {
    /// Leave the app and the agent running after the scripted requests, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// Use this sonde binary instead of building one (cargo build --release -p sonde).
    #[arg(long, env = "SONDE_BIN", value_name = "PATH")]
    sonde_bin: Option<PathBuf>,
    /// Skip `cargo xtask setup` (packages, tracefs).
    #[arg(long)]
    no_setup: bool,
}

/// The scripted requests: (path, what it shows).
const REQUESTS: &[(&str, &str)] = &[
    ("/orders/42", "order in stock"),
    ("/orders/book", "order in stock"),
    ("/orders/missing", "inventory 404 -> orders 502"),
    ("/orders/7", "order, zero stock"),
    ("/health", "answered by nginx alone"),
    ("/orders/lamp", "order in stock"),
    ("/orders/missing", "inventory 404 -> orders 502"),
    ("/orders/42", "order in stock"),
    ("/orders/book", "order in stock"),
    ("/orders/lamp", "order in stock"),
];

/// How long the agent may take to load and attach its probes.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(opts: Options) -> Result<()> {
    let Options {
        keep_running,
        sonde_bin,
        no_setup,
    } = opts;
    let started = Instant::now();
    util::require_root("cargo xtask demo")?;
    util::catch_interrupts();
    if !no_setup {
        crate::setup::run(crate::setup::Options {})?;
    }
    let sonde = match sonde_bin {
        Some(path) => path,
        None => util::build_sonde(true)?,
    };
    check_interrupted()?;

    // Declared first, dropped last: the services and the agent are gone before their
    // directory is removed.
    let dir = TempDir::new("sonde-demo")?;
    let result = run_demo(&sonde, dir.path(), keep_running, started);
    if result.is_err() && !interrupted() {
        let kept = dir.keep();
        eprintln!("xtask: demo failed; logs kept in {}", kept.display());
    }
    result
}

struct Ports {
    frontend: u16,
    orders: u16,
    inventory: u16,
}

fn run_demo(sonde: &Path, dir: &Path, keep_running: bool, started: Instant) -> Result<()> {
    let sources = util::workspace_root().join("xtask/demo");
    let ports = Ports {
        frontend: util::free_port()?,
        orders: util::free_port()?,
        inventory: util::free_port()?,
    };

    // ----- the app, back to front -----
    let mut inventory = ChildGuard::spawn(
        "inventory (node)",
        Command::new("node")
            .arg(sources.join("inventory.js"))
            .env("PORT", ports.inventory.to_string())
            .env("OTEL_SERVICE_NAME", "inventory")
            .stdout(log(dir, "inventory.log")?)
            .stderr(log(dir, "inventory.log")?),
        libc::SIGTERM,
        Duration::from_secs(3),
    )?;
    let mut orders = ChildGuard::spawn(
        "orders (python)",
        Command::new("python3")
            .arg(sources.join("orders.py"))
            .env("PORT", ports.orders.to_string())
            .env("INVENTORY", format!("127.0.0.1:{}", ports.inventory))
            .env("OTEL_SERVICE_NAME", "orders")
            .env("PYTHONUNBUFFERED", "1")
            .stdout(log(dir, "orders.log")?)
            .stderr(log(dir, "orders.log")?),
        libc::SIGTERM,
        Duration::from_secs(3),
    )?;
    let conf = render_nginx_conf(&sources.join("nginx.conf"), dir, &ports)?;
    let mut frontend = ChildGuard::spawn(
        "frontend (nginx)",
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .env("OTEL_SERVICE_NAME", "frontend")
            .stdout(log(dir, "nginx.log")?)
            .stderr(log(dir, "nginx.log")?),
        libc::SIGTERM,
        Duration::from_secs(3),
    )?;
    let boot = Duration::from_secs(10);
    util::wait_for_port(&mut inventory, ports.inventory, boot)
        .with_context(|| util::tail(&dir.join("inventory.log"), 20))?;
    util::wait_for_port(&mut orders, ports.orders, boot)
        .with_context(|| util::tail(&dir.join("orders.log"), 20))?;
    util::wait_for_port(&mut frontend, ports.frontend, boot)
        .with_context(|| util::tail(&dir.join("nginx-error.log"), 20))?;
    println!(
        "demo: frontend (nginx, pid {}) :{} -> orders (python, pid {}) :{} -> inventory (node, pid {}) :{}",
        frontend.pid(),
        ports.frontend,
        orders.pid(),
        ports.orders,
        inventory.pid(),
        ports.inventory,
    );

    // ----- the agent -----
    let ready = dir.join("sonde.ready");
    let agent_log = dir.join("sonde.stderr");
    let mut cmd = Command::new(sonde);
    cmd.arg("attach");
    let pids = [frontend.pid(), orders.pid(), inventory.pid()];
    for pid in pids {
        cmd.arg("--pid").arg(pid.to_string());
    }
    cmd.args(["-o", "tree", "--ready-file"])
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log(dir, "sonde.stderr")?);
    println!("demo: {}", util::show(&cmd));
    let mut agent = ChildGuard::spawn("sonde", &mut cmd, libc::SIGINT, Duration::from_secs(15))?;
    let stdout = agent.take_stdout().context("sonde stdout is piped")?;
    let printer = util::tee_lines(stdout, "");
    util::wait_for_file(&mut agent, &ready, ATTACH_TIMEOUT)
        .with_context(|| util::tail(&agent_log, 30))?;
    println!(
        "demo: sonde attached; sending {} requests\n",
        REQUESTS.len()
    );

    // ----- traffic -----
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for (path, what) in REQUESTS {
        check_interrupted()?;
        let (status, took) = curl(ports.frontend, path)?;
        println!("demo: GET {path:<16} -> {status} in {took:>5.1} ms  ({what})");
        *statuses.entry(status).or_default() += 1;
        util::sleep(Duration::from_millis(100));
    }

    if keep_running {
        println!(
            "\ndemo: still running: try `curl http://127.0.0.1:{}/orders/42`; traces appear below. \
             Ctrl-C to stop.",
            ports.frontend
        );
        while !interrupted() {
            agent.ensure_running()?;
            util::sleep(Duration::from_millis(200));
        }
        println!();
    } else {
        // Tree output prints a trace once it has been quiet for a moment.
        println!("\ndemo: waiting for the last traces\n");
        util::sleep(Duration::from_millis(1500));
    }

    // ----- stop the agent, then summarize -----
    let status = agent.stop()?;
    let trace_lines = printer.join().unwrap_or_default();
    let stderr = std::fs::read_to_string(&agent_log).unwrap_or_default();
    let counters = util::parse_counters(&stderr);
    if !status.success() && !interrupted() {
        bail!(
            "sonde exited with {status}:\n{}",
            util::tail(&agent_log, 30)
        );
    }
    let requests: Vec<String> = statuses.iter().map(|(s, n)| format!("{n} x {s}")).collect();
    let get = |name: &str| counters.get(name).copied().unwrap_or(0);
    println!("──── demo summary ────");
    println!(
        "requests sent     {} ({})",
        REQUESTS.len(),
        requests.join(", ")
    );
    println!(
        "services traced   frontend (nginx master {}, with its worker), orders (python, pid {}), inventory (node, pid {})",
        pids[0], pids[1], pids[2]
    );
    let traces = trace_lines
        .iter()
        .filter(|l| l.starts_with("trace "))
        .count();
    if traces > 0 {
        println!("traces printed    {traces} (one per request, across the services)");
    }
    println!(
        "agent             {} spans built, {} dropped/lost, {} processes traced",
        get("spans_built"),
        util::drops(&counters),
        get("processes_traced"),
    );
    if counters.is_empty() {
        println!("                  (no counters report found in sonde's stderr)");
    } else if get("spans_built") == 0 {
        println!("warning           sonde built no spans: see `sonde doctor`");
    }
    println!("took              {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "next              sonde attach --pid PID | --exe GLOB | --port PORT, sonde run -- CMD (see README.md)"
    );
    Ok(())
}

/// One request through the frontend: (HTTP status, milliseconds).
fn curl(port: u16, path: &str) -> Result<(String, f64)> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let start = Instant::now();
    let out = util::output(Command::new("curl").args([
        "--silent",
        "--show-error",
        "--max-time",
        "5",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        &url,
    ]))?;
    Ok((out.trim().to_owned(), start.elapsed().as_secs_f64() * 1e3))
}

fn render_nginx_conf(template: &Path, dir: &Path, ports: &Ports) -> Result<PathBuf> {
    let text = std::fs::read_to_string(template)
        .with_context(|| format!("reading {}", template.display()))?
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{PORT}}", &ports.frontend.to_string())
        .replace("{{ORDERS_PORT}}", &ports.orders.to_string());
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    Ok(conf)
}

/// An append-mode log file in the demo directory, for a child's stdout or stderr.
fn log(dir: &Path, name: &str) -> Result<std::fs::File> {
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}
