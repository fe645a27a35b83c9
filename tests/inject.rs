//! Outgoing `traceparent` injection (ebpf-probes/inject.bpf.c) is correct and harmless:
//! real clients (curl, urllib, requests, Node, Go, nginx) send exactly one well-formed
//! header carrying their CLIENT span's ids; an application's own context header is left
//! alone; thousands of randomized writes arrive byte for byte, except for traceparent
//! lines right after request lines; FIONREAD stays right; large responses through a traced
//! nginx never stall; and a killed agent leaves open connections working.
//!
//! Every server that receives the requests is untraced: it sees the bytes on the wire.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

// ===== what the echo server received =====

/// `tests/fixtures/inject_echo_server.py` (untraced): `/echo/TAG` records the request head
/// in `<dir>/heads/TAG`, `/bytes/N` answers N pattern bytes.
fn echo_server() -> Server {
    let port = free_port();
    let dir = TempDir::new("echo");
    let mut cmd = Command::new(python());
    cmd.arg(fixture("inject_echo_server.py"))
        .arg(port.to_string())
        .arg(dir.path());
    Server::spawn("inject_echo_server.py", cmd, port, dir)
}

/// The request head the echo server received for `tag` (waits up to 5 s for it).
fn received_head(server: &Server, tag: &str) -> String {
    let path = server.dir.join("heads").join(tag);
    let there = wait_until(Duration::from_secs(5), || path.exists());
    assert!(
        there,
        "the echo server received no request for {tag}:\n{}",
        server.logs()
    );
    // The writer may still be flushing: a head always ends with a blank line.
    let mut head = Vec::new();
    wait_until(Duration::from_secs(2), || {
        head = std::fs::read(&path).unwrap_or_default();
        head.ends_with(b"\r\n\r\n")
    });
    String::from_utf8_lossy(&head).into_owned()
}

/// The values of the header lines named `name` (any case), in order.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A W3C traceparent value: (trace id, parent id, flags), if well-formed.
fn parse_traceparent(value: &str) -> Option<(&str, &str, &str)> {
    let lower_hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ok = version == "00"
        && parts.next().is_none()
        && lower_hex(trace, 32)
        && trace != "0".repeat(32)
        && lower_hex(span, 16)
        && span != "0".repeat(16)
        && (flags == "00" || flags == "01");
    ok.then_some((trace, span, flags))
}

/// Exactly one well-formed traceparent, right after the request line, carrying the ids of
/// `client` (the CLIENT span the agent built for this request).
fn assert_injected(tree: &SpanTree, head: &str, client: &Value) {
    let values = header_values(head, "traceparent");
    check!(
        tree,
        values.len() == 1,
        "exactly one traceparent line in what the server received:\n{head}"
    );
    let Some((trace, span, _)) = parse_traceparent(values[0]) else {
        panic!(
            "malformed traceparent {:?} in:\n{head}\n{}",
            values[0],
            tree.dump()
        );
    };
    let second_line = head.split("\r\n").nth(1).unwrap_or_default();
    check!(
        tree,
        second_line.to_ascii_lowercase().starts_with("traceparent:"),
        "the traceparent line follows the request line:\n{head}"
    );
    eqnice!(
        tree,
        trace,
        client.trace_id(),
        "traceparent trace id = CLIENT span's"
    );
    eqnice!(
        tree,
        span,
        client.span_id(),
        "traceparent parent id = CLIENT span's id"
    );
}

/// The one CLIENT span whose target contains `tag`.
fn client_span_for<'a>(tree: &'a SpanTree, tag: &str) -> &'a Value {
    let found: Vec<&Value> = tree
        .of_kind(CLIENT)
        .into_iter()
        .filter(|s| {
            s.name().contains(tag) || s.attr_str("url.full").is_some_and(|u| u.contains(tag))
        })
        .collect();
    check!(
        tree,
        found.len() == 1,
        "one CLIENT span for {tag}, found {}",
        found.len()
    );
    found[0]
}

// ===== tools that may be missing =====

