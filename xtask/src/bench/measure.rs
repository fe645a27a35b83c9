//! Measuring one configuration: an nginx in its role, the agent attached with the
//! configuration's flags, one wrk run, and the CPU, memory and counters around it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::Sample;
use super::config::Config;
use super::probes::count_probes;
use super::procfs::{clock_ticks_per_sec, host_cpu_ticks, tree_cpu_ticks, vm_hwm_kib};
use super::wrk::Wrk;
use crate::util::{self, ChildGuard};

/// What an nginx of the benchmark (or of `cargo xtask fidelity`) does.
pub(crate) enum NginxRole {
    /// Serves `1k.bin` from its own docroot.
    Origin,
    /// Proxies everything to the origin on `upstream`, over keep-alive connections (HTTP/1.1
    /// upstream, no `Connection` header), as a traced service calling another would; with
    /// `rewrite: Some((from, to))`, a path starting with `from` goes up starting with `to`.
    Proxy {
        upstream: u16,
        rewrite: Option<(&'static str, &'static str)>,
    },
}

/// A throwaway self-signed certificate and its key, for nginx's HTTPS.
pub(crate) struct Cert {
    cert: PathBuf,
    key: PathBuf,
}

impl Cert {
    /// Made with the `openssl` CLI in `dir` (EC P-256, for `localhost` and 127.0.0.1,
    /// valid two days; wrk does not check it).
    pub(super) fn new(dir: &Path) -> Result<Self> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let mut cmd = Command::new("openssl");
        cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=localhost", "-addext"])
            .arg("subjectAltName=DNS:localhost,IP:127.0.0.1")
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null());
        // Its progress dashes on stderr only matter when it fails.
        let out = cmd
            .output()
            .context("making a certificate for nginx (is the openssl CLI installed?)")?;
        if !out.status.success() {
            bail!(
                "{} failed with {}:\n{}",
                util::show(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self { cert, key })
    }
}

/// One nginx (one worker) in `dir`, listening on `port`; over HTTPS with `tls`.
pub(crate) fn start_nginx(
    dir: &Path,
    port: u16,
    role: &NginxRole,
    tls: Option<&Cert>,
) -> Result<ChildGuard> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let listen = match tls {
        None => format!("listen 127.0.0.1:{port};"),
        // TLS 1.3 where the client has it, as nginx offers since 1.23.4 (1.22 stops at 1.2).
        Some(Cert { cert, key }) => format!(
            "listen 127.0.0.1:{port} ssl;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    \
             ssl_certificate {};\n    ssl_certificate_key {};",
            cert.display(),
            key.display()
        ),
    };
    let (upstream, server_body) = match role {
        NginxRole::Origin => {
            let root = dir.join("www");
            std::fs::create_dir_all(&root)?;
            std::fs::write(root.join("1k.bin"), vec![b'x'; 1024])?;
            (String::new(), format!("root {d}/www;"))
        }
        NginxRole::Proxy { upstream, rewrite } => (
            format!(
                "upstream origin {{ server 127.0.0.1:{upstream}; keepalive 32; \
                 keepalive_requests 1000000; }}\n  "
            ),
            format!(
                "location / {{ {}proxy_pass http://origin; proxy_http_version 1.1; \
                 proxy_set_header Connection \"\"; }}",
                rewrite.map_or_else(String::new, |(from, to)| format!(
                    "rewrite ^{from}(.*)$ {to}$1 break; "
                ))
            ),
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
             {upstream}server {{\n    {listen}\n    {server_body}\n  }}\n}}\n"
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
pub(super) struct Bench<'a> {
    pub(super) sonde: &'a Path,
    pub(super) wrk: &'a Wrk,
    /// `--agent-arg`s, after each configuration's own flags.
    pub(super) agent_args: &'a [String],
    pub(super) dir: &'a Path,
    pub(super) seconds: u32,
}

/// Seconds of the run that counts the agent's program runs (`probes`), after the timed one.
const COUNT_SECONDS: u32 = 2;

/// One timed run of `config` against the server `target` at `url`; with `count`, and an
/// agent, then a run that counts its probes, with the same agent.
pub(super) fn measure(
    bench: &Bench<'_>,
    target: u32,
    url: &str,
    round: u32,
    config: Config,
    count: bool,
) -> Result<Sample> {
    let Bench {
        sonde,
        wrk,
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
            Some(attach_agent(
                sonde,
                &[target],
                &flags,
                dir,
                &agent_log,
                None,
            )?)
        }
    };
    let server_cpu0 = tree_cpu_ticks(target);
    let agent_cpu0 = agent.as_ref().and_then(|a| tree_cpu_ticks(a.pid()));
    let host0 = host_cpu_ticks();
    let run = wrk.run(url, seconds)?;
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
    let probes = match &agent {
        Some(agent) if count => {
            count_probes(agent.pid(), || Ok(wrk.run(url, COUNT_SECONDS)?.requests))
                .inspect_err(|e| {
                    println!(
                        "bench: warning: no probe counts for {}: {e:#}",
                        config.label()
                    );
                })
                .ok()
        }
        _ => None,
    };
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
        probes,
    })
}

/// `sonde attach --pid <pid>...` (with `--empty-probes` for the floor), ready; its spans
/// as JSON lines into `spans` (else `-o none`), its stderr into `log`.
pub(crate) fn attach_agent(
    sonde: &Path,
    pids: &[u32],
    flags: &[&str],
    dir: &Path,
    log: &Path,
    spans: Option<&Path>,
) -> Result<ChildGuard> {
    let ready = dir.join("sonde.ready");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(sonde);
    cmd.arg("attach");
    for pid in pids {
        cmd.args(["--pid", &pid.to_string()]);
    }
    match spans {
        Some(path) => cmd
            .args(["-o", "json"])
            .stdout(std::fs::File::create(path)?),
        None => cmd.args(["-o", "none"]).stdout(Stdio::null()),
    };
    cmd.args(flags)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    let mut agent = ChildGuard::spawn("sonde", &mut cmd, libc::SIGINT, Duration::from_secs(15))?;
    util::wait_for_file(&mut agent, &ready, Duration::from_secs(60))
        .with_context(|| util::tail(log, 30))?;
    Ok(agent)
}
