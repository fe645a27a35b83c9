//! Message shapes that break naive HTTP/1 capture: pipelining, requests split across
//! many syscalls, large bodies (sendfile, chunked, uploads), responses without a body,
//! and a response cut short by a close.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;

/// Scenario 3: three requests in one send() on a keep-alive connection; each span is
/// paired with its own response.
#[test]
fn pipelined_requests_pair_with_their_responses() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    let report = raw_client(&json!({
        "port": server.port,
        "steps": [
            {"send": "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\nGET /size/777 HTTP/1.1\r\nHost: x\r\n\r\n"},
            {"read": 3},
        ]
    }));
    let statuses: Vec<i64> = report["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|r| r["status"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [200, 404, 200], "{report}");

    let tree = agent.collect(3);
    tree.assert_names(&[
        (SERVER, "GET /a"),
        (SERVER, "GET /missing"),
        (SERVER, "GET /size/777"),
    ]);
    let port = report["local_port"].to_string();
    for (name, code, size) in [
        ("GET /a", "200", "hello /a\n".len()),
        ("GET /missing", "404", "not found\n".len()),
        ("GET /size/777", "200", 777),
    ] {
        let s = tree.find(SERVER, name);
        tree.assert_root(s);
        tree.assert_attr(s, "http.response.status_code", code);
        tree.assert_attr(s, "http.response.body.size", &size.to_string());
        tree.assert_attr(s, "client.port", &port);
        eqnice!(
            tree,
            s.status_code(),
            0,
            "404 on a server is not an error: {name}"
        );
    }
    let a = tree.find(SERVER, "GET /a");
    let m = tree.find(SERVER, "GET /missing");
    let z = tree.find(SERVER, "GET /size/777");
    check!(
        tree,
        a.end() <= m.end() && m.end() <= z.end(),
        "responses were written in request order"
    );
}

/// Scenario 4: a request header sent 3 bytes at a time with pauses -> one correct span.
#[test]
fn request_split_across_many_syscalls() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    let report = raw_client(&json!({
        "port": server.port,
        "steps": [
            {"send": "GET /split/path?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-writer/1.0\r\nAccept: */*\r\n\r\n",
             "chunk": 3, "delay": 0.01},
            {"read": 1},
        ]
    }));
    assert_eq!(report["responses"][0]["status"], 200, "{report}");
    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /split/path")]);
    let s = tree.find(SERVER, "GET /split/path");
    tree.assert_attr(s, "url.query", "q=REDACTED");
    tree.assert_attr(s, "user_agent.original", "slow-writer/1.0");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(
        s,
        "http.response.body.size",
        &"hello /split/path\n".len().to_string(),
    );
    // The span starts at the first request byte read: ~30 sends 10 ms apart.
    check!(
        tree,
        s.duration() >= Duration::from_millis(200),
        "the span covers the slow request ({:?})",
        s.duration()
    );
    check!(
        tree,
        s.duration() < Duration::from_secs(5),
        "and ends with the response ({:?})",
        s.duration()
    );
}

