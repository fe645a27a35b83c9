//! `cargo xtask fidelity`: how often Sonde's trees are exactly right, against ground truth,
//! and what the probes that make them right cost.
//!
//! Each scenario is a front service whose handlers wait 0-20 ms at random and then make one
//! call to a downstream service (`go_fanout down`), loaded by `go_fanout load` (not traced:
//! 8 concurrent keep-alive clients by default). Request `ID` (`/req/ID`) causes exactly the
//! call `/down/ID`, so its right tree is known: the front's SERVER span, its CLIENT span,
//! the downstream's SERVER span, in one trace (the incoming one when the load sends a
//! `traceparent`). `score` classes each request: exact, right but marked as a guess, wrong
//! and marked as a guess, unlinked (the call is a root), wrong and certain (the worst), or
//! incomplete (a span missing).
//!
//! The Go scenarios are also timed without their random waits (`FANOUT_NO_DELAY=1`): the
//! load's throughput with no agent, with `--no-go-runtime`, and with the Go runtime probes,
//! side by side in the same run, and the probes' runs per request (BPF run counts).
//!
//! `--write-docs` puts the table into docs/fidelity.md between its markers.

mod score;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::Value;

use self::score::{Score, Verdict};
use crate::bench::{NginxRole, start_nginx};
use crate::util::{self, ChildGuard, TempDir};

#[derive(Debug, Args)]
pub struct Options {
    /// Requests per scenario.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(10..=9999))]
    requests: u32,
    /// Clients sending at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
    /// Requests per timed round of the overhead measurement.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    overhead_requests: u32,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Use this sonde binary instead of building one (cargo build --release -p sonde).
    #[arg(long, env = "SONDE_BIN", value_name = "PATH")]
    sonde_bin: Option<PathBuf>,
    /// Write the table into docs/fidelity.md.
    #[arg(long)]
    write_docs: bool,
}

/// The service in front, the one whose calls must find their request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    /// `go_fanout front`: Go net/http server and client.
    Go,
    /// `py_threaded_fanout.py`: Python ThreadingHTTPServer, urllib.
    PyThreads,
    /// nginx, one worker, proxying `/req/ID` to `/down/ID` over keep-alive upstreams.
    Nginx,
    /// `node_fanout.js`: Node.js http, setTimeout, a keep-alive agent.
    Node,
    /// `py_asyncio_fanout.py`: asyncio streams on one event loop.
    PyAsyncio,
    /// `JavaFanout.java`: the JDK's HttpServer on a pool of 16 threads.
    Java,
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    front: Front,
    /// `?mode=` of the load's requests.
    mode: &'static str,
    /// The load sends a `traceparent` to continue.
    incoming: bool,
    agent_flags: &'static [&'static str],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "go-handler",
        what: "Go net/http, handler goroutine calls (net/http client, keep-alive pool)",
        front: Front::Go,
        mode: "direct",
        incoming: false,
        agent_flags: &[],
    },
    Scenario {
        name: "go-spawned-goroutine",
        what: "Go, a goroutine started by the handler calls; incoming traceparent",
        front: Front::Go,
        mode: "goroutine",
        incoming: true,
        agent_flags: &[],
    },
    Scenario {
        name: "go-by-thread",
        what: "Go, handler calls, followed by thread (--no-go-runtime)",
        front: Front::Go,
        mode: "direct",
        incoming: false,
        agent_flags: &["--no-go-runtime"],
    },
    Scenario {
        name: "py-thread-per-request",
        what: "Python ThreadingHTTPServer, the handler's thread calls (urllib)",
        front: Front::PyThreads,
        mode: "direct",
        incoming: true,
        agent_flags: &[],
    },
    Scenario {
        name: "py-thread-pool",
        what: "Python, the call handed to a 4-thread pool",
        front: Front::PyThreads,
        mode: "pool",
        incoming: false,
        agent_flags: &[],
    },
    Scenario {
        name: "nginx-keepalive-proxy",
        what: "nginx, 1 worker, keep-alive upstream connections",
        front: Front::Nginx,
        mode: "direct",
        incoming: false,
        agent_flags: &[],
    },
    Scenario {
        name: "node-event-loop",
        what: "Node.js http, setTimeout, keep-alive agent",
        front: Front::Node,
        mode: "direct",
        incoming: false,
        agent_flags: &[],
    },
    Scenario {
        name: "py-asyncio",
        what: "Python asyncio streams",
        front: Front::PyAsyncio,
        mode: "direct",
        incoming: false,
        agent_flags: &[],
    },
    Scenario {
        name: "java-httpserver-urlconnection",
        what: "Java (JDK HttpServer: requests read on its dispatcher thread, handled on a \
               16-thread pool), HttpURLConnection on the handler's thread",
        front: Front::Java,
        mode: "direct",
        incoming: false,
        agent_flags: &[],
    },
    Scenario {
        name: "java-httpserver-httpclient",
        what: "Java, the same server, java.net.http.HttpClient (its own I/O threads)",
        front: Front::Java,
        mode: "httpclient",
        incoming: false,
        agent_flags: &[],
    },
];

