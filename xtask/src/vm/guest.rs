//! The checks themselves, run by `xtask vm-guest` inside the VM (started by
//! `vm-tests/init`) and, for the host leg, on the host: the same code on both kernels.
//!
//! Output is line-based, for [`super::results`] to read off a serial console:
//! `SONDE-RESULT <check> pass|fail <detail>` and `SONDE-DATA <name> <one-line JSON>`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use clap::Args;
use serde_json::Value;

use super::results::{DATA, RESULT};
use crate::util::{ChildGuard, TempDir};

#[derive(Debug, Args)]
pub struct Options {
    /// The agent to check.
    #[arg(long, value_name = "PATH")]
    sonde: PathBuf,
    /// TCP port for the traced HTTP server (loopback).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// TCP port for the traced HTTPS server (loopback).
    #[arg(long, default_value_t = 8443)]
    tls_port: u16,
    /// The Go HTTPS server and its certificate (`vm/tls_files.rs`).
    #[arg(long, default_value = super::tls_files::GUEST_DIR)]
    tls_dir: PathBuf,
}

/// Characters of a result's detail kept on its line.
const MAX_DETAIL: usize = 2000;

/// Under TCG, `sonde run` of a server and a client takes a few seconds; this is the cap.
const TRACE_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(opts: Options) -> Result<()> {
    let Options {
        sonde,
        port,
        tls_port,
        tls_dir,
    } = opts;
    let doctor = doctor(&sonde);
    let states = doctor
        .as_ref()
        .map(|(_, report)| doctor_states(report))
        .unwrap_or_default();
    report("doctor", doctor.map(|(summary, _)| summary));
    report("verifier_matrix", verifier_matrix(&sonde));
    // The hooks the agent picks on this kernel, then every family the kernel offers: the
    // same assertions must hold on each path. A family the doctor says this kernel lacks
    // is skipped, with the doctor's reason.
    report("trace_http", trace_http(&sonde, port, "auto"));
    report("trace_tls", trace_tls(&sonde, tls_port, &tls_dir));
    for (family, doctor_check) in HOOK_FAMILIES {
        let check = format!("trace_http_{}", family.replace('-', "_"));
        match states.get(*doctor_check) {
            Some((state, _)) if state == "ok" => {
                report(&check, trace_http(&sonde, port, family));
            }
            Some((state, detail)) => skip(&check, &format!("{doctor_check} {state}: {detail}")),
            None => report(
                &check,
                Err(anyhow::anyhow!("doctor has no {doctor_check} check")),
            ),
        }
    }
    Ok(())
}

/// `--hooks` families, each with the `sonde doctor` check that says whether this
/// kernel has it.
pub const HOOK_FAMILIES: &[(&str, &str)] = &[
    ("socket-tracepoints", "socket_tracepoints"),
    ("fexit", "fentry"),
    ("kprobes", "kprobes"),
    ("syscall-tracepoints", "syscall_tracepoints"),
];

/// `(state, detail)` of each doctor check, by name.
fn doctor_states(report: &Value) -> std::collections::BTreeMap<String, (String, String)> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["name"].as_str()?.to_owned(),
                (
                    c["state"].as_str()?.to_owned(),
                    c["detail"].as_str().unwrap_or_default().to_owned(),
                ),
            ))
        })
        .collect()
}

fn skip(check: &str, why: &str) {
    print_result(check, "skip", why.to_owned());
}

fn report(check: &str, outcome: Result<String>) {
    let (verdict, detail) = match outcome {
        Ok(detail) => ("pass", detail),
        Err(e) => ("fail", format!("{e:#}")),
    };
    print_result(check, verdict, detail);
}

fn print_result(check: &str, verdict: &str, detail: String) {
    // One line per result, of bounded length (a verifier log can be megabytes): the
    // reader splits on lines, and the full output is one rerun away.
    let mut detail = detail.replace('\n', " | ");
    if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL) {
        detail.truncate(cut);
        detail.push_str(" ...");
    }
    println!("{RESULT} {check} {verdict} {detail}");
}

fn data(name: &str, value: &Value) {
    println!("{DATA} {name} {value}");
}