/// Scenario 5a: nginx sends a 10 MiB file with sendfile.
#[test]
fn nginx_sendfile_ten_mib() {
    require_tracing!();
    const SIZE: usize = 10 * 1024 * 1024;
    let server = Server::nginx("nginx_static.conf", &[], |www| {
        std::fs::write(www.join("big.bin"), vec![0x5a; SIZE]).expect("writing big.bin");
    });
    let mut agent = Agent::attach(&[server.pid()]);
    let c = curl(&["-o", "/dev/null", &server.url("/big.bin")]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(c.writeouts[0].size_download, SIZE as u64);
    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /big.bin")]);
    let s = tree.find(SERVER, "GET /big.bin");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.response.body.size", &SIZE.to_string());
    eqnice!(
        tree,
        s.res_attr("service.name").as_deref(),
        Some("nginx"),
        "service.name"
    );
}

/// Scenario 5a': nginx answers two keep-alive requests with sendfile bodies, and the
/// client keeps the connection open. The kernel folds payload-less egress into a per-socket
/// total instead of reporting it: the first body is caught up by the second request's
/// record, the second (nothing follows it) by the agent reading the kernel's total once the
/// connection is quiet. Both spans must arrive while the connection is open, with their
/// real sizes and end times.
#[test]
fn nginx_sendfile_keep_alive_then_quiet() {
    require_tracing!();
    let server = Server::nginx("nginx_static.conf", &[], |www| {
        std::fs::write(www.join("a.bin"), vec![0x61; 300_000]).expect("writing a.bin");
        std::fs::write(www.join("b.bin"), vec![0x62; 1024]).expect("writing b.bin");
    });
    let mut agent = Agent::attach(&[server.pid()]);
    let mut conn = tcp(server.port);
    let mut exchange = |path: &str, size: usize| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        conn.write_all(req.as_bytes()).expect("send");
        let mut got = read_head(&mut conn);
        let head_end = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        read_more(&mut conn, &mut got, |got| got.len() >= head_end + size);
        assert_eq!(got.len(), head_end + size, "exactly one response");
        now_unix_nanos()
    };
    let a_done = exchange("/a.bin", 300_000);
    let b_done = exchange("/b.bin", 1024);
    let t0 = Instant::now();
    let n = agent.wait_for_spans(2, Duration::from_secs(5));
    let waited = t0.elapsed();
    drop(conn);
    let tree = agent.collect(2);
    check!(
        tree,
        n >= 2,
        "2 spans printed within 5 s while the connection was still open (got {n} after {waited:?})"
    );
    tree.assert_names(&[(SERVER, "GET /a.bin"), (SERVER, "GET /b.bin")]);
    for (name, size, done) in [
        ("GET /a.bin", 300_000, a_done),
        ("GET /b.bin", 1024, b_done),
    ] {
        let s = tree.find(SERVER, name);
        tree.assert_attr(s, "http.response.status_code", "200");
        tree.assert_attr(s, "http.response.body.size", &size.to_string());
        // The end is when the body was sent, not when the agent learnt of it.
        check!(
            tree,
            s.end() <= done,
            "{name} ends at {} ns, after the client had the whole body ({done} ns)",
            s.end()
        );
    }
    assert_prompt_and_none_timed_out(&tree, &agent, &["GET /a.bin", "GET /b.bin"]);
}

/// Scenario 5b: Node writes 3 MiB chunked (no Content-Length) and waits 400 ms before
/// the last write: the span ends after the last chunk, body size = wire bytes.
#[test]
fn node_chunked_three_mib() {
    require_tracing!();
    const SIZE: usize = 3 * 1024 * 1024;
    let server = Server::node();
    let mut agent = Agent::attach(&[server.pid()]);
    let resp = raw_get_close(server.port, &format!("/chunked/{SIZE}?delay_last=400"));
    let body_start = header_end(&resp);
    let head = String::from_utf8_lossy(&resp[..body_start]).to_lowercase();
    assert!(
        head.contains("transfer-encoding: chunked"),
        "node answered chunked:\n{head}"
    );
    let wire_body = resp.len() - body_start;
    assert!(wire_body > SIZE, "chunk framing adds bytes: {wire_body}");
    assert!(resp.ends_with(b"0\r\n\r\n"), "last chunk received");

    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, &format!("GET /chunked/{SIZE}"))]);
    let s = tree.find(SERVER, &format!("GET /chunked/{SIZE}"));
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.response.body.size", &wire_body.to_string());
    check!(
        tree,
        s.duration() >= Duration::from_millis(400),
        "the span ends after the delayed last chunk ({:?})",
        s.duration()
    );
    check!(
        tree,
        s.duration() < Duration::from_secs(10),
        "duration plausible ({:?})",
        s.duration()
    );
    eqnice!(
        tree,
        s.res_attr("service.name").as_deref(),
        Some("node_server"),
        "service.name is the script stem"
    );
}

/// Scenario 5c: a 5 MiB POST body with Content-Length (no `Expect: 100-continue`).
#[test]
fn post_five_mib_body() {
    require_tracing!();
    post_body(false);
}

/// Scenario 5c': the same upload the way curl does it by default for large bodies:
/// `Expect: 100-continue`, an interim `100 Continue`, then the final response.
#[test]
fn post_five_mib_body_with_expect_100_continue() {
    require_tracing!();
    post_body(true);
}

