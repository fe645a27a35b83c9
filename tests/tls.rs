//! See inside TLS: uprobes on the TLS library (OpenSSL's `SSL_read`/`SSL_write` and
//! their `_ex` forms, GnuTLS's `gnutls_record_recv`/`send`, Go's `(*tls.Conn).Read`/
//! `Write`, and each one's handshake) turn HTTPS exchanges into the spans plaintext
//! HTTP/1 gives, tied to the TCP connection underneath (same 4-tuple, same parents,
//! same-host joins), while the ciphertext the socket hooks see is recognised and skipped,
//! never parsed.
//!
//! What every test here holds the agent to:
//! - a span built from TLS plaintext is the plaintext span (name, kind, status, body
//!   sizes, `network.peer.*`, `server.*`, `client.*`, resource) with `url.scheme` =
//!   `https`, `sonde.tls.library` = `openssl`, `gnutls` or `go`, and on a CLIENT span
//!   `url.full` = `https://localhost:<port>/path?query` (the request's Host names the
//!   port);
//! - both ends traced by one agent: the SERVER span is the CLIENT span's child through the
//!   TCP header option the client's write carried (`tcp_option`: the client span is decided
//!   when the library's write call starts, before its ciphertext leaves); nothing can be
//!   inserted into TLS, so never `injected`. An incoming `traceparent` inside TLS is read
//!   from the plaintext and continued (`header`), as on a plaintext socket.
//! - the exit report: `http_desyncs` = 0 and `unknown_protocol_connections` = 0 (the
//!   ciphertext is never parsed), `tls_ciphertext_records` > 0 (ciphertext records the
//!   socket hooks skipped), `tls_unmapped_calls` = 0 (no plaintext whose connection was
//!   unknown).
//!
//! Libraries met: libssl.so.3 (Python `ssl`, curl, nginx), OpenSSL linked into the node
//! binary (its `SSL_*` are dynamic symbols of `/usr/bin/node`), libgnutls.so.30 (wget),
//! Go's crypto/tls in Go programs built with and without symbols and DWARF, and a
//! statically linked, stripped client where no symbol names OpenSSL at all. Certificates
//! are made per test (`util/tls.rs`, the `openssl` CLI); every URL names `localhost` on
//! 127.0.0.1.

mod util;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use util::go::go_available;
use util::tls::*;
use util::*;

/// What a span built from TLS plaintext says of its session: `sonde.tls.library`, and
/// `tls.protocol.version` when the library's probe reads it.
struct Tls {
    library: &'static str,
    version: Option<&'static str>,
    /// How a server span joins its client's on this host when both are traced.
    join: &'static [&'static str],
}

/// OpenSSL 3.0 (libssl.so.3, node's own) between peers that negotiate TLS 1.3.
const OPENSSL: Tls = Tls {
    library: "openssl",
    version: Some("1.3"),
    join: &["tcp_option"],
};
/// OpenSSL talking to Debian's nginx 1.22, whose default `ssl_protocols` stop at TLSv1.2
/// (TLSv1.3 joined the default in nginx 1.23.4).
const OPENSSL_NGINX: Tls = Tls {
    version: Some("1.2"),
    ..OPENSSL
};
/// Go's crypto/tls, TLS 1.3 (`Conn.vers`). A Go server reads one byte in the background
/// while its handler runs (net/http's connReader), so a kept-alive request's first byte
/// can come in a read of its own: the kernel then sees no request start to continue the
/// TCP option's context on, and userspace joins the span by the connection instead.
const GO: Tls = Tls {
    library: "go",
    version: Some("1.3"),
    join: &["tcp_option", "local_peer"],
};
/// GnuTLS: its session struct is private, so the version is not read.
const GNUTLS: Tls = Tls {
    library: "gnutls",
    version: None,
    join: &["tcp_option"],
};

/// A span built from OpenSSL's plaintext, TLS 1.3.
fn assert_tls_span(tree: &SpanTree, s: &Value) {
    assert_tls_span_from(tree, s, &OPENSSL);
}

/// A span built from TLS plaintext: `https`, the library, and the version when known.
fn assert_tls_span_from(tree: &SpanTree, s: &Value, tls: &Tls) {
    tree.assert_attr(s, "url.scheme", "https");
    tree.assert_attr(s, "sonde.tls.library", tls.library);
    match tls.version {
        Some(version) => {
            tree.assert_attr(s, "tls.protocol.name", "tls");
            tree.assert_attr(s, "tls.protocol.version", version);
        }
        None => check!(
            tree,
            s.attr("tls.protocol.version").is_none() && s.attr("tls.protocol.name").is_none(),
            "{}: {} gives no version",
            s.summary(),
            tls.library
        ),
    }
}

/// A span built from plaintext on the socket: `http`, no TLS library.
fn assert_plaintext_span(tree: &SpanTree, s: &Value) {
    tree.assert_attr(s, "url.scheme", "http");
    check!(
        tree,
        s.attr("sonde.tls.library").is_none(),
        "{} came off a plaintext socket: no sonde.tls.library",
        s.summary()
    );
}

/// `curl -sS --max-time 30 --cacert CA <write-out> URLs...` as arguments.
fn curl_https_args(certs: &Certs, urls: &[String]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-sS", "--max-time", "30", "--cacert"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(certs.ca.clone().into_os_string());
    args.extend(curl_writeout_args().map(OsString::from));
    args.extend(urls.iter().map(OsString::from));
    args
}

/// `<status> <bytes>` lines a fixture client printed.
/// The three requests the HTTPS clients send over one keep-alive connection, what each is
/// answered (status, body bytes), and the spans they make on both ends.
const THREE_PATHS: [&str; 3] = ["/size/999", "/hello", "/missing"];
const THREE_ANSWERS: [(u16, u64); 3] = [(200, 999), (200, 13), (404, 10)];
const THREE_SPANS: [(i64, &str); 6] = [
    (CLIENT, "GET /size/999"),
    (SERVER, "GET /size/999"),
    (CLIENT, "GET /hello"),
    (SERVER, "GET /hello"),
    (CLIENT, "GET /missing"),
    (SERVER, "GET /missing"),
];