/// One scenario's outcome.
struct Outcome {
    name: &'static str,
    what: &'static str,
    score: Score,
}

/// The Go runtime probes' cost, from one side-by-side measurement.
struct Overhead {
    /// Requests per second: no agent, agent with `--no-go-runtime`, agent with the probes.
    no_agent: f64,
    by_thread: f64,
    by_goroutine: f64,
    /// Runs of the Go uprobes per request, and their BPF run time per request (µs).
    go_runs_per_request: Option<f64>,
    go_program_us_per_request: Option<f64>,
}

pub fn run(opts: Options) -> Result<()> {
    util::require_root("cargo xtask fidelity")?;
    util::catch_interrupts();
    let sonde = match &opts.sonde_bin {
        Some(path) => path.clone(),
        None => util::build_sonde(true)?,
    };
    let dir = TempDir::new("sonde-fidelity")?;
    let fanout = build_fanout(dir.path())?;
    let loader = load_copy(&fanout)?;
    let mut outcomes = Vec::new();
    for scenario in SCENARIOS {
        if opts
            .only
            .as_deref()
            .is_some_and(|only| !scenario.name.contains(only))
        {
            continue;
        }
        util::check_interrupted()?;
        let score = run_scenario(&sonde, &fanout, &loader, dir.path(), scenario, &opts)
            .with_context(|| format!("scenario {}", scenario.name))?;
        println!("{}", row(scenario.name, &score));
        outcomes.push(Outcome {
            name: scenario.name,
            what: scenario.what,
            score,
        });
    }
    let overhead = if opts
        .only
        .as_deref()
        .is_none_or(|o| "go".contains(o) || o.contains("go"))
    {
        Some(measure_overhead(
            &sonde,
            &fanout,
            &loader,
            dir.path(),
            &opts,
        )?)
    } else {
        None
    };
    let report = report(&outcomes, overhead.as_ref(), &opts);
    println!("\n{report}");
    if opts.write_docs {
        write_docs(&report)?;
    }
    Ok(())
}