/// Runs `sonde ARGS`, expecting JSON on stdout and an exit status of 0 (yes) or 2 (no).
fn sonde_json(sonde: &Path, args: &[&str]) -> Result<(bool, Value)> {
    let out = Command::new(sonde)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", sonde.display(), args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "sonde {} printed no JSON ({}); stderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    match out.status.code() {
        Some(0) => Ok((true, value)),
        Some(2) => Ok((false, value)),
        _ => bail!("sonde {} exited with {}", args.join(" "), out.status),
    }
}

/// `sonde doctor --json`: the report goes into the results; passes if Sonde can trace.
fn doctor(sonde: &Path) -> Result<(String, Value)> {
    let (can_trace, report) = sonde_json(sonde, &["doctor", "--json"])?;
    data("doctor", &report);
    let summary = report["verdict"]["summary"]
        .as_str()
        .unwrap_or("no summary")
        .to_owned();
    ensure!(can_trace, "{summary}");
    Ok((summary, report))
}

/// Every program of the object through this kernel's verifier.
fn verifier_matrix(sonde: &Path) -> Result<String> {
    let (all_ok, matrix) = sonde_json(sonde, &["doctor", "--verifier-matrix", "--json"])?;
    data("verifier_matrix", &matrix);
    let programs = matrix["programs"].as_array().map_or(&[][..], Vec::as_slice);
    ensure!(!programs.is_empty(), "the matrix lists no programs");
    let in_state = |state: &str| -> Vec<&str> {
        programs
            .iter()
            .filter(|p| p["state"] == state)
            .filter_map(|p| p["program"].as_str())
            .collect()
    };
    let rejected = in_state("rejected");
    ensure!(
        all_ok && rejected.is_empty(),
        "rejected by the verifier: {}",
        rejected.join(", ")
    );
    // Accepted with little headroom here means rejected by a stricter verifier elsewhere.
    let budget = matrix["verifier_budget"]
        .as_u64()
        .context("the matrix names no verifier budget")?;
    let insns = |p: &Value| p["verified_insns"].as_u64();
    let over: Vec<String> = programs
        .iter()
        .filter(|p| insns(p).is_some_and(|n| n > budget))
        .map(|p| {
            let name = p["program"].as_str().unwrap_or("?");
            format!("{name} ({})", insns(p).unwrap_or_default())
        })
        .collect();
    ensure!(
        over.is_empty(),
        "over the verifier budget of {budget} instructions: {}",
        over.join(", ")
    );
    let unavailable = in_state("unavailable");
    let most = programs.iter().filter_map(insns).max().unwrap_or_default();
    Ok(format!(
        "{} of {} programs loaded, {} of a hook family this kernel refuses; at most {most} \
         instructions verified",
        in_state("ok").len(),
        programs.len(),
        unavailable.len()
    ))
}

/// A CGI script that answers with the `traceparent` header busybox httpd received.
const ECHO_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"traceparent=$HTTP_TRACEPARENT\"\n";

/// `sonde run -o json --hooks HOOKS` over busybox httpd (server) and curl (client), both traced:
/// a CLIENT and a SERVER span in one trace, the server's parent being the client span,
/// and the server received the `traceparent` Sonde inserted, carrying the client's ids.
fn trace_http(sonde: &Path, port: u16, hooks: &str) -> Result<String> {
    let dir = TempDir::new("sonde-vm-trace")?;
    let cgi = dir.path().join("cgi-bin");
    std::fs::create_dir_all(&cgi)?;
    std::fs::write(cgi.join("echo"), ECHO_CGI)?;
    let mut perms = std::fs::metadata(cgi.join("echo"))?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(cgi.join("echo"), perms)?;

    let docroot = dir.path().display();
    let script = format!(
        "busybox httpd -f -p 127.0.0.1:{port} -h {docroot} & server=$!; \
         curl -sS --retry 30 --retry-connrefused --retry-delay 1 http://127.0.0.1:{port}/cgi-bin/echo; \
         status=$?; kill $server; exit $status"
    );
    let (stdout, stderr) = sonde_run(sonde, &["--hooks", hooks], &script, dir.path())?;
    if let Some(ready) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sonde: ready: "))
    {
        data(&format!("hooks_{hooks}"), &Value::String(ready.to_owned()));
    }
    check_trace(&stdout).with_context(|| format!("stdout: {stdout} stderr: {stderr}"))
}