fn status_lines(out: &std::process::Output, what: &str) -> Vec<(u16, u64)> {
    assert_succeeded(what, out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u64>);
            match (f.next(), f.next()) {
                (Some(Ok(status)), Some(Ok(bytes))) => (
                    u16::try_from(status).unwrap_or_else(|_| panic!("{what}: status {l:?}")),
                    bytes,
                ),
                _ => panic!("{what} printed {l:?}, not `<status> <bytes>`"),
            }
        })
        .collect()
}

/// One HTTPS exchange traced at both ends by one agent: the CLIENT span is a root, the
/// SERVER span its child through the TCP option its request carried; both `https` from
/// `library`, with the status and body size the client got, and the same server address
/// and port.
fn assert_joined_exchange(
    tree: &SpanTree,
    path: &str,
    port: u16,
    (status, body): (u16, u64),
    tls: &Tls,
) -> (Value, Value) {
    let name = format!("GET {path}");
    let client = tree.find(CLIENT, &name);
    let server = tree.find(SERVER, &name);
    tree.assert_root(client);
    let source = server.attr_str("sonde.parent.source").unwrap_or_default();
    check!(
        tree,
        tls.join.contains(&source.as_str()),
        "{}: joined by {source:?}, expected one of {:?}",
        server.summary(),
        tls.join
    );
    tree.assert_child(client, server, &source);
    for s in [client, server] {
        assert_tls_span_from(tree, s, tls);
        tree.assert_attr(s, "http.request.method", "GET");
        tree.assert_attr(s, "url.path", path);
        tree.assert_attr(s, "network.protocol.version", "1.1");
        tree.assert_attr(s, "http.response.status_code", &status.to_string());
        tree.assert_attr(s, "http.response.body.size", &body.to_string());
        tree.assert_attr(s, "server.address", "localhost");
        tree.assert_attr(s, "server.port", &port.to_string());
    }
    tree.assert_attr(client, "url.full", &https_url(port, path));
    tree.assert_attr(client, "network.peer.address", "127.0.0.1");
    tree.assert_attr(client, "network.peer.port", &port.to_string());
    tree.assert_attr(server, "client.address", "127.0.0.1");
    tree.assert_attr(server, "network.peer.address", "127.0.0.1");
    eqnice!(
        tree,
        server.attr_str("client.port"),
        server.attr_str("network.peer.port"),
        "the server's peer is the client"
    );
    let client_error = if status >= 400 { 2 } else { 0 };
    eqnice!(
        tree,
        client.status_code(),
        client_error,
        "CLIENT {name}: 4xx is a client error, else unset"
    );
    eqnice!(
        tree,
        server.status_code(),
        0,
        "SERVER {name}: only 5xx is a server error"
    );
    (client.clone(), server.clone())
}

fn service(s: &Value) -> Option<String> {
    s.res_attr("service.name")
}

// ===== Python `ssl` server, curl =====

/// A Python `ssl` server attached by pid, and curl (held until the agent attached, so
/// traced from its first request): two keep-alive requests and a 404 on one connection.
/// Three CLIENT spans from curl, each the parent of the Python SERVER span of the same
/// request (`tcp_option`), all `https` from OpenSSL.
#[test]
fn python_tls_server_and_curl_client_one_trace() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let server = py_tls_server(&certs);
    let paths = ["/size/100", "/ka/2", "/missing"];
    let urls: Vec<String> = paths.iter().map(|p| https_url(server.port, p)).collect();
    let gate = Gate::new();
    let client = gate.spawn("curl", &curl_https_args(&certs, &urls));
    let mut agent = Agent::attach(&[server.pid(), client.pid()]);
    gate.open();
    let c = parse_curl(client.output());
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(c.writeouts.len(), 3, "{c:?}");
    let connects: u32 = c.writeouts.iter().map(|w| w.num_connects).sum();
    assert_eq!(connects, 1, "curl kept one connection: {:?}", c.writeouts);
    let curl_port = c.writeouts[0].local_port;

    let tree = agent.collect(6);
    tree.assert_names(&[
        (CLIENT, "GET /size/100"),
        (SERVER, "GET /size/100"),
        (CLIENT, "GET /ka/2"),
        (SERVER, "GET /ka/2"),
        (CLIENT, "GET /missing"),
        (SERVER, "GET /missing"),
    ]);
    for (path, w) in paths.iter().zip(&c.writeouts) {
        let (client, server_span) = assert_joined_exchange(
            &tree,
            path,
            server.port,
            (w.http_code, w.size_download),
            &OPENSSL,
        );
        tree.assert_attr(&server_span, "client.port", &curl_port.to_string());
        check!(
            tree,
            client
                .attr_str("user_agent.original")
                .is_some_and(|u| u.starts_with("curl/")),
            "curl's user agent on {}",
            client.summary()
        );
        eqnice!(
            tree,
            service(&client).as_deref(),
            Some("curl"),
            "client service"
        );
        eqnice!(
            tree,
            service(&server_span).as_deref(),
            Some("py_tls_server"),
            "server service"
        );
        eqnice!(
            tree,
            server_span.res_attr("process.pid"),
            Some(server.pid().to_string()),
            "the server span belongs to the attached pid"
        );
    }
    tree.assert_attr(
        tree.find(SERVER, "GET /missing"),
        "http.response.status_code",
        "404",
    );
    assert_tls_counters(&tree, &agent.counters());
}

