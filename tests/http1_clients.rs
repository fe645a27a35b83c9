//! CLIENT spans of programs started with `sonde run`: curl, Python urllib, Node
//! `http.get`; client-side errors (4xx, a response cut short); a Node server and
//! client traced together.

mod util;

use std::process::Command;
use std::time::Duration;

use util::*;

/// Scenario 10a: `sonde run -- curl URL` -> one CLIENT span; the exit code is curl's.
#[test]
fn curl_client_span() {
    require_tracing!();
    let server = Server::python();
    let url = server.url("/size/123?api_key=hunter2&page=3");
    let (stopped, tree) = sonde_run(&["curl", "-sS", "-o", "/dev/null", &url]);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(0),
        "sonde run exits with curl's code"
    );
    tree.assert_names(&[(CLIENT, "GET /size/123")]);
    let s = tree.find(CLIENT, "GET /size/123");
    tree.assert_root(s);
    eqnice!(tree, s.status_code(), 0, "a 200 leaves the status unset");
    tree.assert_attr(s, "http.request.method", "GET");
    tree.assert_attr(s, "url.path", "/size/123");
    tree.assert_attr(s, "url.query", "api_key=REDACTED&page=REDACTED");
    tree.assert_attr(
        s,
        "url.full",
        &server.url("/size/123?api_key=REDACTED&page=REDACTED"),
    );
    tree.assert_attr(s, "server.address", "127.0.0.1");
    tree.assert_attr(s, "server.port", &server.port.to_string());
    tree.assert_attr(s, "network.peer.address", "127.0.0.1");
    tree.assert_attr(s, "network.peer.port", &server.port.to_string());
    tree.assert_attr(s, "network.protocol.version", "1.1");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.response.body.size", "123");
    check!(
        tree,
        s.attr_str("user_agent.original")
            .is_some_and(|u| u.starts_with("curl/")),
        "user agent"
    );
    check!(
        tree,
        !s.to_string().contains("hunter2"),
        "query values are redacted everywhere"
    );
    eqnice!(
        tree,
        s.res_attr("service.name").as_deref(),
        Some("curl"),
        "service.name"
    );
    eqnice!(
        tree,
        s.res_attr("process.executable.name").as_deref(),
        Some("curl"),
        "process.executable.name"
    );
    check!(
        tree,
        s.duration() < Duration::from_secs(5),
        "duration plausible"
    );
}

/// Scenario 10b: a 404 seen by a client is an error; `sonde run` returns curl -f's 22.
#[test]
fn curl_client_404_is_error_and_exit_code_passes_through() {
    require_tracing!();
    let server = Server::python();
    let (stopped, tree) = sonde_run(&[
        "curl",
        "-sS",
        "-f",
        "-o",
        "/dev/null",
        &server.url("/missing"),
    ]);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(22),
        "sonde run exits with curl -f's code for a 404"
    );
    tree.assert_names(&[(CLIENT, "GET /missing")]);
    let s = tree.find(CLIENT, "GET /missing");
    tree.assert_attr(s, "http.response.status_code", "404");
    eqnice!(tree, s.status_code(), 2, "4xx is an error on a client span");
}

/// A 503 is an error on the client too.
#[test]
fn curl_client_5xx_is_error() {
    require_tracing!();
    let server = Server::python();
    let (_, tree) = sonde_run(&["curl", "-sS", "-o", "/dev/null", &server.url("/status/503")]);
    let s = tree.find(CLIENT, "GET /status/503");
    tree.assert_attr(s, "http.response.status_code", "503");
    eqnice!(tree, s.status_code(), 2, "5xx is an error on a client span");
}

/// Scenario 10c: Python urllib -> CLIENT spans, 200 unset and 404 error.
#[test]
fn python_urllib_client_spans() {
    require_tracing!();
    let server = Server::python();
    let py = python();
    let script = fixture("py_client.py");
    let cmd: Vec<std::ffi::OsString> = vec![
        py,
        script.into_os_string(),
        server.url("/size/2048").into(),
        server.url("/missing").into(),
    ];
    let (stopped, tree) = sonde_run(&cmd);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(0),
        "py_client.py exit code"
    );
    tree.assert_names(&[(CLIENT, "GET /size/2048"), (CLIENT, "GET /missing")]);
    let ok = tree.find(CLIENT, "GET /size/2048");
    tree.assert_attr(ok, "http.response.status_code", "200");
    tree.assert_attr(ok, "http.response.body.size", "2048");
    tree.assert_attr(ok, "url.full", &server.url("/size/2048"));
    tree.assert_attr(ok, "server.port", &server.port.to_string());
    eqnice!(tree, ok.status_code(), 0, "200 unset");
    check!(
        tree,
        ok.attr_str("user_agent.original")
            .is_some_and(|u| u.starts_with("Python-urllib/")),
        "urllib user agent"
    );
    let nf = tree.find(CLIENT, "GET /missing");
    tree.assert_attr(nf, "http.response.status_code", "404");
    eqnice!(tree, nf.status_code(), 2, "404 error");
    eqnice!(
        tree,
        ok.res_attr("service.name").as_deref(),
        Some("py_client"),
        "service.name is the script stem"
    );
    check!(
        tree,
        ok.end() <= nf.start(),
        "sequential requests do not overlap"
    );
}