fn command_succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Builds `tests/fixtures/inject_client.go` into `dir` with GOCACHE and GOPATH under it.
fn build_go_client(dir: &TempDir) -> std::path::PathBuf {
    let bin = dir.join("inject_client");
    let out = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(fixture("inject_client.go"))
        .current_dir(dir.path())
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .output()
        .expect("running go build");
    assert!(
        out.status.success(),
        "go build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

// ===== 1. one traceparent per request, the CLIENT span's ids =====

/// Runs `command` (which GETs `url`) under `sonde run`; the echo server must have
/// received exactly one traceparent with the ids of the command's CLIENT span.
fn check_traced_client<S: AsRef<std::ffi::OsStr>>(server: &Server, tag: &str, command: &[S]) {
    let (stopped, tree) = sonde_run(command);
    assert!(
        stopped.status.success(),
        "sonde run failed ({}); stderr:\n{}",
        stopped.status,
        stopped.stderr
    );
    let head = received_head(server, tag);
    let client = client_span_for(&tree, tag);
    assert_injected(&tree, &head, client);
    let done = stopped.counters.get("inject_done").copied().unwrap_or(0);
    check!(tree, done >= 1, "inject_done >= 1, got {done}");
}

#[test]
fn curl_request_carries_its_client_span() {
    require_tracing!();
    let server = echo_server();
    let dir = TempDir::new("curl");
    let body = dir.join("body");
    let url = server.url("/echo/curl");
    let body_arg = body.to_str().expect("utf-8 temp path");
    check_traced_client(&server, "curl", &["curl", "-sS", "-o", body_arg, &url]);
    // curl got back what the server saw: the same head.
    let echoed = std::fs::read(&body).expect("curl wrote the body");
    assert_eq!(
        String::from_utf8_lossy(&echoed),
        received_head(&server, "curl"),
        "the echoed head"
    );
}

#[test]
fn urllib_request_carries_its_client_span() {
    require_tracing!();
    let server = echo_server();
    let url = server.url("/echo/urllib");
    let script = fixture("inject_client.py");
    check_traced_client(
        &server,
        "urllib",
        &[python(), script.into(), "urllib".into(), url.into()],
    );
}

#[test]
fn requests_request_carries_its_client_span() {
    require_tracing!();
    let present = command_succeeds(Command::new(python()).args(["-c", "import requests"]));
    if !tool_available(
        present,
        "python3 cannot import requests (apt-get install python3-requests)",
    ) {
        return;
    }
    let server = echo_server();
    let url = server.url("/echo/requests");
    let script = fixture("inject_client.py");
    check_traced_client(
        &server,
        "requests",
        &[python(), script.into(), "requests".into(), url.into()],
    );
}

#[test]
fn node_request_carries_its_client_span() {
    require_tracing!();
    let server = echo_server();
    let url = server.url("/echo/node");
    check_traced_client(
        &server,
        "node",
        &[node(), fixture("node_client.js").into(), url.into()],
    );
}

#[test]
fn go_request_carries_its_client_span() {
    require_tracing!();
    let present = command_succeeds(Command::new("go").arg("version"));
    if !tool_available(present, "`go` is missing (apt-get install golang-go)") {
        return;
    }
    let dir = TempDir::new("go");
    let bin = build_go_client(&dir);
    let server = echo_server();
    let url = server.url("/echo/go");
    check_traced_client(&server, "go", &[bin.into_os_string(), url.into()]);
}

/// curl -> traced nginx (keep-alive upstream) -> echo server: the upstream request carries
/// the nginx CLIENT span's ids, in the trace of the nginx SERVER span.
#[test]
fn nginx_upstream_request_carries_its_client_span() {
    require_tracing!();
    let server = echo_server();
    let nginx = Server::nginx(
        "nginx_keepalive_proxy.conf",
        &[("UPSTREAM", server.port.to_string())],
        |_| {},
    );
    let mut agent = Agent::attach(&[nginx.pid()]);
    let c = curl(&[&nginx.url("/echo/nginx")]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);

    let tree = agent.collect(2);
    let head = received_head(&server, "nginx");
    tree.assert_names(&[(SERVER, "GET /echo/nginx"), (CLIENT, "GET /echo/nginx")]);
    let nginx_server = tree.find(SERVER, "GET /echo/nginx");
    let nginx_client = tree.find(CLIENT, "GET /echo/nginx");
    assert_injected(&tree, &head, nginx_client);
    eqnice!(
        tree,
        nginx_client.trace_id(),
        nginx_server.trace_id(),
        "the injected trace is the nginx SERVER span's"
    );
    tree.assert_child(nginx_server, nginx_client, "thread");
    check!(tree, agent.counter("inject_done") >= 1, "inject_done >= 1");
}

// ===== 2. an application's own context header is left alone =====

fn check_app_header(tag: &str, header: &str, name: &str) {
    let server = echo_server();
    let url = server.url(&format!("/echo/{tag}"));
    let (stopped, tree) = sonde_run(&["curl", "-sS", "-o", "/dev/null", "-H", header, &url]);
    assert!(
        stopped.status.success(),
        "sonde run failed:\n{}",
        stopped.stderr
    );
    let head = received_head(&server, tag);
    let (_, value) = header.split_once(':').expect("a header line");
    eqnice!(
        tree,
        header_values(&head, name),
        vec![value.trim()],
        "the app's {name} header, once, unchanged:\n{head}"
    );
    if name != "traceparent" {
        eqnice!(
            tree,
            header_values(&head, "traceparent"),
            Vec::<&str>::new(),
            "no traceparent next to the app's {name}:\n{head}"
        );
    }
    let count = |c: &str| stopped.counters.get(c).copied().unwrap_or(0);
    check!(
        tree,
        count("inject_app_header") >= 1,
        "inject_app_header >= 1"
    );
    eqnice!(tree, count("inject_done"), 0, "nothing injected");
}

#[test]
fn app_traceparent_is_left_alone() {
    require_tracing!();
    check_app_header(
        "app-tp",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "traceparent",
    );
}

#[test]
fn app_b3_is_left_alone() {
    require_tracing!();
    check_app_header(
        "app-b3",
        "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        "b3",
    );
}

// ===== 3. byte for byte, thousands of randomized writes =====

/// One write of the fuzz client.
struct Write {
    bytes: Vec<u8>,
    /// It begins a message (not a header piece or a body).
    start: bool,
}

/// What a connection's comparison found.
#[derive(Debug, Default, PartialEq)]
struct Compared {
    /// traceparent lines inserted (each at an allowed place).
    inserted: usize,
    /// Writes that begin a request with its whole head, left unchanged.
    left_alone: usize,
    /// The connection's first write got the line.
    first_injected: bool,
}

const TRACEPARENT_LINE_LEN: usize = "traceparent: 00-".len() + 32 + 1 + 16 + 1 + 2 + 2;

/// `traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\r\n` at the start of `b`.
fn is_traceparent_line(b: &[u8]) -> bool {
    b.get(..TRACEPARENT_LINE_LEN).is_some_and(|line| {
        let text = String::from_utf8_lossy(line);
        text.strip_prefix("traceparent: ")
            .and_then(|rest| rest.strip_suffix("\r\n"))
            .and_then(parse_traceparent)
            .is_some()
    })
}

/// Length of the request line (with its CRLF) at the start of `w`, when `w` begins with
/// `TOKEN SP target SP HTTP/1.d CRLF` and also holds the blank line ending the head.
fn request_line_with_whole_head(w: &[u8]) -> Option<usize> {
    let end = w.windows(2).position(|p| p == b"\r\n")?;
    let line = w.get(..end)?;
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none()
        && !method.is_empty()
        && method.iter().all(u8::is_ascii_uppercase)
        && !target.is_empty()
        && target.iter().all(|b| b.is_ascii_graphic())
        && version.len() == 8
        && version.starts_with(b"HTTP/1.")
        && version[7].is_ascii_digit();
    let whole_head = w.windows(4).any(|p| p == b"\r\n\r\n");
    (well_formed && whole_head).then_some(end + 2)
}

/// Whether the head at the start of `w` names a trace context header already.
fn has_context_header(w: &[u8]) -> bool {
    let head_end = w
        .windows(4)
        .position(|p| p == b"\r\n\r\n")
        .unwrap_or(w.len());
    String::from_utf8_lossy(&w[..head_end])
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .any(|(name, _)| {
            let n = name.to_ascii_lowercase();
            n == "traceparent" || n == "b3" || n.starts_with("x-b3-") || n == "uber-trace-id"
        })
}

/// A connection's first write that must get the line whatever the limits of the
/// program: a common method, a head of at most 1 KiB, whole, with no context header.
fn plainly_injectable(first: &Write) -> bool {
    const METHODS: [&[u8]; 7] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
    ];
    let head_len = first.bytes.windows(4).position(|p| p == b"\r\n\r\n");
    first.start
        && request_line_with_whole_head(&first.bytes).is_some()
        && METHODS.iter().any(|m| first.bytes.starts_with(m))
        && head_len.is_some_and(|n| n + 4 <= 1024)
        && !has_context_header(&first.bytes)
}

fn excerpt(b: &[u8], at: usize) -> String {
    let from = at.saturating_sub(40);
    let to = (at + 80).min(b.len());
    format!("{:?}", String::from_utf8_lossy(&b[from.min(to)..to]))
}

/// `received` must be the writes in order, with traceparent lines only right after the
/// request line of a write that starts a message, holds its whole head and has no context
/// header of its own, at most one per such write; nothing else may differ.
fn compare_connection(writes: &[Write], received: &[u8]) -> Result<Compared, String> {
    let mut got = Compared::default();
    let mut at = 0; // into `received`
    let mut sent = 0; // bytes of `writes` consumed, for messages
    let expect = |part: &[u8], at: &mut usize, sent: &mut usize| -> Result<(), String> {
        let end = *at + part.len();
        if received.get(*at..end) != Some(part) {
            let diff = (0..part.len())
                .find(|&i| received.get(*at + i) != part.get(i))
                .unwrap_or(0);
            return Err(format!(
                "differs at sent byte {} (received byte {}): sent {} received {}",
                *sent + diff,
                *at + diff,
                excerpt(part, diff),
                excerpt(received, *at + diff)
            ));
        }
        *at = end;
        *sent += part.len();
        Ok(())
    };
    for (i, w) in writes.iter().enumerate() {
        let line = w
            .start
            .then(|| request_line_with_whole_head(&w.bytes))
            .flatten();
        let Some(line_len) = line else {
            expect(&w.bytes, &mut at, &mut sent)?;
            continue;
        };
        expect(&w.bytes[..line_len], &mut at, &mut sent)?;
        let rest = &w.bytes[line_len..];
        let tail = &received[at..];
        let inserted = is_traceparent_line(tail)
            && rest.get(..TRACEPARENT_LINE_LEN) != tail.get(..TRACEPARENT_LINE_LEN);
        if inserted {
            if has_context_header(&w.bytes) {
                return Err(format!(
                    "traceparent inserted at received byte {at} although the request has \
                     its own context header: {}",
                    excerpt(&w.bytes, 0)
                ));
            }
            got.inserted += 1;
            got.first_injected |= i == 0;
            at += TRACEPARENT_LINE_LEN;
        } else {
            got.left_alone += 1;
        }
        expect(rest, &mut at, &mut sent)?;
    }
    if at != received.len() {
        return Err(format!(
            "received {} bytes more than sent: {}",
            received.len() - at,
            excerpt(received, at)
        ));
    }
    Ok(got)
}

fn hex_decode(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ascii hex");
            u8::from_str_radix(text, 16).expect("hex digits")
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

const FUZZ_CONNECTIONS: usize = 300;

#[test]
fn randomized_writes_arrive_byte_for_byte() {
    require_tracing!();
    let seed: u64 = std::env::var("SONDE_INJECT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_unix_nanos() % 1_000_000_007);
    eprintln!("inject fuzz seed {seed} (rerun with SONDE_INJECT_SEED={seed})");

    let dir = TempDir::new("fuzz");
    let port = free_port();
    let recorded = dir.join("received.jsonl");
    let mut cmd = Command::new(python());
    cmd.arg(fixture("inject_record_server.py"))
        .arg(port.to_string())
        .arg(&recorded);
    let recorder = Server::spawn("inject_record_server.py", cmd, port, TempDir::new("rec"));
    // The readiness probe of Server::spawn is a connection too: it is recorded, empty.
    let sent_path = dir.join("sent.json");
    let mut agent = AgentCmd::run(&[
        python(),
        fixture("inject_fuzz_client.py").into(),
        seed.to_string().into(),
        port.to_string().into(),
        FUZZ_CONNECTIONS.to_string().into(),
        sent_path.clone().into(),
    ])
    .output("none")
    .spawn_unready();
    let stopped = agent.wait_exit_ok(Duration::from_secs(120), "sonde run of the fuzz client");

    let sent = read_json(&sent_path);
    let connections = sent["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), FUZZ_CONNECTIONS, "the client's record");
    let lines = || {
        std::fs::read_to_string(&recorded)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect::<Vec<Value>>()
    };
    // Every client connection was closed by the server before the client moved on, so
    // every one is recorded; the probe connection may be one more.
    let received: std::collections::HashMap<u64, Vec<u8>> = lines()
        .iter()
        .map(|l| {
            let port = l["port"].as_u64().expect("port");
            (port, hex_decode(l["hex"].as_str().expect("hex")))
        })
        .collect();

    let mut total = Compared::default();
    let mut requests = 0;
    let mut plain_first = 0;
    let mut failures = Vec::new();
    for conn in connections {
        let port = conn["port"].as_u64().expect("port");
        let writes: Vec<Write> = conn["writes"]
            .as_array()
            .expect("writes")
            .iter()
            .map(|w| Write {
                bytes: hex_decode(w["hex"].as_str().expect("hex")),
                start: w["start"].as_bool().expect("start"),
            })
            .collect();
        requests += writes.iter().filter(|w| w.start).count();
        plain_first += usize::from(writes.first().is_some_and(plainly_injectable));
        let Some(got) = received.get(&port) else {
            failures.push(format!("connection from port {port}: nothing recorded"));
            continue;
        };
        match compare_connection(&writes, got) {
            Ok(c) => {
                total.inserted += c.inserted;
                total.left_alone += c.left_alone;
                // The first request of every new connection gets one.
                if !c.first_injected && writes.first().is_some_and(plainly_injectable) {
                    failures.push(format!(
                        "connection from port {port}: no traceparent in its first request {}",
                        excerpt(&writes[0].bytes, 0)
                    ));
                }
            }
            Err(e) => failures.push(format!("connection from port {port}: {e}")),
        }
    }
    let done = stopped.counters.get("inject_done").copied().unwrap_or(0);
    eprintln!(
        "inject fuzz seed {seed}: {FUZZ_CONNECTIONS} connections, {requests} messages, \
         {} traceparent insertions ({plain_first} connections began with a plain \
         request, each must have one), {} whole-head request writes left alone; counters: \
         inject_done {done}, inject_skipped {}, inject_app_header {}, inject_failed {}",
        total.inserted,
        total.left_alone,
        stopped.counters.get("inject_skipped").copied().unwrap_or(0),
        stopped
            .counters
            .get("inject_app_header")
            .copied()
            .unwrap_or(0),
        stopped.counters.get("inject_failed").copied().unwrap_or(0),
    );
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {FUZZ_CONNECTIONS} connections failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total.inserted > 0, "seed {seed}: no insertion at all");
    assert!(
        plain_first > 0,
        "seed {seed}: no connection began with a plain request"
    );
    assert_eq!(
        total.inserted as u64, done,
        "seed {seed}: insertions seen on the wire = the agent's inject_done"
    );
    drop(recorder);
}

/// The comparison itself must catch what it exists for.
#[test]
fn comparison_accepts_only_allowed_insertions() {
    let head = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let tp = b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n";
    let with_tp = [&head[..17], &tp[..], &head[17..]].concat();
    let one = |bytes: &[u8], start: bool| Write {
        bytes: bytes.to_vec(),
        start,
    };

    let writes = [one(&head, true)];
    assert_eq!(
        compare_connection(&writes, &head),
        Ok(Compared {
            inserted: 0,
            left_alone: 1,
            first_injected: false,
        })
    );
    assert_eq!(
        compare_connection(&writes, &with_tp),
        Ok(Compared {
            inserted: 1,
            left_alone: 0,
            first_injected: true,
        })
    );
    // Two lines, a line after a header, a line in a body write, a changed byte, a
    // malformed line, a lost byte: all rejected.
    let twice = [&head[..17], &tp[..], &tp[..], &head[17..]].concat();
    assert!(compare_connection(&writes, &twice).is_err());
    let late = [&head[..26], &tp[..], &head[26..]].concat();
    assert!(compare_connection(&writes, &late).is_err());
    let body = [one(&head, false)];
    assert!(compare_connection(&body, &with_tp).is_err());
    let mut changed = head.clone();
    changed[5] = b'b';
    assert!(compare_connection(&writes, &changed).is_err());
    let bad = [&head[..17], &tp.to_ascii_uppercase()[..], &head[17..]].concat();
    assert!(compare_connection(&writes, &bad).is_err());
    assert!(compare_connection(&writes, &head[1..]).is_err());
    // The app's own header: an insertion next to it is rejected.
    let own = b"GET /a HTTP/1.1\r\nB3: 1\r\n\r\n".to_vec();
    let own_tp = [&own[..17], &tp[..], &own[17..]].concat();
    assert!(compare_connection(&[one(&own, true)], &own_tp).is_err());
}

// ===== 4. FIONREAD stays right on traced client sockets =====

#[test]
fn fionread_never_reads_zero_on_traced_keepalive_sockets() {
    require_tracing!();
    let stopped = fionread_run(0.0);
    // The sockets were enrolled: each connection's first request got a header.
    let done = stopped.counters.get("inject_done").copied().unwrap_or(0);
    assert!(done >= 3, "inject_done {done} < 3\n{}", stopped.stderr);
}

/// The same, with a pause before each request: the agent puts each idle keep-alive socket
/// back into the sockhash, so every request after the first goes through the risky state
/// (enrolled while idle) and its response must still read right.
#[test]
fn fionread_stays_right_on_reenrolled_keepalive_sockets() {
    require_tracing!();
    let stopped = fionread_run(0.2);
    let reenrolled = stopped.counters.get("reenrolled").copied().unwrap_or(0);
    let done = stopped.counters.get("inject_done").copied().unwrap_or(0);
    assert!(
        reenrolled >= 6 && done >= 9,
        "expected re-enrolled sockets to carry headers: reenrolled {reenrolled}, inject_done \
         {done}\n{}",
        stopped.stderr
    );
}

/// Runs the FIONREAD client (3 keep-alive connections, 10 B / 100 KB / 10 MB responses)
/// under `sonde run` and checks every read; returns the agent's exit.
fn fionread_run(pause_s: f64) -> Stopped {
    let server = echo_server();
    let dir = TempDir::new("fionread");
    let report_path = dir.join("report.json");
    let conns = 3;
    let sizes = ["10", "100000", "10000000", "10", "100000", "10000000", "10"];
    let mut command: Vec<std::ffi::OsString> = vec![
        python(),
        fixture("inject_client.py").into(),
        "fionread".into(),
        server.port.to_string().into(),
        conns.to_string().into(),
        report_path.clone().into(),
    ];
    command.extend(sizes.iter().map(Into::into));
    let mut agent = AgentCmd::run(&command)
        .output("none")
        .env("SONDE_TEST_PAUSE_S", &pause_s.to_string())
        .spawn_unready();
    let stopped = agent.wait_exit_ok(Duration::from_secs(90), "the FIONREAD client");
    let report = read_json(&report_path);
    let context = format!("report: {report}\nagent stderr:\n{}", stopped.stderr);
    assert_eq!(
        report["fionread_zero"].as_array().map(Vec::len),
        Some(0),
        "FIONREAD said 0 on a readable socket; {context}"
    );
    assert_eq!(
        report["short_reads"].as_array().map(Vec::len),
        Some(0),
        "{context}"
    );
    assert_eq!(
        report["bad_bodies"].as_array().map(Vec::len),
        Some(0),
        "{context}"
    );
    assert_eq!(
        report["responses"].as_u64(),
        Some((conns * sizes.len()) as u64),
        "{context}"
    );
    let elapsed =
        report["elapsed"].as_f64().unwrap_or(f64::MAX) - pause_s * (conns * sizes.len()) as f64;
    assert!(
        elapsed < 20.0,
        "the responses took {elapsed:.1} s (a stall?); {context}"
    );
    stopped
}

// ===== 5. a traced nginx over keep-alive upstreams: complete, byte-exact, no stall =====

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + n) % 251) as u8).collect()
}