/// `sonde run -- curl https://...`: curl is covered from its first request: CLIENT
/// spans with `https` URLs (query values redacted as for http), a 404 as a client
/// error; the server is not traced.
#[test]
fn curl_https_client_under_sonde_run() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let server = py_tls_server(&certs); // not traced
    let ok = https_url(server.port, "/size/123?token=s3cret&page=2");
    let missing = https_url(server.port, "/missing");
    let ca = certs.ca.to_str().expect("UTF-8 temp path");
    let (stopped, tree) = sonde_run(&[
        "curl",
        "-sS",
        "--max-time",
        "20",
        "--cacert",
        ca,
        "-o",
        "/dev/null",
        &ok,
        "-o",
        "/dev/null",
        &missing,
    ]);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(0),
        "sonde run exits with curl's code"
    );
    tree.assert_names(&[(CLIENT, "GET /size/123"), (CLIENT, "GET /missing")]);
    let s = tree.find(CLIENT, "GET /size/123");
    tree.assert_root(s);
    assert_tls_span(&tree, s);
    tree.assert_attr(s, "url.path", "/size/123");
    tree.assert_attr(s, "url.query", "token=REDACTED&page=REDACTED");
    tree.assert_attr(
        s,
        "url.full",
        &https_url(server.port, "/size/123?token=REDACTED&page=REDACTED"),
    );
    tree.assert_attr(s, "server.address", "localhost");
    tree.assert_attr(s, "server.port", &server.port.to_string());
    tree.assert_attr(s, "network.peer.address", "127.0.0.1");
    tree.assert_attr(s, "network.peer.port", &server.port.to_string());
    tree.assert_attr(s, "network.protocol.version", "1.1");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.response.body.size", "123");
    eqnice!(tree, s.status_code(), 0, "a 200 leaves the status unset");
    check!(
        tree,
        !s.to_string().contains("s3cret"),
        "query values are redacted everywhere"
    );
    eqnice!(tree, service(s).as_deref(), Some("curl"), "service.name");
    let nf = tree.find(CLIENT, "GET /missing");
    tree.assert_root(nf);
    assert_tls_span(&tree, nf);
    tree.assert_attr(nf, "url.full", &missing);
    tree.assert_attr(nf, "http.response.status_code", "404");
    eqnice!(tree, nf.status_code(), 2, "a 404 is a client error");
    check!(tree, s.end() <= nf.start(), "sequential requests");
    assert_tls_counters(&tree, &stopped.counters);
}

// ===== nginx, Python requests and urllib =====

/// The docroot of the nginx tests: two files of known sizes.
fn nginx_files(www: &std::path::Path) {
    std::fs::write(www.join("a.txt"), vec![b'a'; 1000]).expect("writing a.txt");
    std::fs::write(www.join("b.txt"), vec![b'b'; 2345]).expect("writing b.txt");
}

/// nginx serving HTTPS, attached while running, loaded by a Python `requests` client
/// (one keep-alive `Session`; already running, held until the agent attached): each
/// request gives a `requests` CLIENT span and an nginx SERVER span under it.
#[test]
fn nginx_https_and_python_requests_client_one_trace() {
    require_tracing!();
    if !openssl_available() || !requests_available() {
        return;
    }
    let certs = Certs::new();
    let nginx = nginx_tls(&certs, nginx_files);
    let paths = ["/a.txt", "/b.txt", "/missing"];
    let urls: Vec<String> = paths.iter().map(|p| https_url(nginx.port, p)).collect();
    let dir = TempDir::new("go");
    let go = dir.join("go");
    let mut cmd = Command::new(python());
    cmd.arg(fixture("py_https_client.py"))
        .arg(&certs.ca)
        .arg("requests")
        .arg("--wait-file")
        .arg(&go)
        .args(&urls)
        .env_remove("OTEL_SERVICE_NAME");
    let client = Proc::spawn(cmd);
    let mut agent = Agent::attach(&[nginx.pid(), client.pid()]);
    std::fs::write(&go, "").expect("touch go");
    let got = status_lines(&client.output(), "py_https_client.py requests");
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 200, 404],
        "{got:?}"
    );
    assert_eq!((got[0].1, got[1].1), (1000, 2345), "{got:?}");

    let tree = agent.collect(6);
    tree.assert_names(&[
        (CLIENT, "GET /a.txt"),
        (SERVER, "GET /a.txt"),
        (CLIENT, "GET /b.txt"),
        (SERVER, "GET /b.txt"),
        (CLIENT, "GET /missing"),
        (SERVER, "GET /missing"),
    ]);
    let mut client_ports = Vec::new();
    for (path, exchange) in paths.iter().zip(&got) {
        let (client, server) =
            assert_joined_exchange(&tree, path, nginx.port, *exchange, &OPENSSL_NGINX);
        check!(
            tree,
            client
                .attr_str("user_agent.original")
                .is_some_and(|u| u.starts_with("python-requests/")),
            "requests' user agent on {}",
            client.summary()
        );
        eqnice!(
            tree,
            service(&client).as_deref(),
            Some("py_https_client"),
            "client service"
        );
        eqnice!(
            tree,
            service(&server).as_deref(),
            Some("nginx"),
            "server service"
        );
        client_ports.push(server.attr_str("client.port"));
    }
    client_ports.dedup();
    eqnice!(
        tree,
        client_ports.len(),
        1,
        "one keep-alive connection carried the three requests: {client_ports:?}"
    );
    assert_tls_counters(&tree, &agent.counters());
}

/// `sonde run -- python3 py_https_client.py CA urllib ...` against nginx (not traced):
/// urllib's CLIENT spans over `ssl`, a connection each, a 404 as a client error.
#[test]
fn python_urllib_https_client_under_sonde_run() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let nginx = nginx_tls(&certs, nginx_files); // not traced
    let ok = https_url(nginx.port, "/a.txt");
    let missing = https_url(nginx.port, "/missing");
    let cmd: Vec<OsString> = vec![
        python(),
        fixture("py_https_client.py").into_os_string(),
        certs.ca.clone().into_os_string(),
        "urllib".into(),
        ok.clone().into(),
        missing.clone().into(),
    ];
    let (stopped, tree) = sonde_run(&cmd);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(0),
        "py_https_client.py exit code"
    );
    tree.assert_names(&[(CLIENT, "GET /a.txt"), (CLIENT, "GET /missing")]);
    let a = tree.find(CLIENT, "GET /a.txt");
    let nf = tree.find(CLIENT, "GET /missing");
    for s in [a, nf] {
        tree.assert_root(s);
        assert_tls_span_from(&tree, s, &OPENSSL_NGINX);
        tree.assert_attr(s, "server.address", "localhost");
        tree.assert_attr(s, "server.port", &nginx.port.to_string());
        tree.assert_attr(s, "network.peer.port", &nginx.port.to_string());
        check!(
            tree,
            s.attr_str("user_agent.original")
                .is_some_and(|u| u.starts_with("Python-urllib/")),
            "urllib's user agent on {}",
            s.summary()
        );
        eqnice!(
            tree,
            service(s).as_deref(),
            Some("py_https_client"),
            "service.name is the script stem"
        );
    }
    tree.assert_attr(a, "url.full", &ok);
    tree.assert_attr(a, "http.response.status_code", "200");
    tree.assert_attr(a, "http.response.body.size", "1000");
    eqnice!(tree, a.status_code(), 0, "200 unset");
    tree.assert_attr(nf, "url.full", &missing);
    tree.assert_attr(nf, "http.response.status_code", "404");
    eqnice!(tree, nf.status_code(), 2, "404 is a client error");
    check!(tree, a.end() <= nf.start(), "sequential requests");
    assert_tls_counters(&tree, &stopped.counters);
}

