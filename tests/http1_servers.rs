//! SERVER spans of real HTTP/1 servers traced with `sonde attach --pid`: Python's
//! http.server, a keep-alive ThreadingHTTPServer, nginx and Node with many clients on
//! one thread, and a connection that was already open when the agent attached.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use util::*;

/// Scenario 1: `python3 -m http.server`, one curl GET of a file -> one SERVER span.
#[test]
fn python_http_server_get_file() {
    require_tracing!();
    let docroot = TempDir::new("docroot");
    let content: Vec<u8> = (0..12_345u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(docroot.join("file.txt"), &content).expect("writing file.txt");
    let server = Server::python_http_server(docroot.path());
    let mut agent = Agent::attach(&[server.pid()]);

    let c = curl(&[&server.url("/file.txt?token=s3cret")]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(c.body, content, "curl got the file");
    let local_port = c.writeouts[0].local_port;

    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /file.txt")]);
    let s = tree.find(SERVER, "GET /file.txt");
    tree.assert_root(s);
    eqnice!(tree, s.status_code(), 0, "a 200 leaves the status unset");
    tree.assert_attr(s, "http.request.method", "GET");
    tree.assert_attr(s, "url.path", "/file.txt");
    tree.assert_attr(s, "url.query", "token=REDACTED");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "http.response.body.size", &content.len().to_string());
    tree.assert_attr(s, "client.port", &local_port.to_string());
    tree.assert_attr(s, "client.address", "127.0.0.1");
    tree.assert_attr(s, "server.port", &server.port.to_string());
    tree.assert_attr(s, "network.peer.address", "127.0.0.1");
    tree.assert_attr(s, "network.peer.port", &local_port.to_string());
    check!(
        tree,
        s.attr_str("user_agent.original")
            .is_some_and(|ua| ua.starts_with("curl/")),
        "user_agent.original starts with curl/"
    );
    check!(
        tree,
        !s.to_string().contains("s3cret"),
        "the query value never appears in the span"
    );
    eqnice!(
        tree,
        s.res_attr("service.name").as_deref(),
        Some("http.server"),
        "service.name of `python3 -m http.server`"
    );
    eqnice!(
        tree,
        s.res_attr("process.pid"),
        Some(server.pid().to_string()),
        "process.pid"
    );
    check!(
        tree,
        s.res_attr("process.executable.name")
            .is_some_and(|e| e.starts_with("python3")),
        "process.executable.name is python3*"
    );
    check!(
        tree,
        s.res_attr("process.command_line")
            .is_some_and(|c| c.contains("http.server")),
        "process.command_line names the module"
    );
    check!(
        tree,
        s.duration() < Duration::from_secs(2),
        "a 12 KB file is served in well under 2 s"
    );
}

/// OTEL_SERVICE_NAME in the traced process's environment wins over the script name.
#[test]
fn service_name_from_process_env() {
    require_tracing!();
    let server = Server::python_env(&[("OTEL_SERVICE_NAME", "checkout")]);
    let mut agent = Agent::attach(&[server.pid()]);
    let c = curl(&[&server.url("/svc")]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    let tree = agent.collect(1);
    let s = tree.find(SERVER, "GET /svc");
    eqnice!(
        tree,
        s.res_attr("service.name").as_deref(),
        Some("checkout"),
        "service.name from OTEL_SERVICE_NAME"
    );
}

/// The script's stem names a Python service when OTEL_SERVICE_NAME is unset.
#[test]
fn service_name_from_script_stem() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);
    assert!(curl(&[&server.url("/stem")]).status.success());
    let tree = agent.collect(1);
    let s = tree.find(SERVER, "GET /stem");
    eqnice!(
        tree,
        s.res_attr("service.name").as_deref(),
        Some("py_server"),
        "service.name is the script stem"
    );
}

/// Scenario 2: one curl fetching 5 URLs over one keep-alive connection -> 5 SERVER spans.
#[test]
fn keep_alive_five_requests_one_connection() {
    require_tracing!();
    let server = Server::python();
    let mut agent = Agent::attach(&[server.pid()]);

    let paths = ["/ka/1", "/ka/2", "/size/300", "/ka/4", "/missing"];
    let urls: Vec<String> = paths.iter().map(|p| server.url(p)).collect();
    let args: Vec<&str> = urls.iter().map(String::as_str).collect();
    let c = curl(&args);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(c.writeouts.len(), 5, "{c:?}");
    let connects: u32 = c.writeouts.iter().map(|w| w.num_connects).sum();
    assert_eq!(connects, 1, "curl reused one connection: {:?}", c.writeouts);
    let port = c.writeouts[0].local_port;

    let tree = agent.collect(5);
    tree.assert_names(&[
        (SERVER, "GET /ka/1"),
        (SERVER, "GET /ka/2"),
        (SERVER, "GET /size/300"),
        (SERVER, "GET /ka/4"),
        (SERVER, "GET /missing"),
    ]);
    for (path, w) in paths.iter().zip(&c.writeouts) {
        let s = tree.find(SERVER, &format!("GET {path}"));
        tree.assert_root(s);
        tree.assert_attr(s, "http.response.status_code", &w.http_code.to_string());
        tree.assert_attr(s, "http.response.body.size", &w.size_download.to_string());
        tree.assert_attr(s, "client.port", &port.to_string());
        tree.assert_attr(s, "network.protocol.version", "1.1");
        eqnice!(
            tree,
            s.status_code(),
            0,
            "no 5xx: status unset (404 is not a server error) for {path}"
        );
    }
    // Requests on one connection are sequential: spans must not overlap, in order.
    let mut spans: Vec<_> = paths
        .iter()
        .map(|p| tree.find(SERVER, &format!("GET {p}")))
        .collect();
    spans.sort_by_key(|s| s.start());
    let order: Vec<&str> = spans.iter().map(|s| s.name()).collect();
    let want: Vec<String> = paths.iter().map(|p| format!("GET {p}")).collect();
    eqnice!(
        tree,
        order,
        want.iter().map(String::as_str).collect::<Vec<_>>(),
        "spans in request order"
    );
    for w in spans.windows(2) {
        check!(
            tree,
            w[0].end() <= w[1].start(),
            "{} ends before {} starts",
            w[0].name(),
            w[1].name()
        );
    }
}

