//! Parent-child links: a CLIENT span made while a SERVER request is handled (same
//! thread, a thread or process the handler starts, never a stale pool thread), incoming
//! context headers (W3C, B3, Jaeger, X-Ray; decided in the kernel), an application's own
//! header on an outgoing call, and a SERVER span under the traced CLIENT span of the
//! other end of a loopback connection (nginx reverse proxy in front of Python).

mod util;

use std::time::Duration;

use serde_json::Value;

use util::*;

/// A traced Python server whose handlers call an untraced Python upstream.
struct HandlerSetup {
    upstream: Server,
    front: Server,
    agent: Agent,
}

impl HandlerSetup {
    fn start() -> Self {
        let upstream = Server::python(); // not traced
        let front = Server::python();
        let agent = Agent::attach(&[front.pid()]);
        Self {
            upstream,
            front,
            agent,
        }
    }

    /// curl of `route?url=<upstream upstream_path>`, after `curl_args`; must succeed.
    fn call(&self, route: &str, upstream_path: &str, curl_args: &[&str]) -> Curl {
        let url = format!(
            "{}?url={}",
            self.front.url(route),
            self.upstream.url(upstream_path)
        );
        let mut args = curl_args.to_vec();
        args.push(&url);
        let c = curl(&args);
        assert!(c.status.success(), "curl failed: {}", c.stderr);
        c
    }
}

/// Scenario 11a: the handler calls another service with urllib on its own thread.
#[test]
fn handler_urllib_call_is_child_via_thread() {
    require_tracing!();
    let mut h = HandlerSetup::start();
    let c = h.call("/call", "/size/64", &[]);
    assert_eq!(c.body.len(), 64);

    let tree = h.agent.collect(2);
    tree.assert_names(&[(SERVER, "GET /call"), (CLIENT, "GET /size/64")]);
    let server = tree.find(SERVER, "GET /call");
    let client = tree.find(CLIENT, "GET /size/64");
    tree.assert_root(server);
    tree.assert_child(server, client, "thread");
    tree.assert_attr(server, "url.query", "url=REDACTED");
    tree.assert_attr(client, "url.full", &h.upstream.url("/size/64"));
    tree.assert_attr(client, "server.port", &h.upstream.port.to_string());
    tree.assert_attr(client, "http.response.body.size", "64");
    tree.assert_attr(server, "http.response.body.size", "64");
    eqnice!(
        tree,
        server.res_attr("process.pid"),
        client.res_attr("process.pid"),
        "same process"
    );
}

/// A header each supported format arrives in, the trace and parent it names, and the
/// `sonde.parent.format` it is reported as.
struct HeaderCase {
    headers: &'static [&'static str],
    trace_id: &'static str,
    parent_id: &'static str,
    format: &'static str,
}

const HEADER_CASES: [HeaderCase; 6] = [
    HeaderCase {
        headers: &[
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        ],
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        parent_id: "00f067aa0ba902b7",
        format: "tracecontext",
    },
    HeaderCase {
        headers: &["b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"],
        trace_id: "80f198ee56343ba864fe8b2a57d3eff7",
        parent_id: "e457b5a2e4d86bd1",
        format: "b3",
    },
    HeaderCase {
        headers: &[
            "X-B3-TraceId: 463ac35c9f6413ad",
            "X-B3-SpanId: a2fb4a1d1a96d312",
            "X-B3-Sampled: 1",
        ],
        trace_id: "0000000000000000463ac35c9f6413ad",
        parent_id: "a2fb4a1d1a96d312",
        format: "b3multi",
    },
    HeaderCase {
        headers: &["uber-trace-id: 5ba3e6a4c2b6ab1c9d2a3f4e5b6c7d8e:7b2a9c4d5e6f7a8b:0:1"],
        trace_id: "5ba3e6a4c2b6ab1c9d2a3f4e5b6c7d8e",
        parent_id: "7b2a9c4d5e6f7a8b",
        format: "jaeger",
    },
    HeaderCase {
        headers: &["uber-trace-id: abc%3A1f%3A0%3A1"],
        trace_id: "00000000000000000000000000000abc",
        parent_id: "000000000000001f",
        format: "jaeger",
    },
    HeaderCase {
        headers: &[
            "X-Amzn-Trace-Id: Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        ],
        trace_id: "5759e988bd862e3fe1be46a994272793",
        parent_id: "53995c3f42cd8ad8",
        format: "xray",
    },
];

/// The CLIENT span of the call to `upstream_path` and the SERVER span it was made under.
fn call_pair<'a>(tree: &'a SpanTree, upstream_path: &str) -> (&'a Value, &'a Value) {
    let client = tree.find(CLIENT, &format!("GET {upstream_path}"));
    let server = client
        .parent_id()
        .and_then(|id| tree.by_id(id))
        .unwrap_or_else(|| panic!("no parent for {}\n{:#?}", client.summary(), tree.spans));
    (server, client)
}