// ===== Node =====

/// A Node `https` server and a Node `https.get` client (already running, held until the
/// agent attached) in one trace: client CLIENT -> server SERVER (`tcp_option`) for each
/// of three requests on one keep-alive connection. Node's OpenSSL is inside the node
/// binary, not libssl.so.3.
#[test]
fn node_https_server_and_client_one_trace() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let server = node_tls_server(&certs);
    let paths = THREE_PATHS;
    let urls: Vec<String> = paths.iter().map(|p| https_url(server.port, p)).collect();
    let dir = TempDir::new("go");
    let go = dir.join("go");
    let mut cmd = Command::new(node());
    cmd.arg(fixture("node_client.js"))
        .arg("--ca")
        .arg(&certs.ca)
        .arg("--wait-file")
        .arg(&go)
        .args(&urls)
        .env_remove("OTEL_SERVICE_NAME");
    let client = Proc::spawn(cmd);
    let mut agent = Agent::attach(&[server.pid(), client.pid()]);
    std::fs::write(&go, "").expect("touch go");
    let got = status_lines(&client.output(), "node_client.js");
    assert_eq!(got, THREE_ANSWERS, "node client output");

    let tree = agent.collect(6);
    tree.assert_names(&THREE_SPANS);
    let mut traces = Vec::new();
    for (path, exchange) in paths.iter().zip(&got) {
        let (client, server_span) =
            assert_joined_exchange(&tree, path, server.port, *exchange, &OPENSSL);
        eqnice!(
            tree,
            service(&client).as_deref(),
            Some("node_client"),
            "client service"
        );
        eqnice!(
            tree,
            service(&server_span).as_deref(),
            Some("node_tls_server"),
            "server service"
        );
        traces.push(client.trace_id().to_owned());
    }
    traces.sort();
    traces.dedup();
    eqnice!(tree, traces.len(), 3, "three client requests, three traces");
    assert_tls_counters(&tree, &agent.counters());
}

// ===== one process, both kinds of traffic =====

/// One Python process serving plaintext on one port and TLS on another, called once on
/// each by (untraced) curl: two SERVER spans, `https` with `sonde.tls.library` on the
/// TLS port only, `http` without it on the other.
#[test]
fn one_process_plaintext_and_tls_ports() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let (server, plain) = py_tls_and_plain_server(&certs);
    let mut agent = Agent::attach(&[server.pid()]);
    let ca = certs.ca.to_str().expect("UTF-8 temp path");
    let tls = curl(&["--cacert", ca, &https_url(server.port, "/over-tls")]);
    assert!(tls.status.success(), "curl https failed: {}", tls.stderr);
    assert_eq!(String::from_utf8_lossy(&tls.body), "hello /over-tls\n");
    let clear = curl(&[&format!("http://127.0.0.1:{plain}/in-clear")]);
    assert!(clear.status.success(), "curl http failed: {}", clear.stderr);
    assert_eq!(String::from_utf8_lossy(&clear.body), "hello /in-clear\n");

    let tree = agent.collect(2);
    tree.assert_names(&[(SERVER, "GET /over-tls"), (SERVER, "GET /in-clear")]);
    let t = tree.find(SERVER, "GET /over-tls");
    let p = tree.find(SERVER, "GET /in-clear");
    assert_tls_span(&tree, t);
    assert_plaintext_span(&tree, p);
    for (s, c, port, host) in [
        (t, &tls, server.port, "localhost"),
        (p, &clear, plain, "127.0.0.1"),
    ] {
        tree.assert_root(s);
        tree.assert_attr(s, "http.response.status_code", "200");
        tree.assert_attr(s, "http.response.body.size", &c.body.len().to_string());
        tree.assert_attr(s, "server.address", host);
        tree.assert_attr(s, "server.port", &port.to_string());
        tree.assert_attr(s, "client.port", &c.writeouts[0].local_port.to_string());
        eqnice!(
            tree,
            s.res_attr("process.pid"),
            Some(server.pid().to_string()),
            "one process serves both"
        );
        eqnice!(
            tree,
            service(s).as_deref(),
            Some("py_tls_server"),
            "service"
        );
    }
    assert_tls_counters(&tree, &agent.counters());
}

// ===== parents across the TLS hop =====

/// An (untraced) curl calls the traced Python TLS server's `/call` with `headers`; the
/// handler calls a traced plaintext Python server's `/size/64`. The three spans, both
/// servers, curl's result and the agent's counters.
fn tls_front_calls_downstream(
    headers: &[&str],
) -> (SpanTree, Server, Server, Curl, BTreeMap<String, u64>) {
    let certs = Certs::new();
    let downstream = Server::python();
    let front = py_tls_server(&certs);
    let mut agent = Agent::attach(&[front.pid(), downstream.pid()]);
    let ca = certs.ca.to_str().expect("UTF-8 temp path");
    let url = https_url(
        front.port,
        &format!("/call?url={}", downstream.url("/size/64")),
    );
    let mut args = vec!["--cacert", ca];
    args.extend(headers.iter().flat_map(|h| ["-H", *h]));
    args.push(&url);
    let c = curl(&args);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(c.body.len(), 64, "the downstream body relayed");

    let tree = agent.collect(3);
    tree.assert_names(&[
        (SERVER, "GET /call"),
        (CLIENT, "GET /size/64"),
        (SERVER, "GET /size/64"),
    ]);
    let counters = agent.counters();
    (tree, front, downstream, c, counters)
}