/// `sonde run -o json ARGS -- sh -c SCRIPT`, to its end: its stdout (the spans
/// and the script's own lines) and stderr; an error if it fails or outlives
/// [`TRACE_TIMEOUT`]. `dir` holds the output files.
fn sonde_run(sonde: &Path, args: &[&str], script: &str, dir: &Path) -> Result<(String, String)> {
    let stdout_path = dir.join("stdout");
    let stderr_path = dir.join("stderr");
    let mut cmd = Command::new(sonde);
    cmd.args(["run", "-o", "json"])
        .args(args)
        .args(["--", "sh", "-c", script])
        // What the TLS probes found, in the agent's stderr (a failed check prints it).
        .env("RUST_LOG", "warn,sonde::attach::tls=info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?);
    let mut agent = ChildGuard::spawn("sonde run", &mut cmd, libc::SIGINT, Duration::from_secs(5))?;
    let status = agent.wait_timeout(TRACE_TIMEOUT)?;
    drop(agent);
    let stdout = std::fs::read_to_string(&stdout_path)?;
    let stderr = std::fs::read_to_string(&stderr_path)?;
    let status = status.with_context(|| {
        format!("sonde run did not finish within {TRACE_TIMEOUT:?}; stderr: {stderr}")
    })?;
    ensure!(
        status.success(),
        "sonde run exited with {status}; stdout: {stdout} stderr: {stderr}"
    );
    Ok((stdout, stderr))
}

/// `sonde run` over the Go HTTPS server of the TLS tests (Go's crypto/tls: probes placed
/// per binary, told apart by their attach cookies) and curl (OpenSSL in libssl, loaded
/// by libcurl), both traced: for `GET /hello`, a CLIENT span from OpenSSL's plaintext
/// and a SERVER span from Go's, `https`, TLS 1.3, the server the client's child through
/// the TCP option the client's write carried. The requests wait until the agent says it
/// probed the server (the `RUST_LOG` line `sonde_run` asks for).
fn trace_tls(sonde: &Path, port: u16, files: &Path) -> Result<String> {
    use super::tls_files::{CERT, KEY, SERVER};
    let dir = TempDir::new("sonde-vm-tls")?;
    let (server, cert, key) = (
        files.join(SERVER).display().to_string(),
        files.join(CERT).display().to_string(),
        files.join(KEY).display().to_string(),
    );
    let url = format!("https://127.0.0.1:{port}");
    // The agent's stderr (sonde_run's file) says when the server's probes are in: reading
    // a Go binary's DWARF takes seconds under TCG, longer than the server takes to listen.
    let stderr = dir.path().join("stderr").display().to_string();
    let script = format!(
        "{server} {cert} {key} {port} & server=$!; \
         i=0; until grep -q 'probing Go crypto/tls' {stderr} || [ $i -ge 120 ]; do \
         sleep 1; i=$((i+1)); done; \
         curl -sS -o /dev/null --retry 30 --retry-connrefused --retry-delay 1 --cacert {cert} {url}/warmup \
         && curl -sS --cacert {cert} {url}/hello; \
         status=$?; kill $server; exit $status"
    );
    // The probes' own reasons for skipping (--probe-log) go to stderr, printed on failure.
    let (stdout, stderr) = sonde_run(sonde, &["--probe-log", "debug"], &script, dir.path())?;
    // The reason first, then each span in one line: a result line keeps MAX_DETAIL bytes.
    check_tls_trace(&stdout).map_err(|e| {
        let spans: Vec<String> = span_lines(&stdout)
            .unwrap_or_default()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:?} parent={:?}",
                    span_kind(s).unwrap_or("?"),
                    s["name"].as_str().unwrap_or("?"),
                    attr(s, "sonde.tls.library"),
                    attr(s, "sonde.parent.source"),
                )
            })
            .collect();
        let warnings: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("  ")).collect();
        // The detail line is cut at MAX_DETAIL: the agent's stderr goes out whole.
        data("trace_tls_stderr", &Value::String(stderr.clone()));
        anyhow::anyhow!("{e:#}; spans: {spans:?}; stderr: {warnings:?}")
    })
}