/// Scenario 7 (client side): the server closes after 10 of 1000 announced bytes ->
/// the traced curl's CLIENT span is an error.
#[test]
fn client_sees_connection_closed_mid_response() {
    require_tracing!();
    let server = Server::python();
    let (stopped, tree) = sonde_run(&["curl", "-sS", "-o", "/dev/null", &server.url("/truncated")]);
    eqnice!(
        tree,
        stopped.status.code(),
        Some(18),
        "curl: partial file (18)"
    );
    tree.assert_names(&[(CLIENT, "GET /truncated")]);
    let s = tree.find(CLIENT, "GET /truncated");
    eqnice!(
        tree,
        s.status_code(),
        2,
        "a response cut short is an error on the client"
    );
}

/// Scenario 12a: Node `http.get` under `sonde run`.
#[test]
fn node_http_get_client() {
    require_tracing!();
    let server = Server::python();
    let cmd: Vec<std::ffi::OsString> = vec![
        node(),
        fixture("node_client.js").into_os_string(),
        server.url("/size/4321").into(),
        server.url("/missing").into(),
    ];
    let (stopped, tree) = sonde_run(&cmd);
    eqnice!(tree, stopped.status.code(), Some(0), "node exit code");
    tree.assert_names(&[(CLIENT, "GET /size/4321"), (CLIENT, "GET /missing")]);
    let s = tree.find(CLIENT, "GET /size/4321");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.response.body.size", "4321");
    tree.assert_attr(s, "url.full", &server.url("/size/4321"));
    eqnice!(tree, s.status_code(), 0, "200 unset");
    eqnice!(
        tree,
        tree.find(CLIENT, "GET /missing").status_code(),
        2,
        "404 error"
    );
    eqnice!(
        tree,
        s.res_attr("service.name").as_deref(),
        Some("node_client"),
        "service.name is the script stem"
    );
}

/// Scenario 12b: a Node server and a Node client, both traced by one agent: the
/// client's CLIENT span is the root, the server's SERVER span its child: through the
/// traceparent Sonde inserted (`injected`). The second request reuses the connection at
/// once, usually before the agent re-enrols the socket: then the same-host join links it
/// (`local_peer`).
#[test]
fn node_server_and_node_client_one_trace() {
    require_tracing!();
    let server = Server::node();
    let dir = TempDir::new("go");
    let go = dir.join("go");
    let mut cmd = Command::new(node());
    cmd.arg(fixture("node_client.js"))
        .arg("--wait-file")
        .arg(&go)
        .arg(server.url("/size/999"))
        .arg(server.url("/hello"));
    let client = Proc::spawn(cmd);
    let mut agent = Agent::attach(&[server.pid(), client.pid()]);
    std::fs::write(&go, "").expect("touch go");
    let out = client.output();
    assert!(
        out.status.success(),
        "node client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 999\n200 13\n");

    let tree = agent.collect(4);
    tree.assert_names(&[
        (CLIENT, "GET /size/999"),
        (SERVER, "GET /size/999"),
        (CLIENT, "GET /hello"),
        (SERVER, "GET /hello"),
    ]);
    for (name, sources) in [
        ("GET /size/999", &["injected"][..]),
        ("GET /hello", &["injected", "local_peer"][..]),
    ] {
        let c = tree.find(CLIENT, name);
        let s = tree.find(SERVER, name);
        tree.assert_root(c);
        let source = s.attr_str("sonde.parent.source").unwrap_or_default();
        check!(
            tree,
            sources.contains(&source.as_str()),
            "{name}: parent source {source:?} not in {sources:?}"
        );
        tree.assert_child(c, s, &source);
        eqnice!(
            tree,
            c.res_attr("service.name").as_deref(),
            Some("node_client"),
            "client service"
        );
        eqnice!(
            tree,
            s.res_attr("service.name").as_deref(),
            Some("node_server"),
            "server service"
        );
        eqnice!(
            tree,
            c.attr_str("http.response.body.size"),
            s.attr_str("http.response.body.size"),
            "both ends count the same body"
        );
    }
    check!(
        tree,
        tree.find(CLIENT, "GET /size/999").trace_id() != tree.find(CLIENT, "GET /hello").trace_id(),
        "two client requests, two traces"
    );
}