fn post_body(expect_continue: bool) {
    const SIZE: usize = 5 * 1024 * 1024;
    let server = Server::python();
    let dir = TempDir::new("upload");
    let file = dir.join("body.bin");
    std::fs::write(&file, vec![b'p'; SIZE]).expect("writing the body");
    let mut agent = Agent::attach(&[server.pid()]);
    let data = format!("@{}", file.display());
    let mut args = vec![
        "--data-binary",
        &data,
        "-H",
        "Content-Type: application/octet-stream",
    ];
    if !expect_continue {
        args.extend(["-H", "Expect:"]);
    }
    let url = server.url("/upload");
    args.push(&url);
    let c = curl(&args);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(
        String::from_utf8_lossy(&c.body),
        SIZE.to_string(),
        "server read the whole body"
    );

    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "POST /upload")]);
    let s = tree.find(SERVER, "POST /upload");
    tree.assert_attr(s, "http.request.method", "POST");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.request.body.size", &SIZE.to_string());
    tree.assert_attr(
        s,
        "http.response.body.size",
        &SIZE.to_string().len().to_string(),
    );
    eqnice!(tree, s.status_code(), 0, "status unset");
}

/// Scenario 6: HEAD, 204 and 304 on a kept-open connection: spans complete at once
/// (the agent must not wait for a body or for the request timeout).
#[test]
fn responses_without_body_complete_promptly() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    let mut conn = tcp(server.port);
    let mut exchange = |req: &str, expect_status: &str| {
        conn.write_all(req.as_bytes()).expect("send");
        let got = read_head(&mut conn);
        let head = String::from_utf8_lossy(&got);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {expect_status}")),
            "{head}"
        );
        assert!(got.ends_with(b"\r\n\r\n"), "no body bytes follow: {head}");
    };
    exchange("HEAD /size/5000 HTTP/1.1\r\nHost: x\r\n\r\n", "200");
    exchange("GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n", "204");
    exchange(
        "GET /status/304 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e\"\r\n\r\n",
        "304",
    );
    // The connection stays open: only a correct end-of-message decision completes these.
    let t0 = Instant::now();
    let n = agent.wait_for_spans(3, Duration::from_secs(5));
    let waited = t0.elapsed();
    drop(conn);
    let tree = agent.collect(3);
    check!(
        tree,
        n >= 3,
        "3 spans printed within 5 s while the connection was still open (got {n} after {waited:?})"
    );
    tree.assert_names(&[
        (SERVER, "HEAD /size/5000"),
        (SERVER, "GET /status/204"),
        (SERVER, "GET /status/304"),
    ]);
    for (name, code) in [
        ("HEAD /size/5000", "200"),
        ("GET /status/204", "204"),
        ("GET /status/304", "304"),
    ] {
        let s = tree.find(SERVER, name);
        tree.assert_attr(s, "http.response.status_code", code);
        tree.assert_attr(s, "http.response.body.size", "0");
        eqnice!(tree, s.status_code(), 0, "status unset for {name}");
    }
    assert_prompt_and_none_timed_out(
        &tree,
        &agent,
        &["HEAD /size/5000", "GET /status/204", "GET /status/304"],
    );
}

/// Scenario 7 (server side): headers announce 1000 bytes, 10 arrive, the server closes
/// -> the SERVER span is an error.
#[test]
fn server_closes_mid_response() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    let resp = raw_get_close(server.port, "/truncated");
    let start = header_end(&resp);
    assert_eq!(resp.len() - start, 10, "10 body bytes then close");
    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /truncated")]);
    let s = tree.find(SERVER, "GET /truncated");
    eqnice!(tree, s.status_code(), 2, "a response cut short is an error");
    tree.assert_attr(s, "http.response.status_code", "200");
    check!(
        tree,
        s.duration() < Duration::from_secs(5),
        "the close ends the span promptly ({:?})",
        s.duration()
    );
}

/// Reads until the first blank line; returns everything read, which may run past it (the
/// caller checks).
fn read_head(conn: &mut std::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    read_more(conn, &mut got, |got| {
        got.windows(4).any(|w| w == b"\r\n\r\n")
    });
    got
}

/// Appends what arrives on `conn` to `got` until `done(got)`; the server closing first fails.
fn read_more(conn: &mut std::net::TcpStream, got: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let mut buf = [0u8; 65536];
    while !done(got) {
        let n = std::io::Read::read(conn, &mut buf).expect("read");
        assert!(n > 0, "server closed");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Each named SERVER span took under a second, and no request timed out: the response's
/// end was decided from the bytes, not by the request timeout.
fn assert_prompt_and_none_timed_out(tree: &SpanTree, agent: &Agent, names: &[&str]) {
    for name in names {
        let s = tree.find(SERVER, name);
        check!(
            tree,
            s.duration() < Duration::from_secs(1),
            "{name} took {:?}",
            s.duration()
        );
    }
    eqnice!(
        tree,
        agent.counter("requests_timed_out"),
        0,
        "no request timed out"
    );
}