fn curl_headers(headers: &[&'static str]) -> Vec<&'static str> {
    headers.iter().flat_map(|h| ["-H", *h]).collect()
}

/// A request that arrives with a trace context header continues that trace: the kernel
/// decides it when the request is read, so the SERVER span's parent is the header's span
/// (source "header", with its format) and the call the handler makes is already in that
/// trace. The CLIENT span's trace ID proves the decision was made in the kernel before the
/// call was written: userspace no longer renames traces from headers.
#[test]
fn incoming_context_headers_are_continued() {
    require_tracing!();
    let mut h = HandlerSetup::start();
    for (i, case) in HEADER_CASES.iter().enumerate() {
        h.call(
            "/call",
            &format!("/size/{}", i + 1),
            &curl_headers(case.headers),
        );
    }

    let tree = h.agent.collect(2 * HEADER_CASES.len());
    for (i, case) in HEADER_CASES.iter().enumerate() {
        let (server, client) = call_pair(&tree, &format!("/size/{}", i + 1));
        eqnice!(tree, server.name(), "GET /call", "the client's parent");
        eqnice!(
            tree,
            server.trace_id(),
            case.trace_id,
            "trace of {}",
            case.format
        );
        eqnice!(
            tree,
            server.parent_id(),
            Some(case.parent_id),
            "parent of {}",
            case.format
        );
        tree.assert_attr(server, "sonde.parent.source", "header");
        tree.assert_attr(server, "sonde.parent.format", case.format);
        tree.assert_child(server, client, "thread");
        eqnice!(tree, client.trace_id(), case.trace_id, "the call's trace");
        let trace_state = server["traceState"].as_str();
        if case.format == "tracecontext" {
            eqnice!(
                tree,
                trace_state,
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                "tracestate"
            );
        } else {
            eqnice!(tree, trace_state, None, "tracestate only with traceparent");
        }
    }
}

/// Invalid traceparent values are ignored, as the W3C specification requires: the
/// request starts a new trace (its call still follows it, via the thread).
#[test]
fn invalid_traceparent_starts_a_new_trace() {
    require_tracing!();
    let mut h = HandlerSetup::start();
    let invalid = [
        "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "traceparent: ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ];
    for (i, header) in invalid.iter().enumerate() {
        h.call("/call", &format!("/size/{}", i + 1), &["-H", header]);
    }

    let tree = h.agent.collect(2 * invalid.len());
    for (i, header) in invalid.iter().enumerate() {
        let (server, client) = call_pair(&tree, &format!("/size/{}", i + 1));
        tree.assert_root(server);
        check!(
            tree,
            !server
                .trace_id()
                .eq_ignore_ascii_case("4bf92f3577b34da6a3ce929d0e0e4736"),
            "{header} must start a new trace"
        );
        tree.assert_child(server, client, "thread");
    }
}

/// An application that sets its own context header (an instrumented or forwarding
/// client, here curl run under `sonde run`) has its CLIENT span follow those IDs.
#[test]
fn outgoing_request_with_the_apps_own_header_follows_it() {
    require_tracing!();
    let upstream = Server::python(); // not traced
    for case in [&HEADER_CASES[0], &HEADER_CASES[1]] {
        let mut command = vec!["curl", "-sS", "-o", "/dev/null"];
        command.extend(curl_headers(case.headers));
        let url = upstream.url("/size/4");
        command.push(&url);
        let (_, tree) = sonde_run(&command);
        tree.assert_names(&[(CLIENT, "GET /size/4")]);
        let client = tree.find(CLIENT, "GET /size/4");
        eqnice!(tree, client.trace_id(), case.trace_id, "the app's trace");
        eqnice!(
            tree,
            client.parent_id(),
            Some(case.parent_id),
            "the app's span"
        );
        tree.assert_attr(client, "sonde.parent.source", "header");
        tree.assert_attr(client, "sonde.parent.format", case.format);
    }
}

/// The handler starts a thread that makes the call: the CLIENT span made on that new
/// thread is still the child of the handler's SERVER span (the context is handed down
/// when the thread is created).
#[test]
fn handler_thread_call_is_child() {
    require_tracing!();
    let mut h = HandlerSetup::start();
    let c = h.call("/thread", "/size/32", &[]);
    assert_eq!(c.body.len(), 32);

    let tree = h.agent.collect(2);
    tree.assert_names(&[(SERVER, "GET /thread"), (CLIENT, "GET /size/32")]);
    let server = tree.find(SERVER, "GET /thread");
    let client = tree.find(CLIENT, "GET /size/32");
    tree.assert_root(server);
    tree.assert_child(server, client, "fork");
}

/// A worker thread started while serving one request keeps no claim on later work: when
/// it makes a call for a later request, that call is not parented to the finished one.
#[test]
fn thread_started_by_an_old_request_does_not_parent_later_calls() {
    require_tracing!();
    let mut h = HandlerSetup::start();
    let init = curl(&[&h.front.url("/pool_init")]);
    assert!(init.status.success(), "curl failed: {}", init.stderr);
    let call = h.call("/pool_call", "/size/16", &[]);
    assert_eq!(call.body.len(), 16);

    let tree = h.agent.collect(3);
    tree.assert_names(&[
        (SERVER, "GET /pool_init"),
        (SERVER, "GET /pool_call"),
        (CLIENT, "GET /size/16"),
    ]);
    let init_span = tree.find(SERVER, "GET /pool_init");
    let client = tree.find(CLIENT, "GET /size/16");
    check!(
        tree,
        client["parentSpanId"] != init_span["spanId"],
        "the worker's call is not a child of the request that started the worker"
    );
}

/// Scenario 11b: the handler runs `curl` as a subprocess: its CLIENT span is the
/// child of the handler's SERVER span through the fork.
#[test]
fn handler_curl_subprocess_is_child_via_fork() {
    require_tracing!();
    let mut h = HandlerSetup::start();
    let c = h.call("/spawn", "/leaf", &[]);
    assert_eq!(String::from_utf8_lossy(&c.body), "hello /leaf\n");

    let tree = h.agent.collect(2);
    tree.assert_names(&[(SERVER, "GET /spawn"), (CLIENT, "GET /leaf")]);
    let server = tree.find(SERVER, "GET /spawn");
    let client = tree.find(CLIENT, "GET /leaf");
    tree.assert_root(server);
    tree.assert_child(server, client, "fork");
    eqnice!(
        tree,
        client.res_attr("service.name").as_deref(),
        Some("curl"),
        "the child span belongs to curl"
    );
    check!(
        tree,
        client.res_attr("process.pid") != server.res_attr("process.pid"),
        "a different process"
    );
    tree.assert_attr(client, "url.full", &h.upstream.url("/leaf"));
}

fn proxy() -> (Server, Server) {
    let upstream = Server::python();
    let nginx = Server::nginx(
        "nginx_proxy.conf",
        &[("UPSTREAM", upstream.port.to_string())],
        |_| {},
    );
    (upstream, nginx)
}

/// Scenario 11c: nginx reverse proxy and its Python upstream, both traced: nginx SERVER
/// -> nginx CLIENT (thread) -> python SERVER (the traceparent Sonde inserted into nginx's
/// upstream request), one trace.
#[test]
fn nginx_reverse_proxy_chain_is_one_trace() {
    require_tracing!();
    let (upstream, nginx) = proxy();
    let mut agent = Agent::attach(&[nginx.pid(), upstream.pid()]);
    let c = curl(&[&nginx.url("/api/hello?user=bob")]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(String::from_utf8_lossy(&c.body), "hello /api/hello\n");
    let curl_port = c.writeouts[0].local_port;

    let tree = agent.collect(3);
    tree.assert_names(&[
        (SERVER, "GET /api/hello"),
        (CLIENT, "GET /api/hello"),
        (SERVER, "GET /api/hello"),
    ]);
    let nginx_server = tree
        .all(SERVER, "GET /api/hello")
        .into_iter()
        .find(|s| s.res_attr("service.name").as_deref() == Some("nginx"))
        .unwrap_or_else(|| panic!("no nginx SERVER span\n{}", tree.dump()));
    let py_server = tree
        .all(SERVER, "GET /api/hello")
        .into_iter()
        .find(|s| s.res_attr("service.name").as_deref() == Some("py_server"))
        .unwrap_or_else(|| panic!("no py_server SERVER span\n{}", tree.dump()));
    let nginx_client = tree.find(CLIENT, "GET /api/hello");
    eqnice!(
        tree,
        nginx_client.res_attr("service.name").as_deref(),
        Some("nginx"),
        "nginx makes the CLIENT span"
    );
    tree.assert_root(nginx_server);
    tree.assert_child(nginx_server, nginx_client, "thread");
    tree.assert_child(nginx_client, py_server, "injected");
    tree.assert_attr(nginx_client, "sonde.inject", "injected");
    tree.assert_attr(nginx_server, "client.port", &curl_port.to_string());
    tree.assert_attr(nginx_client, "server.port", &upstream.port.to_string());
    tree.assert_attr(py_server, "server.port", &upstream.port.to_string());
    for s in [nginx_server, nginx_client, py_server] {
        tree.assert_attr(s, "http.response.status_code", "200");
        tree.assert_attr(s, "http.response.body.size", "17");
        eqnice!(tree, s.status_code(), 0, "status unset for {}", s.summary());
    }
    tree.assert_attr(nginx_client, "url.query", "user=REDACTED");
}

/// The proxied chain with large bodies: nginx reads its upstream with FIONREAD, which a
/// sockhash-enrolled socket breaks (measured on these hosts: a 100 KB response hung); responses must not stall and
/// the bytes must be intact.
#[test]
fn nginx_reverse_proxy_large_responses_do_not_stall() {
    require_tracing!();
    let (upstream, nginx) = proxy();
    let mut agent = Agent::attach(&[nginx.pid(), upstream.pid()]);
    let sizes = [100_000usize, 1_000_000, 10];
    for n in sizes {
        let t0 = std::time::Instant::now();
        let c = curl(&[
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            &nginx.url(&format!("/size/{n}")),
        ]);
        let took = t0.elapsed();
        assert!(
            c.status.success(),
            "curl /size/{n} through the traced proxy failed after {took:?}: {}",
            c.stderr
        );
        assert_eq!(c.writeouts[0].size_download, n as u64, "/size/{n} complete");
        assert!(
            took < Duration::from_secs(3),
            "/size/{n} through the traced proxy took {took:?}"
        );
    }
    let tree = agent.collect(3 * sizes.len());
    for n in sizes {
        let name = format!("GET /size/{n}");
        eqnice!(
            tree,
            tree.all(SERVER, &name).len(),
            2,
            "two SERVER spans for {name}"
        );
        let client = tree.find(CLIENT, &name);
        tree.assert_attr(client, "http.response.body.size", &n.to_string());
        for s in tree.all(SERVER, &name) {
            tree.assert_attr(s, "http.response.body.size", &n.to_string());
        }
    }
}