/// `fixtures/go_fanout` built with the machine's Go (offline, standard library only).
fn build_fanout(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("go_fanout");
    let go = std::env::var_os("SONDE_E2E_GO").unwrap_or_else(|| "/usr/local/go/bin/go".into());
    util::exec(
        Command::new(go)
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(util::workspace_root().join("tests/fixtures/go_fanout"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOWORK", "off")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", dir.join("gocache"))
            .env("GOPATH", dir.join("gopath")),
    )
    .context("building tests/fixtures/go_fanout (Go 1.26 at /usr/local/go, or SONDE_E2E_GO)")?;
    Ok(out)
}

/// The load's own copy of go_fanout: uprobes belong to a file, so the untraced load would
/// take the Go runtime probes' traps too if it ran the services' file.
fn load_copy(fanout: &Path) -> Result<PathBuf> {
    let copy = fanout.with_file_name("go_fanout_load");
    std::fs::copy(fanout, &copy).with_context(|| format!("copying {}", fanout.display()))?;
    Ok(copy)
}

/// The downstream and the front, running.
struct Services {
    down: ChildGuard,
    front: ChildGuard,
    front_port: u16,
}

fn start_services(fanout: &Path, dir: &Path, front: Front, no_delay: bool) -> Result<Services> {
    let down_port = util::free_port()?;
    let front_port = loop {
        let port = util::free_port()?;
        if port != down_port {
            break port;
        }
    };
    let log = |name: &str| std::fs::File::create(dir.join(name));
    let mut cmd = Command::new(fanout);
    cmd.args(["down", &down_port.to_string()])
        .stdin(Stdio::null())
        .stdout(log("down.log")?)
        .stderr(log("down.log")?);
    if no_delay {
        cmd.env("FANOUT_NO_DELAY", "1");
    }
    let down = ChildGuard::spawn(
        "downstream",
        &mut cmd,
        libc::SIGTERM,
        Duration::from_secs(3),
    )?;
    let down_url = format!("http://127.0.0.1:{down_port}");
    let fixtures = util::workspace_root().join("tests/fixtures");
    let (program, script) = match front {
        // `/req/ID` proxied as `/down/ID` over keep-alive upstream connections.
        Front::Nginx => {
            let role = NginxRole::Proxy {
                upstream: down_port,
                rewrite: Some(("/req/", "/down/")),
            };
            let nginx = start_nginx(&dir.join("nginx"), front_port, &role, None)?;
            return services(down, down_port, nginx, front_port, dir);
        }
        Front::Go => (fanout.as_os_str(), None),
        Front::PyThreads => ("python3".as_ref(), Some("py_threaded_fanout.py")),
        Front::PyAsyncio => ("python3".as_ref(), Some("py_asyncio_fanout.py")),
        Front::Node => ("node".as_ref(), Some("node_fanout.js")),
        Front::Java => ("java".as_ref(), Some("JavaFanout.java")),
    };
    let mut cmd = Command::new(program);
    match script {
        Some(script) => cmd.arg(fixtures.join(script)),
        None => cmd.arg("front"),
    };
    cmd.arg(front_port.to_string()).arg(&down_url);
    if no_delay {
        cmd.env("FANOUT_NO_DELAY", "1");
    }
    cmd.stdin(Stdio::null())
        .stdout(log("front.log")?)
        .stderr(log("front.log")?);
    let front = ChildGuard::spawn("front", &mut cmd, libc::SIGTERM, Duration::from_secs(3))?;
    services(down, down_port, front, front_port, dir)
}

/// Both services once they listen.
fn services(
    mut down: ChildGuard,
    down_port: u16,
    mut front: ChildGuard,
    front_port: u16,
    dir: &Path,
) -> Result<Services> {
    let boot = Duration::from_secs(15);
    util::wait_for_port(&mut down, down_port, boot)
        .with_context(|| util::tail(&dir.join("down.log"), 20))?;
    util::wait_for_port(&mut front, front_port, boot)
        .with_context(|| util::tail(&dir.join("front.log"), 20))?;
    Ok(Services {
        down,
        front,
        front_port,
    })
}

/// `sonde attach` on both services; spans as JSON lines into `spans` when given.
fn attach(
    sonde: &Path,
    services: &Services,
    flags: &[&str],
    dir: &Path,
    spans: Option<&Path>,
) -> Result<ChildGuard> {
    let pids = [services.down.pid(), services.front.pid()];
    crate::bench::attach_agent(sonde, &pids, flags, dir, &dir.join("sonde.stderr"), spans)
}

/// `go_fanout load`: `requests` requests from `concurrency` clients; fails on any error.
fn load(
    fanout: &Path,
    port: u16,
    requests: u32,
    concurrency: u32,
    mode: &str,
    incoming: bool,
) -> Result<()> {
    let mut cmd = Command::new(fanout);
    cmd.args([
        "load",
        &format!("http://127.0.0.1:{port}"),
        &requests.to_string(),
        &concurrency.to_string(),
        mode,
    ]);
    if incoming {
        cmd.arg("ctx");
    }
    let out = cmd.output().context("running go_fanout load")?;
    if !out.status.success() {
        bail!(
            "go_fanout load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.contains(" 200 "))
                .take(5)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

fn run_scenario(
    sonde: &Path,
    fanout: &Path,
    loader: &Path,
    dir: &Path,
    scenario: &Scenario,
    opts: &Options,
) -> Result<Score> {
    let services = start_services(fanout, dir, scenario.front, false)?;
    let spans_path = dir.join(format!("{}.spans.json", scenario.name));
    let mut agent = attach(
        sonde,
        &services,
        scenario.agent_flags,
        dir,
        Some(&spans_path),
    )?;
    load(
        loader,
        services.front_port,
        opts.requests,
        opts.concurrency,
        scenario.mode,
        scenario.incoming,
    )?;
    // Spans of the last requests leave the agent once their exchanges are read.
    util::sleep(Duration::from_millis(1500));
    let status = agent.stop()?;
    if !status.success() {
        bail!(
            "sonde exited with {status}: {}",
            util::tail(&dir.join("sonde.stderr"), 20)
        );
    }
    let text = std::fs::read_to_string(&spans_path)?;
    let spans: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing sonde's JSON spans")?;
    let requests = usize::try_from(opts.requests)?;
    Ok(score::score(
        &spans,
        requests,
        services.down.pid(),
        scenario.incoming,
    ))
}

/// Throughput of the Go front without random waits: no agent, by thread, by goroutine,
/// alternated over rounds; the medians.
fn measure_overhead(
    sonde: &Path,
    fanout: &Path,
    loader: &Path,
    dir: &Path,
    opts: &Options,
) -> Result<Overhead> {
    const ROUNDS: usize = 3;
    let services = start_services(fanout, dir, Front::Go, true)?;
    let timed = |n: u32| -> Result<f64> {
        let start = Instant::now();
        load(
            loader,
            services.front_port,
            n,
            opts.concurrency,
            "direct",
            false,
        )?;
        Ok(f64::from(n) / start.elapsed().as_secs_f64())
    };
    timed(opts.overhead_requests / 4)?; // warm connections and caches
    let mut rates: [Vec<f64>; 3] = Default::default();
    for _ in 0..ROUNDS {
        util::check_interrupted()?;
        rates[0].push(timed(opts.overhead_requests)?);
        for (slot, flags) in [(1, &["--no-go-runtime"][..]), (2, &[][..])] {
            let mut agent = attach(sonde, &services, flags, dir, None)?;
            rates[slot].push(timed(opts.overhead_requests)?);
            agent.stop()?;
        }
    }
    let mut agent = attach(sonde, &services, &[], dir, None)?;
    let counts = crate::bench::count_probes(agent.pid(), || {
        load(
            loader,
            services.front_port,
            opts.overhead_requests,
            opts.concurrency,
            "direct",
            false,
        )?;
        Ok(u64::from(opts.overhead_requests))
    })?;
    agent.stop()?;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let go = |name: &str| name.starts_with("sonde_uprobe_go");
    Ok(Overhead {
        no_agent: median(&mut rates[0]),
        by_thread: median(&mut rates[1]),
        by_goroutine: median(&mut rates[2]),
        go_runs_per_request: counts.per_request(go),
        go_program_us_per_request: counts.program_us_per_request_of(go),
    })
}

fn percent(n: usize, of: usize) -> String {
    if of == 0 {
        return "-".to_owned();
    }
    format!("{:.1}%", 100.0 * n as f64 / of as f64)
}

fn row(name: &str, s: &Score) -> String {
    format!(
        "| {name} | {} | **{}** | {} | {} | {} | {} | {} | {} | {} |",
        s.requests,
        percent(s.right(), s.requests),
        percent(s.count(Verdict::Exact), s.requests),
        percent(s.count(Verdict::RightGuess), s.requests),
        percent(s.count(Verdict::WrongGuess), s.requests),
        percent(s.count(Verdict::Unlinked), s.requests),
        percent(s.count(Verdict::WrongCertain), s.requests),
        percent(s.count(Verdict::Incomplete), s.requests),
        percent(s.with_header, s.requests),
    )
}

fn report(outcomes: &[Outcome], overhead: Option<&Overhead>, opts: &Options) -> String {
    let mut out = format!(
        "{} requests per scenario, {} clients at once, each handler waiting 0-20 ms at random \
         before its one downstream call.\n\n\
         | scenario | requests | tree right | exact | right, marked guess | wrong, marked guess | unlinked | wrong, certain | incomplete | traceparent sent |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        opts.requests, opts.concurrency
    );
    let mut total = Score::default();
    for o in outcomes {
        out += &row(o.name, &o.score);
        out.push('\n');
        total.requests += o.score.requests;
        total.with_header += o.score.with_header;
        for (k, v) in &o.score.by_verdict {
            *total.by_verdict.entry(k).or_default() += v;
        }
    }
    out += &row("**total**", &total);
    out += "\n\nScenarios:\n";
    for o in outcomes {
        out += &format!("- `{}`: {}\n", o.name, o.what);
    }
    if let Some(o) = overhead {
        out += &format!(
            "\nGo runtime probes, Go front without waits, {} requests per round, median of 3 \
             rounds alternated: {:.0} req/s without the agent, {:.0} by thread \
             (`--no-go-runtime`, {:.3} of it), {:.0} by goroutine ({:.3} of it); the Go \
             uprobes run {} times per request, {} µs of BPF time per request.\n",
            opts.overhead_requests,
            o.no_agent,
            o.by_thread,
            o.by_thread / o.no_agent,
            o.by_goroutine,
            o.by_goroutine / o.no_agent,
            o.go_runs_per_request
                .map_or("?".to_owned(), |r| format!("{r:.2}")),
            o.go_program_us_per_request
                .map_or("?".to_owned(), |r| format!("{r:.2}")),
        );
    }
    out
}

const BEGIN: &str = "<!-- fidelity:begin -->";
const END: &str = "<!-- fidelity:end -->";

fn write_docs(report: &str) -> Result<()> {
    let path = util::workspace_root().join("docs/fidelity.md");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{} lacks the {BEGIN} / {END} markers", path.display());
    };
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let new = format!(
        "{}{BEGIN}\nMeasured by `cargo xtask fidelity --write-docs` on {cpus} CPUs ({machine}).\n\n{report}{}",
        &text[..a],
        &text[b..]
    );
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
    println!("fidelity: wrote {}", path.display());
    Ok(())
}