/// Scenario 8a: nginx with one worker, 20 concurrent curls on different paths.
#[test]
fn nginx_one_worker_twenty_concurrent_clients() {
    require_tracing!();
    let sizes: Vec<usize> = (0..20).map(|i| 1000 + i * 137).collect();
    let server = Server::nginx("nginx_static.conf", &[], |www| {
        std::fs::create_dir_all(www.join("size")).expect("mkdir");
        for n in &sizes {
            std::fs::write(www.join(format!("size/{n}")), vec![b'n'; *n]).expect("writing a file");
        }
    });
    let mut agent = Agent::attach(&[server.pid()]);
    many_concurrent_clients(&server, &mut agent, &sizes);
}

/// Scenario 8b: Node (one thread, event loop), 20 concurrent curls on different paths.
#[test]
fn node_twenty_concurrent_clients() {
    require_tracing!();
    let sizes: Vec<usize> = (0..20).map(|i| 500 + i * 211).collect();
    let server = Server::node();
    let mut agent = Agent::attach(&[server.pid()]);
    many_concurrent_clients(&server, &mut agent, &sizes);
}

fn many_concurrent_clients(server: &Server, agent: &mut Agent, sizes: &[usize]) {
    let procs: Vec<(usize, Proc)> = sizes
        .iter()
        .map(|n| {
            (
                *n,
                curl_spawn(&["-o", "/dev/null", &server.url(&format!("/size/{n}"))]),
            )
        })
        .collect();
    let mut ports = BTreeMap::new();
    for (n, p) in procs {
        let c = parse_curl(p.output());
        assert!(c.status.success(), "curl /size/{n} failed: {}", c.stderr);
        assert_eq!(c.writeouts[0].http_code, 200);
        assert_eq!(c.writeouts[0].size_download, n as u64);
        ports.insert(n, c.writeouts[0].local_port);
    }
    let tree = agent.collect(sizes.len());
    let want: Vec<String> = sizes.iter().map(|n| format!("GET /size/{n}")).collect();
    let want: Vec<(i64, &str)> = want.iter().map(|n| (SERVER, n.as_str())).collect();
    tree.assert_names(&want);
    for n in sizes {
        let s = tree.find(SERVER, &format!("GET /size/{n}"));
        tree.assert_root(s);
        tree.assert_attr(s, "http.response.status_code", "200");
        tree.assert_attr(s, "http.response.body.size", &n.to_string());
        tree.assert_attr(s, "client.port", &ports[n].to_string());
        tree.assert_attr(s, "url.path", &format!("/size/{n}"));
    }
    let traces: std::collections::BTreeSet<&str> =
        tree.spans.iter().map(|s| s.trace_id()).collect();
    eqnice!(
        tree,
        traces.len(),
        sizes.len(),
        "independent requests get distinct trace ids"
    );
}

/// Scenario 9: a keep-alive connection opened and used before the agent attached; the
/// request sent on it after attaching is traced, the one before is not.
#[test]
fn connection_open_before_attach_is_traced() {
    require_tracing!();
    let server = Server::python();
    let dir = TempDir::new("phase");
    let (attached, used) = (dir.join("attached"), dir.join("first-done"));
    let client = raw_client_spawn(&json!({
        "port": server.port,
        "steps": [
            {"send": "GET /before HTTP/1.1\r\nHost: x\r\n\r\n"},
            {"read": 1},
            {"touch": used.to_str()},
            {"wait_file": attached.to_str(), "timeout": 90},
            {"send": "GET /after?id=7 HTTP/1.1\r\nHost: x\r\nUser-Agent: raw-client\r\n\r\n"},
            {"read": 1},
        ]
    }));
    assert!(
        wait_until(Duration::from_secs(10), || used.exists()),
        "first request never completed"
    );
    let mut agent = Agent::attach(&[server.pid()]);
    std::fs::write(&attached, "").expect("touch");
    let report = raw_client_report(&client.output());
    assert_eq!(report["responses"][1]["status"], 200, "{report}");

    let tree = agent.collect(1);
    tree.assert_names(&[(SERVER, "GET /after")]);
    let s = tree.find(SERVER, "GET /after");
    tree.assert_attr(s, "http.response.status_code", "200");
    tree.assert_attr(s, "client.port", &report["local_port"].to_string());
    tree.assert_attr(s, "user_agent.original", "raw-client");
    tree.assert_attr(s, "url.query", "id=REDACTED");
    tree.assert_attr(
        s,
        "http.response.body.size",
        &"hello /after\n".len().to_string(),
    );
}
