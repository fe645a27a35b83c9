//! `cargo xtask bench --db`: what tracing a database server costs. PostgreSQL under
//! `pgbench -S -c 4 -T <seconds>` (select-only) and Redis under `redis-benchmark -t get,set -q`,
//! each on loopback, with the same three configurations as the nginx benchmark, rotated
//! every round: no agent, `sonde attach --pid <server> --empty-probes` (the floor), and
//! full tracing (`-o none`). The agent traces the database server (postmaster and its
//! backends, redis-server): every query is parsed and becomes a SERVER span.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::util::{self, ChildGuard, TempDir, check_interrupted};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    None,
    Floor,
    Full,
}

const CONFIGS: [Config; 3] = [Config::None, Config::Floor, Config::Full];

/// One workload: a server to trace and a load generator that reports operations/s.
struct Workload {
    name: String,
    server_pid: u32,
    load: Box<dyn Fn() -> Result<f64>>,
}

/// Runs both workloads and returns their Markdown table.
pub fn run(sonde: &Path, rounds: u32, seconds: u32) -> Result<String> {
    let dir = TempDir::new("sonde-bench-db")?;
    let (pg, pg_port) = start_postgres(dir.path())?;
    let (redis, redis_port) = start_redis(dir.path())?;
    let pg_load = move || pgbench(pg_port, seconds);
    let redis_load = move || redis_benchmark(redis_port);
    let workloads = [
        Workload {
            name: format!("PostgreSQL `pgbench -S -c 4 -T {seconds}` (tps)"),
            server_pid: pg.pid(),
            load: Box::new(pg_load),
        },
        Workload {
            name: "Redis `redis-benchmark -t get,set -q` (GET+SET req/s)".to_owned(),
            server_pid: redis.pid(),
            load: Box::new(redis_load),
        },
    ];
    let mut table = String::from(
        "| workload | (a) no agent | (b) floor | (c) full | (c)/(a) | (b)/(a) | spans |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for w in &workloads {
        let mut results: [Vec<f64>; 3] = Default::default();
        let mut spans = 0;
        for round in 0..rounds {
            let mut order = CONFIGS;
            order.rotate_left(usize::try_from(round % 3)?);
            for config in order {
                check_interrupted()?;
                let (ops, built) = measure(sonde, dir.path(), w, config)?;
                println!(
                    "bench-db: {} round {} {config:?}: {ops:.0}",
                    w.name,
                    round + 1
                );
                spans = spans.max(built);
                let slot = CONFIGS.iter().position(|c| *c == config).unwrap_or(0);
                results[slot].push(ops);
            }
        }
        let [none, floor, full] = results.map(crate::bench::median);
        table.push_str(&format!(
            "| {} | {none:.0} | {floor:.0} | {full:.0} | {:.3} | {:.3} | {spans} |\n",
            w.name,
            full / none,
            floor / none
        ));
    }
    drop((pg, redis));
    Ok(table)
}

/// One load run under `config`; returns operations/s and the spans the agent built.
fn measure(sonde: &Path, dir: &Path, w: &Workload, config: Config) -> Result<(f64, u64)> {
    let log = dir.join("sonde-db.stderr");
    let mut agent = match config {
        Config::None => None,
        Config::Floor | Config::Full => Some(crate::bench::attach_agent(
            sonde,
            &[w.server_pid],
            if config == Config::Floor {
                &["--empty-probes"]
            } else {
                &[]
            },
            dir,
            &log,
            None,
        )?),
    };
    let ops = (w.load)()?;
    let mut spans = 0;
    if let Some(agent) = &mut agent {
        let status = agent.stop()?;
        if !status.success() {
            bail!("sonde exited with {status}:\n{}", util::tail(&log, 30));
        }
        let counters = util::parse_counters(&std::fs::read_to_string(&log)?);
        spans = counters.get("spans_built").copied().unwrap_or(0);
    }
    Ok((ops, spans))
}

/// Numeric uid and gid of the `postgres` user.
fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        Ok(util::output(Command::new("id").args([flag, "postgres"]))?
            .trim()
            .parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

fn start_postgres(dir: &Path) -> Result<(ChildGuard, u16)> {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = postgres_ids().context("the postgres user (apt-get install postgresql)")?;
    let pg_dir = dir.join("pg");
    std::fs::create_dir_all(&pg_dir)?;
    util::exec(Command::new("chown").arg("postgres:postgres").arg(&pg_dir))?;
    let data = pg_dir.join("data");
    util::output(
        Command::new(Path::new(PG_BIN).join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data)
            .uid(uid)
            .gid(gid),
    )?;
    let port = util::free_port()?;
    let mut cmd = Command::new(Path::new(PG_BIN).join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-k"])
        .arg(&pg_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .uid(uid)
        .gid(gid);
    let mut pg = ChildGuard::spawn("postgres", &mut cmd, libc::SIGINT, Duration::from_secs(10))?;
    util::wait_for_port(&mut pg, port, Duration::from_secs(15))?;
    util::output(
        Command::new(Path::new(PG_BIN).join("pgbench"))
            .args(["-i", "-q", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &port.to_string(), "postgres"]),
    )
    .context("pgbench -i")?;
    Ok((pg, port))
}

fn start_redis(dir: &Path) -> Result<(ChildGuard, u16)> {
    let port = util::free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut redis = ChildGuard::spawn(
        "redis-server",
        &mut cmd,
        libc::SIGTERM,
        Duration::from_secs(5),
    )?;
    util::wait_for_port(&mut redis, port, Duration::from_secs(10))?;
    Ok((redis, port))
}

fn pgbench(port: u16, seconds: u32) -> Result<f64> {
    let out = util::output(
        Command::new(Path::new(PG_BIN).join("pgbench"))
            .args(["-S", "-c", "4", "-j", "2", "-T", &seconds.to_string()])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
            .arg("postgres"),
    )?;
    parse_pgbench(&out)
}

fn parse_pgbench(out: &str) -> Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no `tps = ` line in pgbench output:\n{out}"))
}

fn redis_benchmark(port: u16) -> Result<f64> {
    let out = util::output(Command::new("redis-benchmark").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "get,set",
        "-n",
        "100000",
        "-q",
    ]))?;
    parse_redis_benchmark(&out)
}

/// Sum of the `SET:` and `GET:` rates (`-q` prints progress lines ending in `\r` first).
fn parse_redis_benchmark(out: &str) -> Result<f64> {
    let rate = |cmd: &str| -> Option<f64> {
        out.split(['\n', '\r'])
            .filter_map(|l| l.strip_prefix(cmd))
            .filter_map(|rest| rest.trim().split_once(" requests per second"))
            .filter_map(|(n, _)| n.trim().parse::<f64>().ok())
            .next_back()
    };
    match (rate("SET:"), rate("GET:")) {
        (Some(set), Some(get)) => Ok(set + get),
        _ => bail!("no SET:/GET: rates in redis-benchmark output:\n{out}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_and_redis_benchmark_outputs_are_parsed() {
        let pg = "number of failed transactions: 0 (0.000%)\nlatency average = 0.110 ms\n\
                  initial connection time = 4.521 ms\ntps = 36245.123456 (without initial connection time)\n";
        assert!((parse_pgbench(pg).unwrap() - 36245.123456).abs() < 1e-6);
        let redis = "SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                     SET: 140845.06 requests per second, p50=0.175 msec\n\
                     GET: 147058.83 requests per second, p50=0.167 msec\n";
        assert!((parse_redis_benchmark(redis).unwrap() - 287903.89).abs() < 0.01);
        assert!(parse_redis_benchmark("ERROR").is_err());
    }
}