/// A W3C `traceparent` inside TLS is read from the plaintext and continued, as on a
/// plaintext socket: the TLS SERVER span's trace and parent are the header's (source
/// `header`), the call its handler makes is in that trace, and so is the downstream
/// server's span (through the traceparent Sonde inserted on the plaintext hop, or the
/// same-host join).
#[test]
fn incoming_traceparent_inside_tls_is_continued() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let header = format!("traceparent: 00-{trace}-{parent}-01");
    let (tree, _front, _downstream, _c, counters) = tls_front_calls_downstream(&[&header]);
    let entry = tree.find(SERVER, "GET /call");
    let call = tree.find(CLIENT, "GET /size/64");
    let down = tree.find(SERVER, "GET /size/64");
    assert_tls_span(&tree, entry);
    eqnice!(tree, entry.trace_id(), trace, "the header's trace");
    eqnice!(tree, entry.parent_id(), Some(parent), "the header's span");
    tree.assert_attr(entry, "sonde.parent.source", "header");
    tree.assert_attr(entry, "sonde.parent.format", "tracecontext");
    tree.assert_child(entry, call, "thread");
    eqnice!(tree, call.trace_id(), trace, "the handler's call");
    let source = down.attr_str("sonde.parent.source").unwrap_or_default();
    tree.assert_child(call, down, &source);
    eqnice!(tree, down.trace_id(), trace, "the downstream server");
    assert_tls_counters(&tree, &counters);
}

/// A traced HTTPS server whose handler calls a traced plaintext server with urllib: the
/// call is the TLS request's child (`thread`: the handler's thread serves a request
/// known only from TLS plaintext), and the downstream SERVER span the call's child.
#[test]
fn tls_request_calls_plaintext_downstream_as_its_child() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let (tree, front, downstream, c, counters) = tls_front_calls_downstream(&[]);
    let entry = tree.find(SERVER, "GET /call");
    let call = tree.find(CLIENT, "GET /size/64");
    let down = tree.find(SERVER, "GET /size/64");
    tree.assert_root(entry);
    assert_tls_span(&tree, entry);
    tree.assert_attr(entry, "url.query", "url=REDACTED");
    tree.assert_attr(entry, "server.port", &front.port.to_string());
    tree.assert_attr(entry, "client.port", &c.writeouts[0].local_port.to_string());
    tree.assert_attr(entry, "http.response.body.size", "64");
    tree.assert_child(entry, call, "thread");
    assert_plaintext_span(&tree, call);
    tree.assert_attr(call, "url.full", &downstream.url("/size/64"));
    tree.assert_attr(call, "http.response.body.size", "64");
    eqnice!(
        tree,
        entry.res_attr("process.pid"),
        call.res_attr("process.pid"),
        "the handler makes the call"
    );
    // The plaintext hop links as plaintext always did: through the traceparent Sonde
    // inserted, or the same-host join when the request left before the socket was
    // enrolled (as in http1_clients.rs).
    let source = down.attr_str("sonde.parent.source").unwrap_or_default();
    check!(
        tree,
        ["injected", "local_peer"].contains(&source.as_str()),
        "downstream parent source {source:?}"
    );
    tree.assert_child(call, down, &source);
    assert_plaintext_span(&tree, down);
    eqnice!(
        tree,
        service(down).as_deref(),
        Some("py_server"),
        "downstream"
    );
    assert_tls_counters(&tree, &counters);
}

// ===== bad input =====

/// One HTTPS request with Python's `ssl`, then `os._exit` at once: a process that may be
/// gone before the agent finished placing its probes.
const ONE_REQUEST_AND_EXIT: &str = "\
import os, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
raw = socket.create_connection(('127.0.0.1', int(sys.argv[2])))
s = ctx.wrap_socket(raw, server_hostname='localhost')
s.sendall(b'GET /churn HTTP/1.1\\r\\nHost: localhost:' + sys.argv[2].encode() + b'\\r\\n\\r\\n')
s.recv(65536)
os._exit(0)
";