/// The assertions of [`trace_tls`].
fn check_tls_trace(stdout: &str) -> Result<String> {
    ensure!(
        stdout.lines().any(|l| l == "hello /hello"),
        "curl did not print the Go server's answer"
    );
    let spans = span_lines(stdout)?;
    let one = |kind: &str| {
        let found: Vec<&Value> = spans
            .iter()
            .filter(|s| span_kind(s) == Some(kind) && s["name"] == "GET /hello")
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            other => Err(anyhow::anyhow!(
                "expected one {kind} span GET /hello, got {}",
                other.len()
            )),
        }
    };
    let client = one("CLIENT")?;
    let server = one("SERVER")?;
    for (span, library) in [(client, "openssl"), (server, "go")] {
        for (key, want) in [
            ("sonde.tls.library", library),
            ("url.scheme", "https"),
            ("tls.protocol.version", "1.3"),
        ] {
            let got = attr(span, key);
            ensure!(
                got == Some(want),
                "{} span: {key} is {got:?}, expected {want}",
                span_kind(span).unwrap_or("?")
            );
        }
    }
    let id = |span: &Value, field: &str| span[field].as_str().unwrap_or_default().to_owned();
    ensure!(
        id(server, "traceId") == id(client, "traceId")
            && id(server, "parentSpanId") == id(client, "spanId"),
        "the SERVER span is not the child of the CLIENT span"
    );
    let source = attr(server, "sonde.parent.source").unwrap_or("unset");
    ensure!(
        source == "tcp_option",
        "the server's parent came from {source}, expected the TCP option the client's \
         write carried (tcp_option)"
    );
    Ok(format!(
        "CLIENT curl (OpenSSL) -> SERVER Go (crypto/tls) in trace {}, TLS 1.3, linked by \
         the TCP option",
        id(client, "traceId")
    ))
}

/// The span lines of `sonde run -o json` output.
fn span_lines(stdout: &str) -> Result<Vec<Value>> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("a span line is not JSON")
}

/// A span's string attribute.
fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str())
}

/// The assertions of [`trace_http`] on `sonde run -o json` output.
fn check_trace(stdout: &str) -> Result<String> {
    let spans = span_lines(stdout)?;
    let of_kind = |kind: &str| {
        let found: Vec<&Value> = spans
            .iter()
            .filter(|s| span_kind(s) == Some(kind))
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            other => Err(anyhow::anyhow!(
                "expected one {kind} span, got {}",
                other.len()
            )),
        }
    };
    let client = of_kind("CLIENT")?;
    let server = of_kind("SERVER")?;
    let id = |span: &Value, field: &str| span[field].as_str().unwrap_or_default().to_owned();
    let (trace, client_id) = (id(client, "traceId"), id(client, "spanId"));
    ensure!(
        trace.len() == 32 && client_id.len() == 16,
        "client span ids are malformed"
    );
    ensure!(
        id(server, "traceId") == trace && id(server, "parentSpanId") == client_id,
        "the SERVER span is not the child of the CLIENT span"
    );
    let echoed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("traceparent="))
        .context("curl printed no echo line")?;
    let expected = format!("00-{trace}-{client_id}-");
    ensure!(
        echoed.starts_with(&expected),
        "the server received traceparent {echoed:?}, expected {expected}.."
    );
    let source = attr(server, "sonde.parent.source").unwrap_or("unset");
    Ok(format!(
        "CLIENT curl -> SERVER busybox httpd in trace {trace} (sonde.parent.source={source}); \
         the server received the injected traceparent"
    ))
}

/// `SERVER`/`CLIENT`/... from the OTLP JSON `kind` (a number or `SPAN_KIND_*`).
fn span_kind(span: &Value) -> Option<&'static str> {
    match &span["kind"] {
        Value::Number(n) => match n.as_u64()? {
            2 => Some("SERVER"),
            3 => Some("CLIENT"),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "SPAN_KIND_SERVER" => Some("SERVER"),
            "SPAN_KIND_CLIENT" => Some("CLIENT"),
            _ => None,
        },
        _ => None,
    }
}