#[test]
fn nginx_keepalive_upstream_large_responses_are_exact() {
    require_tracing!();
    let server = echo_server();
    let nginx = Server::nginx(
        "nginx_keepalive_proxy.conf",
        &[("UPSTREAM", server.port.to_string())],
        |_| {},
    );
    let mut agent = AgentCmd::attach(&[nginx.pid()]).output("none").start();
    let dir = TempDir::new("nginx-large");
    let out = dir.join("body");
    let out_arg = out.to_str().expect("utf-8 temp path");
    let started = Instant::now();
    let mut requests = 0;
    for round in 0..3 {
        for n in [10usize, 100_000, 10_000_000] {
            let t0 = Instant::now();
            let c = curl(&[
                "--max-time",
                "10",
                "-o",
                out_arg,
                &nginx.url(&format!("/bytes/{n}")),
            ]);
            let took = t0.elapsed();
            assert!(
                c.status.success() && c.writeouts[0].http_code == 200,
                "round {round} /bytes/{n} failed after {took:?}: {}\n{}",
                c.stderr,
                nginx.logs()
            );
            let body = std::fs::read(&out).expect("curl's body file");
            assert_eq!(body.len(), n, "round {round} /bytes/{n}: size");
            assert!(body == pattern(n), "round {round} /bytes/{n}: bytes differ");
            assert!(
                took < Duration::from_secs(5),
                "round {round} /bytes/{n} took {took:?}"
            );
            requests += 1;
        }
    }
    let total = started.elapsed();
    assert!(
        total < Duration::from_secs(20),
        "{requests} responses took {total:?}"
    );
    // nginx reused its upstream connections (the keep-alive path was exercised).
    let upstream_conns = std::fs::read_to_string(server.dir.join("server.out"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("conn "))
        .count();
    // One connection is Server::spawn's readiness probe.
    assert!(
        upstream_conns <= 2,
        "{upstream_conns} upstream connections for {requests} requests: keep-alive unused"
    );
    agent.stop();
    assert!(
        agent.counter("inject_done") >= 1,
        "the first upstream request was injected"
    );
}

// ===== 6. killing the agent leaves open connections working =====

/// The fixture's `keepalive` mode: one connection; request 0 when told to, then (after
/// `pause_s` each) requests 1..=after on the same connection when told to resume.
struct KeepAliveClient {
    proc: Proc,
    _dir: TempDir,
    go: std::path::PathBuf,
    phase: std::path::PathBuf,
    resume: std::path::PathBuf,
}

impl KeepAliveClient {
    fn spawn(server: &Server, tag: &str, after: usize, pause_s: f64) -> Self {
        let dir = TempDir::new(tag);
        let (go, phase, resume) = (dir.join("go"), dir.join("phase"), dir.join("resume"));
        let mut cmd = Command::new(python());
        cmd.arg(fixture("inject_client.py"))
            .arg("keepalive")
            .arg(server.port.to_string())
            .arg(tag)
            .args([&go, &phase, &resume])
            .arg(after.to_string())
            .env("SONDE_TEST_PAUSE_S", pause_s.to_string());
        Self {
            proc: Proc::spawn(cmd),
            _dir: dir,
            go,
            phase,
            resume,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Opens the connection, sends request 0 and waits until its response is read.
    fn first_request(&self) {
        std::fs::write(&self.go, b"").expect("go file");
        assert!(
            wait_until(Duration::from_secs(20), || self.phase.exists()),
            "the client's first request did not finish"
        );
    }

    /// Sends the rest; the client's JSON report (`local_port`, `statuses`).
    fn finish(self, when: &str) -> Value {
        std::fs::write(&self.resume, b"").expect("resume file");
        let out = self.proc.output();
        assert!(
            out.status.success(),
            "the client failed {when}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the client's JSON report")
    }
}

#[test]
fn killed_agent_leaves_keepalive_connection_working() {
    require_tracing!();
    let server = echo_server();
    let after = 3;
    let client = KeepAliveClient::spawn(&server, "ka", after, 0.0);
    let mut agent = AgentCmd::attach(&[client.pid()]).output("none").start();
    client.first_request();
    agent.kill_hard();
    let report = client.finish("after the agent was killed");
    assert_eq!(
        report["statuses"],
        serde_json::json!([200, 200, 200, 200]),
        "{report}"
    );

    let first = received_head(&server, "ka-0");
    assert_eq!(
        header_values(&first, "traceparent").len(),
        1,
        "the request made while traced carries one traceparent:\n{first}"
    );
    for i in 1..=after {
        let head = received_head(&server, &format!("ka-{i}"));
        assert!(
            header_values(&head, "traceparent").is_empty(),
            "request {i} after the agent died carries a traceparent:\n{head}"
        );
    }
    // All on the one connection the client opened.
    let port = report["local_port"].as_u64().expect("local_port");
    let conns = std::fs::read_to_string(server.dir.join("server.out")).unwrap_or_default();
    assert_eq!(
        conns
            .lines()
            .filter(|l| *l == format!("conn {port}"))
            .count(),
        1,
        "one connection from {port}:\n{conns}"
    );
}

// ===== 7. the TCP header option: context where no header can go =====

/// A request whose head is too large to edit (over 2 KiB) gets no header, but a TCP header
/// option carries its client span to the server. The server is traced by ANOTHER agent:
/// two agents share nothing, so only the option can link the spans.
#[test]
fn tcp_option_carries_the_context_when_no_header_can() {
    require_tracing!();
    let server = echo_server();
    let mut server_agent = Agent::attach(&[server.pid()]);
    let header = format!("X-Big: {}", "x".repeat(3000));
    let url = server.url("/echo/big");
    let mut client_agent =
        AgentCmd::run(&["curl", "-sS", "-o", "/dev/null", "-H", &header, &url]).spawn_unready();
    let client = client_agent.wait_exit_ok(Duration::from_secs(30), "curl");
    let client_tree = SpanTree::new(client.spans.clone());
    let client_span = client_tree.find(CLIENT, "GET /echo/big");
    client_tree.assert_attr(client_span, "sonde.inject", "skipped");
    assert!(
        client_agent.counter("tcp_option_sent") >= 1,
        "no TCP option sent:\n{}",
        client.stderr
    );
    assert!(
        !received_head(&server, "big").contains("traceparent"),
        "nothing is inserted into an oversized head"
    );

    let server_tree = server_agent.collect(1);
    let server_span = server_tree.find(SERVER, "GET /echo/big");
    server_tree.assert_attr(server_span, "sonde.parent.source", "tcp_option");
    assert_eq!(server_span.trace_id(), client_span.trace_id(), "one trace");
    assert_eq!(
        server_span.parent_id(),
        Some(client_span.span_id()),
        "the server span is the client span's child"
    );
}

// ===== 8. connections opened before the agent attached =====

/// A keep-alive connection opened (and used) before the agent attached: sock_ops never saw
/// it connect, so it has no transmit callback. After its first exchange under the agent,
/// the tcp iterator arms it and it is enrolled like any other idle socket: the requests
/// after that carry a traceparent.
#[test]
fn connection_opened_before_attach_gets_traceparent_after_arming() {
    require_tracing!();
    let server = echo_server();
    let after = 4;
    let client = KeepAliveClient::spawn(&server, "pre", after, 0.3);
    client.first_request();
    // The connection exists and has carried a request; only now does the agent attach.
    let mut agent = AgentCmd::attach(&[client.pid()]).output("none").start();
    let report = client.finish("with the agent attached late");
    assert_eq!(
        report["statuses"],
        serde_json::json!([200, 200, 200, 200, 200]),
        "{report}"
    );
    let stopped = agent.stop_unchecked();
    assert!(
        agent.counter("inject_armed_late") >= 1,
        "no socket armed late:\n{}",
        stopped.stderr
    );

    // Request 0 went before the agent, request 1 under it but before arming: no header;
    // from request 2 on, headers.
    for early in ["pre-0", "pre-1"] {
        let head = received_head(&server, early);
        assert!(
            header_values(&head, "traceparent").is_empty(),
            "{early}: {head}"
        );
    }
    let with_header = (2..=after)
        .filter(|i| {
            let head = received_head(&server, &format!("pre-{i}"));
            header_values(&head, "traceparent").len() == 1
        })
        .count();
    assert!(
        with_header >= 2,
        "only {with_header} of requests 2..={after} carried a traceparent\n{}",
        stopped.stderr
    );
}