/// `sonde attach --exe '<copied python>*'` while 32 short-lived Python processes come
/// and go (most do one HTTPS request and exit at once, some only load `ssl`), many of
/// them exiting while the agent notices them and places probes: the agent keeps
/// running and counting, its spans are well-formed, a Python started afterwards is
/// traced through TLS, and it exits cleanly without a panic.
#[test]
fn processes_exiting_while_tls_probes_are_placed() {
    require_tracing!();
    if !openssl_available() {
        return;
    }
    let certs = Certs::new();
    let server = py_tls_server(&certs); // /usr/bin/python3: not matched by the glob
    let bin_dir = TempDir::new("tlsexe");
    let exe = bin_dir.join("python3-sonde-tls");
    std::fs::copy(python(), &exe).expect("copying python3");
    let glob = format!("{}/python3-sonde-*", bin_dir.path().display());
    let mut agent = AgentCmd::attach(&[]).arg("--exe").arg(&glob).start();

    let port = server.port.to_string();
    for round in 0..8 {
        let procs: Vec<Proc> = (0..4)
            .map(|i| {
                let mut cmd = Command::new(&exe);
                if i == 3 {
                    cmd.args(["-c", "import ssl"]);
                } else {
                    cmd.args(["-c", ONE_REQUEST_AND_EXIT])
                        .arg(&certs.ca)
                        .arg(&port);
                }
                Proc::spawn(cmd)
            })
            .collect();
        for p in procs {
            let out = p.output();
            assert!(
                out.status.success(),
                "round {round}: a short-lived client failed under the agent ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(
        agent.is_running(),
        "the agent died during the churn:\n{}",
        agent.stderr()
    );
    let traced = agent
        .counters_now()
        .get("processes_traced")
        .copied()
        .unwrap_or(0);
    assert!(
        traced >= 1,
        "the agent counts the processes it picked up ({traced}):\n{}",
        agent.stderr()
    );

    // Still tracing TLS: a Python started now is covered (the exec is noticed
    // asynchronously, so retry as attach_modes.rs does).
    let after = https_url(server.port, "/after-churn");
    let covered = wait_until(Duration::from_secs(15), || {
        let mut cmd = Command::new(&exe);
        cmd.arg(fixture("py_https_client.py"))
            .arg(&certs.ca)
            .arg("urllib")
            .arg(&after);
        let got = status_lines(&Proc::spawn(cmd).output(), "py_https_client.py");
        assert_eq!(got, [(200, 19)], "hello /after-churn");
        std::thread::sleep(Duration::from_millis(200));
        agent
            .spans_now()
            .iter()
            .any(|s| s.name() == "GET /after-churn")
    });
    let tree = agent.collect(1);
    check!(
        tree,
        covered,
        "no TLS CLIENT span from a Python started after the churn ({glob})"
    );
    for s in &tree.spans {
        check!(
            tree,
            s.kind() == CLIENT && ["GET /churn", "GET /after-churn"].contains(&s.name()),
            "only the clients' requests: {}",
            s.summary()
        );
        // A churn client exits after its first read: its span may be cut short, but it
        // is still a TLS span of this server.
        assert_tls_span(&tree, s);
        tree.assert_attr(s, "server.port", &server.port.to_string());
    }
    let last = tree
        .all(CLIENT, "GET /after-churn")
        .into_iter()
        .last()
        .unwrap_or_else(|| panic!("no GET /after-churn\n{}", tree.dump()));
    tree.assert_attr(last, "url.full", &after);
    tree.assert_attr(last, "http.response.status_code", "200");
    tree.assert_attr(last, "http.response.body.size", "19");
    eqnice!(tree, last.status_code(), 0, "a complete 200");
    let counters = agent.counters();
    eqnice!(
        tree,
        counter(&tree, &counters, "http_desyncs"),
        0,
        "ciphertext is never parsed, even from processes caught mid-connection"
    );
    check!(
        tree,
        counter(&tree, &counters, "tls_ciphertext_records") > 0,
        "ciphertext recognised and skipped"
    );
}

/// A client with OpenSSL linked in statically and every symbol stripped
/// (`fixtures/static_tls_client.c`, built now): there is no TLS library Sonde can find
/// in it. Under `sonde run` the agent does not crash, the client's HTTPS works, no span
/// is guessed from its ciphertext (recognised as TLS records and counted, not parsed),
/// and the agent says on stderr, naming the executable, that it found no TLS library in
/// it.
#[test]
fn stripped_static_openssl_client_is_seen_as_having_no_tls_library() {
    require_tracing!();
    if !openssl_available() || !static_tls_client_buildable() {
        return;
    }
    let dir = TempDir::new("static");
    let exe = build_static_tls_client(dir.path());
    let certs = Certs::new();
    let server = py_tls_server(&certs); // not traced
    let port = server.port.to_string();
    let (stopped, tree) = sonde_run(&[
        exe.as_os_str(),
        certs.ca.as_os_str(),
        port.as_ref(),
        "/size/100".as_ref(),
        "2".as_ref(),
    ]);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(0),
        "the stripped client's two HTTPS requests succeed under the agent"
    );
    eqnice!(
        tree,
        tree.len(),
        0,
        "no plaintext to read, and no span made of ciphertext"
    );
    let counters = &stopped.counters;
    eqnice!(
        tree,
        counter(&tree, counters, "tls_unreadable_connections"),
        1,
        "its one connection's ciphertext was recognised and skipped"
    );
    eqnice!(
        tree,
        counter(&tree, counters, "tls_ciphertext_records"),
        0,
        "no library call ever marked its socket for the probes to skip"
    );
    eqnice!(
        tree,
        counter(&tree, counters, "unknown_protocol_connections"),
        0,
        "TLS, not an unknown protocol"
    );
    eqnice!(
        tree,
        counter(&tree, counters, "http_desyncs"),
        0,
        "never parsed"
    );
    eqnice!(
        tree,
        counter(&tree, counters, "tls_unmapped_calls"),
        0,
        "no plaintext call at all"
    );
    check!(
        tree,
        stopped.stderr.lines().any(|l| {
            l.to_ascii_lowercase().contains("no tls library") && l.contains("static_tls_client")
        }),
        "a stderr line naming static_tls_client says `no TLS library` was found in it"
    );
}

// ===== GnuTLS =====

/// wget (GnuTLS on Debian: `libgnutls.so.30`, no OpenSSL) under `sonde run`, against an
/// untraced Python server: a 200 and a 404 over one connection each, CLIENT spans built
/// from GnuTLS's plaintext (`sonde.tls.library` = `gnutls`), the query redacted.
#[test]
fn wget_gnutls_client_under_sonde_run() {
    require_tracing!();
    let wget = Command::new("wget")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !openssl_available() || !tool_available(wget, "wget is missing") {
        return;
    }
    let certs = Certs::new();
    let server = py_tls_server(&certs); // not traced
    let ok = https_url(server.port, "/size/321?token=s3cret");
    let missing = https_url(server.port, "/missing");
    let ca = format!("--ca-certificate={}", certs.ca.display());
    let (stopped, tree) = sonde_run(&[
        "wget",
        "-q",
        "--tries=1",
        "--timeout=20",
        &ca,
        "-O",
        "/dev/null",
        &ok,
        &missing,
    ]);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(8),
        "wget exits 8 when the server answered an error (the 404)"
    );
    tree.assert_names(&[(CLIENT, "GET /size/321"), (CLIENT, "GET /missing")]);
    let s = tree.find(CLIENT, "GET /size/321");
    let nf = tree.find(CLIENT, "GET /missing");
    for span in [s, nf] {
        tree.assert_root(span);
        assert_tls_span_from(&tree, span, &GNUTLS);
        tree.assert_attr(span, "server.address", "localhost");
        tree.assert_attr(span, "server.port", &server.port.to_string());
        tree.assert_attr(span, "network.peer.port", &server.port.to_string());
        tree.assert_attr(span, "network.protocol.version", "1.1");
        eqnice!(tree, service(span).as_deref(), Some("wget"), "service.name");
    }
    tree.assert_attr(
        s,
        "url.full",
        &https_url(server.port, "/size/321?token=REDACTED"),
    );
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.response.body.size", "321");
    eqnice!(tree, s.status_code(), 0, "a 200 leaves the status unset");
    tree.assert_attr(nf, "http.response.status_code", "404");
    eqnice!(tree, nf.status_code(), 2, "a 404 is a client error");
    check!(
        tree,
        !s.to_string().contains("s3cret"),
        "query values are redacted"
    );
    assert_tls_counters(&tree, &stopped.counters);
}

/// A probed library unmapped while probed: under `sonde run`, Python maps GnuTLS (probed
/// ahead, as the system's libgnutls), calls into it and unmaps it (`dlclose`; the
/// fixture checks it left the memory map), then runs wget, which maps the same file
/// again: the probes on the file outlive one process's mapping, wget's request is a
/// GnuTLS span, and neither process nor agent is hurt.
#[test]
fn library_unmapped_while_probed() {
    require_tracing!();
    let wget = Command::new("wget")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !openssl_available() || !tool_available(wget, "wget is missing") {
        return;
    }
    let certs = Certs::new();
    let server = py_tls_server(&certs); // not traced
    let url = https_url(server.port, "/size/77");
    let ca = format!("--ca-certificate={}", certs.ca.display());
    let script = fixture("unmap_gnutls_then_wget.py");
    let python = python();
    let (stopped, tree) = sonde_run(&[
        python.as_os_str(),
        script.as_os_str(),
        "-q".as_ref(),
        "--tries=1".as_ref(),
        "-O".as_ref(),
        "/dev/null".as_ref(),
        ca.as_ref(),
        url.as_ref(),
    ]);
    // The fixture exits 1 when libgnutls stayed mapped after dlclose.
    eqnice!(
        tree,
        stopped.status.code(),
        Some(0),
        "libgnutls unmapped, then wget succeeded"
    );
    tree.assert_names(&[(CLIENT, "GET /size/77")]);
    let s = tree.find(CLIENT, "GET /size/77");
    assert_tls_span_from(&tree, s, &GNUTLS);
    tree.assert_attr(s, "http.response.body.size", "77");
    eqnice!(tree, service(s).as_deref(), Some("wget"), "service.name");
    assert_tls_counters(&tree, &stopped.counters);
}

// ===== Go crypto/tls =====

/// The Go server and a Go client (`client_bin`, held until the agent attached), both
/// traced with the agent's probe lines on stderr: three exchanges on one keep-alive
/// connection, each CLIENT (service `client_service`) the parent of the server's SERVER
/// span, `go`, TLS 1.3, and the exit report clean. Returns the spans and the agent's
/// stderr.
fn go_exchanges(
    certs: &Certs,
    server: &Server,
    client_bin: &std::path::Path,
    wait: &std::path::Path,
    client_service: &str,
) -> (SpanTree, String) {
    let paths = THREE_PATHS;
    let urls: Vec<String> = paths.iter().map(|p| https_url(server.port, p)).collect();
    let mut cmd = Command::new(client_bin);
    cmd.arg(&certs.ca).arg("--wait-file").arg(wait).args(&urls);
    let client = Proc::spawn(cmd);
    // The probe lines are info: shown for this module only.
    let mut agent = AgentCmd::attach(&[server.pid(), client.pid()])
        .env("RUST_LOG", "warn,sonde::attach::tls=info")
        .start();
    std::fs::write(wait, "").expect("touch the wait file");
    let got = status_lines(&client.output(), "Go client");
    assert_eq!(got, THREE_ANSWERS, "{}", client_bin.display());

    let tree = agent.collect(6);
    tree.assert_names(&THREE_SPANS);
    for (path, exchange) in paths.iter().zip(&got) {
        let (client, server_span) =
            assert_joined_exchange(&tree, path, server.port, *exchange, &GO);
        eqnice!(
            tree,
            service(&client).as_deref(),
            Some(client_service),
            "client service"
        );
        eqnice!(
            tree,
            service(&server_span).as_deref(),
            Some("server"),
            "server service"
        );
    }
    assert_tls_counters(&tree, &agent.counters());
    let log = agent.stderr();
    (tree, log)
}

/// A Go HTTPS server and a Go client (`fixtures/go_tls/`, crypto/tls, no OpenSSL), built
/// with and without `-ldflags=-s -w`, already running when the agent attaches: client
/// CLIENT -> server SERVER (`tcp_option`) for each of three requests on one keep-alive
/// connection, `sonde.tls.library` = `go`. The agent says where it found the probe points:
/// the symbol table and DWARF, or for the stripped build the pclntab and the offsets
/// table by release.
#[test]
fn go_https_server_and_client_one_trace() {
    require_tracing!();
    if !openssl_available() || !go_available() {
        return;
    }
    let certs = Certs::new();
    let dir = TempDir::new("gotls");
    for stripped in [false, true] {
        let go = build_go_tls(dir.path(), stripped);
        let server = go.start_server(&certs);
        let wait = dir.join(if stripped {
            "go-stripped-wait"
        } else {
            "go-wait"
        });
        let (tree, log) = go_exchanges(&certs, &server, &go.client, &wait, "client");
        let how = if stripped {
            "functions from the pclntab (stripped), offsets by release (as measured on go1.26"
        } else {
            "functions from the symbol table, offsets from DWARF"
        };
        // Only an unstripped binary names the itab whose hash checks the conn's type.
        let conn = if stripped {
            "conn type not checkable)"
        } else {
            "conn type checked)"
        };
        check!(
            tree,
            log.matches("TLS: probing Go crypto/tls (go1.").count() == 2
                && log.contains(how)
                && log.matches(conn).count() == 2,
            "stripped={stripped}: the agent names both Go programs and says `{how}`, `{conn}`:\n{log}"
        );
    }
}

/// A Go client built by Debian's Go 1.19, stripped (no symbols, no DWARF): functions from
/// the pclntab, struct offsets from the table's go1.19 row, in which `Conn.vers` is 8
/// bytes earlier than in current Go. Against the Go 1.26 server, both traced: three
/// exchanges joined as with current Go, TLS 1.3 on both sides.
#[test]
fn go_119_stripped_client_uses_the_offsets_table() {
    require_tracing!();
    if !openssl_available() || !go_available() {
        return;
    }
    let certs = Certs::new();
    let dir = TempDir::new("go119");
    let Some(client_bin) = build_go119_tls_client(dir.path()) else {
        return;
    };
    let go = build_go_tls(dir.path(), false);
    let server = go.start_server(&certs);
    let (tree, log) = go_exchanges(
        &certs,
        &server,
        &client_bin,
        &dir.join("wait"),
        "client-go119",
    );
    check!(
        tree,
        log.contains("Go crypto/tls (go1.19.")
            && log.contains(
                "functions from the pclntab (stripped), offsets by release \
                 (as measured on go1.19.8)"
            ),
        "the agent says how it read the go1.19 client:\n{log}"
    );
}

/// A Go program whose release Sonde has no struct offsets for (the stripped server with
/// its build info rewritten to `go1.99.8`: no DWARF, no table row) is a clear line, not
/// a guess: `sonde doctor --pid` says NOT PROBED and why, the agent counts it in
/// `tls_library_failures` and attaches nothing to it, and the server keeps serving
/// (curl gets its 200). Its connection is then TLS no library reported plaintext for.
#[test]
fn go_program_of_unknown_release_is_reported_not_probed() {
    require_tracing!();
    if !openssl_available() || !go_available() {
        return;
    }
    let certs = Certs::new();
    let dir = TempDir::new("gounknown");
    let go = build_go_tls(dir.path(), true);
    let mut bytes = std::fs::read(&go.server).expect("reading the Go server");
    let version = go_version_in(&bytes);
    let at = memchr_all(&bytes, version.as_bytes());
    let unknown = format!(
        "go1.99.{}",
        &version[version.rfind('.').expect("x.y.z") + 1..]
    );
    assert_eq!(unknown.len(), version.len(), "same length: {unknown}");
    // The build info and runtime.buildVersion both carry it.
    for i in at {
        bytes[i..i + unknown.len()].copy_from_slice(unknown.as_bytes());
    }
    let patched = GoTls {
        server: dir.join("server-unknown"),
        client: go.client.clone(),
    };
    std::fs::write(&patched.server, &bytes).expect("writing the patched server");
    std::fs::set_permissions(
        &patched.server,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let server = patched.start_server(&certs);

    let doctor = Command::new(sonde_bin())
        .args(["doctor", "--json", "--pid"])
        .arg(server.pid().to_string())
        .output()
        .expect("running sonde doctor");
    let report: Value = serde_json::from_slice(&doctor.stdout).expect("doctor JSON");
    let libraries = &report["processes"][0]["libraries"];
    assert_eq!(
        libraries.as_array().map(Vec::len),
        Some(1),
        "one TLS library: {report}"
    );
    let error = libraries[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("struct offsets unknown for {unknown}"))
            && error.contains("no row for go1.99"),
        "doctor says why: {error}"
    );
    assert_eq!(libraries[0]["library"], Value::Null);
    // Its goroutines cannot be followed either (no goid offset for go1.99): said too.
    let runtime = report["processes"][0]["go_runtime"]["Err"]
        .as_str()
        .unwrap_or_default();
    assert!(
        runtime.contains("no row for go1.99"),
        "doctor says why goroutines are not followed: {report}"
    );

    let mut agent = Agent::attach(&[server.pid()]);
    let ca = certs.ca.to_str().expect("UTF-8 temp path");
    let c = curl(&["--cacert", ca, &https_url(server.port, "/hello")]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(c.body, b"hello /hello\n", "the server is unharmed");
    let tree = agent.collect(0);
    let counters = agent.counters();
    eqnice!(
        tree,
        counter(&tree, &counters, "tls_library_failures"),
        1,
        "counted once"
    );
    eqnice!(
        tree,
        counter(&tree, &counters, "tls_libraries_probed"),
        0,
        "nothing probed"
    );
    eqnice!(
        tree,
        counter(&tree, &counters, "go_runtime_failures"),
        1,
        "its goroutines not followed, counted once"
    );
    eqnice!(
        tree,
        counter(&tree, &counters, "tls_unreadable_connections"),
        1,
        "curl's connection: TLS without plaintext"
    );
    eqnice!(
        tree,
        counter(&tree, &counters, "http_desyncs"),
        0,
        "ciphertext never parsed"
    );
}

/// The Go release string (`go1.26.8`) in a Go binary's build info.
fn go_version_in(bytes: &[u8]) -> String {
    let marker = b"\xff Go buildinf:";
    let start = memchr_all(bytes, marker)
        .first()
        .copied()
        .expect("a Go build info header");
    // Go 1.18+: flags byte 0x2 at +15, then varint-length-prefixed version string at +32.
    let len = bytes[start + 32] as usize;
    String::from_utf8(bytes[start + 33..start + 33 + len].to_vec()).expect("UTF-8 version")
}

/// Every offset where `needle` occurs in `hay`.
fn memchr_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

// ===== Go fixtures =====

/// `fixtures/go_tls/` (crypto/tls, not OpenSSL) builds with and without `-s -w` and its
/// client and server talk HTTPS/1.1 to each other, with no agent: the fixtures the Go
/// TLS tests will use are sound. Needs no root.
#[test]
fn go_tls_fixtures_talk_https_without_sonde() {
    if !openssl_available() || !go_available() {
        return;
    }
    let certs = Certs::new();
    let dir = TempDir::new("gotls");
    for stripped in [false, true] {
        let go = build_go_tls(dir.path(), stripped);
        let server = go.start_server(&certs);
        let urls: Vec<String> = THREE_PATHS
            .iter()
            .map(|p| https_url(server.port, p))
            .collect();
        let out = go
            .client_command(&certs, &urls)
            .output()
            .expect("running the Go client");
        let got = status_lines(&out, "go_tls client");
        assert_eq!(got, THREE_ANSWERS, "stripped={stripped}");
        let c = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-w",
                "%{http_version}",
                "--cacert",
            ])
            .arg(&certs.ca)
            .arg(https_url(server.port, "/curl"))
            .output()
            .expect("running curl");
        assert!(
            c.status.success(),
            "curl to the Go server: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&c.stdout),
            "hello /curl\n1.1",
            "curl gets HTTP/1.1 from the Go server"
        );
    }
}
