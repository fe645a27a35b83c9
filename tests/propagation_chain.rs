//! Context propagation across services, every link made by the `traceparent` Sonde
//! inserts into outgoing requests:
//! - a chain curl -> nginx (reverse proxy) -> Python -> Node, every server traced by one
//!   agent: one trace per request, with the expected tree and parent sources, also for
//!   several requests over one keep-alive connection;
//! - two "hosts": network namespaces joined by a veth pair, one agent per side. The two
//!   agents share nothing, so the client and server spans can only join through the
//!   header, or over HTTPS through the TCP header option (nothing can be inserted into
//!   TLS); with `--no-inject` on the client's agent they do not.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use util::*;

// ===== 1. curl -> nginx -> Python -> Node =====

/// Requests sent through the chain over one curl keep-alive connection.
const CHAIN_REQUESTS: usize = 4;

/// A traced nginx proxying to a traced Python service whose `/call` handler calls a traced
/// Node service, all under one agent.
struct Chain {
    node: Server,
    python: Server,
    nginx: Server,
    agent: Agent,
}

impl Chain {
    /// `conf` is the nginx template: `nginx_proxy.conf` (a new upstream connection per
    /// request) or `nginx_keepalive_proxy.conf` (upstream connections reused).
    fn start(conf: &str) -> Self {
        let node = Server::node();
        let python = Server::python();
        let nginx = Server::nginx(conf, &[("UPSTREAM", python.port.to_string())], |_| {});
        let agent = Agent::attach(&[nginx.pid(), python.pid(), node.pid()]);
        Self {
            node,
            python,
            nginx,
            agent,
        }
    }

    /// The URL curl asks nginx for: Python's `/call`, which fetches Node's `/leaf/<i>`.
    fn url(&self, i: usize) -> String {
        let leaf = self.node.url(&format!("/leaf/{i}"));
        self.nginx.url(&format!("/call?url={leaf}"))
    }

    /// Sends `n` requests with one curl (one keep-alive connection), back to back or at
    /// most `rate` per second (curl `--rate`); checks each answer.
    fn send(&self, n: usize, rate: Option<&str>) {
        let urls: Vec<String> = (0..n).map(|i| self.url(i)).collect();
        let mut args: Vec<&str> = Vec::new();
        if let Some(rate) = rate {
            args.extend(["--rate", rate]);
        }
        args.extend(urls.iter().map(String::as_str));
        let c = curl(&args);
        assert!(c.status.success(), "curl failed: {}", c.stderr);
        let expected: String = (0..n).map(|i| format!("hello /leaf/{i}\n")).collect();
        assert_eq!(
            String::from_utf8_lossy(&c.body),
            expected,
            "bodies relayed from Node through Python and nginx\n{}\n{}",
            self.nginx.logs(),
            self.python.logs()
        );
        let connects: u32 = c.writeouts.iter().map(|w| w.num_connects).sum();
        assert_eq!(connects, 1, "curl reused its connection: {:?}", c.writeouts);
    }
}

/// The one span of `trace` with this kind, name and `service.name`.
fn span_in<'a>(tree: &'a SpanTree, trace: &str, kind: i64, name: &str, service: &str) -> &'a Value {
    let found: Vec<&Value> = tree
        .all(kind, name)
        .into_iter()
        .filter(|s| s.trace_id() == trace && s.res_attr("service.name").as_deref() == Some(service))
        .collect();
    check!(
        tree,
        found.len() == 1,
        "expected one {service} span kind={kind} {name:?} in trace {trace}, found {}",
        found.len()
    );
    found[0]
}

/// A SERVER span whose parent came from the injected W3C header: `source` is `injected`
/// when one agent traces both ends (it knows it inserted the header), `header` across
/// agents (hosts).
fn assert_header_child(tree: &SpanTree, client: &Value, server: &Value, source: &str) {
    tree.assert_child(client, server, source);
    tree.assert_attr(server, "sonde.parent.format", "tracecontext");
    tree.assert_attr(client, "sonde.inject", "injected");
}

/// How nginx reaches the Python service, and how fast curl sends its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    /// `nginx_proxy.conf`: a new upstream connection per request; curl back to back.
    PerRequest,
    /// `nginx_keepalive_proxy.conf`: one upstream connection reused; curl sends 4
    /// requests a second, so the agent re-enrols the idle upstream socket in between.
    KeepAlivePaced,
}

impl Upstream {
    fn conf(self) -> &'static str {
        match self {
            Self::PerRequest => "nginx_proxy.conf",
            Self::KeepAlivePaced => "nginx_keepalive_proxy.conf",
        }
    }

    fn curl_rate(self) -> Option<&'static str> {
        (self == Self::KeepAlivePaced).then_some("4/s")
    }
}

/// Request `i` is a trace of exactly five spans:
/// nginx SERVER -> nginx CLIENT (thread) -> Python SERVER (header) -> Python CLIENT
/// (thread) -> Node SERVER (header). Returns its trace ID.
fn assert_chain_trace(tree: &SpanTree, chain: &Chain, i: usize) -> String {
    let leaf = format!("GET /leaf/{i}");
    let node_server = tree.find(SERVER, &leaf);
    let trace = node_server.trace_id().to_owned();
    let py_client = span_in(tree, &trace, CLIENT, &leaf, "py_server");
    let py_server = span_in(tree, &trace, SERVER, "GET /call", "py_server");
    let nginx_client = span_in(tree, &trace, CLIENT, "GET /call", "nginx");
    let nginx_server = span_in(tree, &trace, SERVER, "GET /call", "nginx");
    eqnice!(
        tree,
        node_server.res_attr("service.name").as_deref(),
        Some("node_server"),
        "Node answers /leaf/{i}"
    );
    let in_trace = tree.spans.iter().filter(|s| s.trace_id() == trace).count();
    eqnice!(tree, in_trace, 5, "spans in the trace of request {i}");

    tree.assert_root(nginx_server);
    tree.assert_child(nginx_server, nginx_client, "thread");
    assert_header_child(tree, nginx_client, py_server, "injected");
    tree.assert_child(py_server, py_client, "thread");
    assert_header_child(tree, py_client, node_server, "injected");
    tree.assert_attr(nginx_client, "server.port", &chain.python.port.to_string());
    tree.assert_attr(
        py_client,
        "url.full",
        &chain.node.url(&format!("/leaf/{i}")),
    );
    tree.assert_attr(node_server, "server.port", &chain.node.port.to_string());
    let body_size = format!("hello /leaf/{i}\n").len().to_string();
    for s in [
        nginx_server,
        nginx_client,
        py_server,
        py_client,
        node_server,
    ] {
        tree.assert_attr(s, "http.response.status_code", "200");
        tree.assert_attr(s, "http.response.body.size", &body_size);
    }
    trace
}

fn check_chain(upstream: Upstream) {
    let mut chain = Chain::start(upstream.conf());
    chain.send(CHAIN_REQUESTS, upstream.curl_rate());
    let tree = chain.agent.collect(5 * CHAIN_REQUESTS);
    eqnice!(
        tree,
        tree.len(),
        5 * CHAIN_REQUESTS,
        "five spans per request"
    );
    let mut traces: Vec<String> = (0..CHAIN_REQUESTS)
        .map(|i| assert_chain_trace(&tree, &chain, i))
        .collect();
    traces.sort();
    traces.dedup();
    eqnice!(tree, traces.len(), CHAIN_REQUESTS, "one trace per request");

    // The scenario itself: how many upstream connections nginx used.
    let mut upstream_ports: Vec<String> = tree
        .all(SERVER, "GET /call")
        .into_iter()
        .filter(|s| s.res_attr("service.name").as_deref() == Some("py_server"))
        .filter_map(|s| s.attr_str("client.port"))
        .collect();
    upstream_ports.sort();
    upstream_ports.dedup();
    let expected = match upstream {
        Upstream::PerRequest => CHAIN_REQUESTS,
        Upstream::KeepAlivePaced => 1,
    };
    eqnice!(
        tree,
        upstream_ports.len(),
        expected,
        "upstream connections nginx used ({upstream:?})"
    );
}

/// curl -> nginx -> Python -> Node over one curl keep-alive connection, nginx opening a
/// new upstream connection per request: every cross-process link is the injected header.
#[test]
fn four_service_chain_is_one_trace_per_request() {
    require_tracing!();
    check_chain(Upstream::PerRequest);
}

/// The same chain with nginx reusing one upstream connection, requests paced: from the
/// second request on, the header rides on a socket the agent re-enrolled while idle.
///
/// This caught a real bug: the insertion split the message into scatterlist elements that
/// tcp_bpf sent one by one, so the request line left alone and Nagle held the rest until
/// the peer's delayed ACK (40 ms); the server's first read had no header. The sk_msg
/// program now makes an edited message contiguous again.
#[test]
fn four_service_chain_over_keepalive_upstream() {
    require_tracing!();
    check_chain(Upstream::KeepAlivePaced);
}

// ===== 2. two "hosts": one agent per network namespace =====

/// Two network namespaces joined by a veth pair (`<net>.1` in `a`, `<net>.2` in `b`),
/// deleted on drop, also when the test panics. Names are unique per test process and
/// call; the veth goes away with its namespaces.
struct TwoHosts {
    a: String,
    b: String,
    addr_a: String,
    addr_b: String,
}

impl TwoHosts {
    fn create() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}x{n}", pid % 100_000);
        let net = format!("10.{}.{}", 100 + pid % 100, n % 250);
        // The guard exists before anything is created, so a failure below still cleans up.
        let hosts = Self {
            a: format!("sonde-a-{tag}"),
            b: format!("sonde-b-{tag}"),
            addr_a: format!("{net}.1"),
            addr_b: format!("{net}.2"),
        };
        // Interface names are limited to 15 bytes: "sva" + at most 12.
        let (veth_a, veth_b) = (format!("sva{tag}"), format!("svb{tag}"));
        let (a, b) = (hosts.a.as_str(), hosts.b.as_str());
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        ip(&[
            "link", "add", &veth_a, "netns", a, "type", "veth", "peer", "name", &veth_b, "netns", b,
        ]);
        for (ns, dev, addr) in [(a, &veth_a, &hosts.addr_a), (b, &veth_b, &hosts.addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    /// `ip netns exec <ns> <command...>`: `ip` enters the namespace and execs the
    /// command, so the child's pid is the command's.
    fn exec(ns: &str, command: &[&str]) -> Vec<String> {
        ["ip", "netns", "exec", ns]
            .into_iter()
            .chain(command.iter().copied())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `py_server.py` listening on `addr` inside namespace `ns`, killed on drop; waits for
/// its "ready" line (the test process cannot connect into the namespace to check).
fn python_in(ns: &str, addr: &str, port: u16) -> Proc {
    python_fixture_in(ns, "py_server.py", &[&port.to_string(), addr], &[])
}

/// The Python server `fixture` started with `args` (and `env`) inside namespace `ns`, as
/// [`python_in`] does.
fn python_fixture_in(ns: &str, fixture_name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let py = python();
    let py = py.to_str().expect("utf-8 python path");
    let path = fixture(fixture_name);
    let mut command = vec![py, path.to_str().expect("utf-8 path")];
    command.extend_from_slice(args);
    let argv = TwoHosts::exec(ns, &command);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_remove("OTEL_SERVICE_NAME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut server = Proc::spawn(cmd);
    let stdout = server
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("server stdout is piped");
    // read_line returns at EOF too, if the server dies first.
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    assert_eq!(line.trim(), "ready", "{fixture_name} in {ns} did not start");
    server
}

/// What the two agents saw of one request from host A to host B.
struct CrossHost {
    tree: SpanTree,
    client: Value,
    server: Value,
}

/// Host B runs a Python server traced by agent B (attached to its pid); host A runs curl
/// under agent A (`sonde run ... -- ip netns exec A curl`, plus `agent_a_flags`). The
/// agents are separate processes: nothing but the bytes on the wire connects them.
fn cross_host_request(agent_a_flags: &[&str]) -> CrossHost {
    cross_host(agent_a_flags, None)
}

/// [`cross_host_request`] over HTTPS: `py_tls_server.py` on host B with a throwaway
/// certificate, curl naming it `localhost` (resolved to B's address) so it matches.
fn cross_host_tls_request(agent_a_flags: &[&str]) -> CrossHost {
    cross_host(agent_a_flags, Some(&util::tls::Certs::new()))
}

fn cross_host(agent_a_flags: &[&str], tls: Option<&util::tls::Certs>) -> CrossHost {
    let hosts = TwoHosts::create();
    let port = free_port();
    let (server, url, curl_args) = match tls {
        None => (
            python_in(&hosts.b, &hosts.addr_b, port),
            format!("http://{}:{port}/two-hosts", hosts.addr_b),
            Vec::new(),
        ),
        Some(certs) => {
            let (cert, key) = (path_str(&certs.cert), path_str(&certs.key));
            let server = python_fixture_in(
                &hosts.b,
                "py_tls_server.py",
                &[&cert, &key, &port.to_string()],
                &[("BIND_ADDR", &hosts.addr_b)],
            );
            let resolve = format!("localhost:{port}:{}", hosts.addr_b);
            let args = vec![
                "--resolve".to_owned(),
                resolve,
                "--cacert".to_owned(),
                path_str(&certs.ca),
            ];
            (server, format!("https://localhost:{port}/two-hosts"), args)
        }
    };
    let mut agent_b = Agent::attach(&[server.pid()]);

    let mut curl: Vec<&str> = vec!["curl", "-sS", "--max-time", "10"];
    curl.extend(curl_args.iter().map(String::as_str));
    curl.push(&url);
    let client_cmd = TwoHosts::exec(&hosts.a, &curl);
    let mut cmd = AgentCmd::run(&client_cmd);
    for flag in agent_a_flags {
        cmd = cmd.arg(*flag);
    }
    let mut agent_a = cmd.spawn_unready();
    let a = agent_a.wait_exit_ok(
        Duration::from_secs(60),
        &format!("agent A (or curl in {})", hosts.a),
    );
    let b_spans = agent_b.collect(1).spans;

    let context = format!(
        "--- agent A stderr:\n{}\n--- agent B stderr:\n{}",
        a.stderr,
        agent_b.stopped().stderr
    );
    let a_tree = SpanTree::new(a.spans.clone()).with_context(&context);
    a_tree.check_invariants();
    a_tree.assert_names(&[(CLIENT, "GET /two-hosts")]);
    let b_tree = SpanTree::new(b_spans.clone()).with_context(&context);
    b_tree.assert_names(&[(SERVER, "GET /two-hosts")]);

    let tree = SpanTree::new([a.spans, b_spans].concat()).with_context(&context);
    let client = tree.find(CLIENT, "GET /two-hosts").clone();
    let server_span = tree.find(SERVER, "GET /two-hosts").clone();
    tree.assert_attr(&client, "url.full", &url);
    tree.assert_attr(&client, "http.response.status_code", "200");
    tree.assert_attr(&server_span, "http.response.status_code", "200");
    tree.assert_attr(&server_span, "server.port", &port.to_string());
    CrossHost {
        tree,
        client,
        server: server_span,
    }
}

/// The client's agent inserts `traceparent`; the server's agent, which never saw the
/// client span, continues it: one trace across the two "hosts".
#[test]
fn two_hosts_join_through_the_header_alone() {
    require_tracing!();
    let CrossHost {
        tree,
        client,
        server,
    } = cross_host_request(&[]);
    tree.assert_root(&client);
    tree.assert_attr(&client, "sonde.inject", "injected");
    assert_header_child(&tree, &client, &server, "header");
}

/// Negative control: with `--no-inject` on the client's agent nothing crosses, and the
/// server span starts its own trace.
#[test]
fn two_hosts_without_injection_are_two_traces() {
    require_tracing!();
    let CrossHost {
        tree,
        client,
        server,
    } = cross_host_request(&["--no-inject"]);
    tree.assert_root(&client);
    check!(
        tree,
        client.attr("sonde.inject").is_none(),
        "no sonde.inject without injection"
    );
    tree.assert_root(&server);
    check!(
        tree,
        server.trace_id() != client.trace_id(),
        "the server span starts its own trace"
    );
}

fn path_str(p: &std::path::Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_owned()
}

/// HTTPS between the two hosts: nothing can be inserted into TLS, but agent A decides the
/// client span when curl's `SSL_write` starts and sends it in a TCP header option on the
/// request's segment; agent B's TLS server span continues it (`tcp_option`), though the
/// agents share nothing.
#[test]
fn two_hosts_join_over_tls_through_the_tcp_option() {
    require_tracing!();
    if !util::tls::openssl_available() {
        return;
    }
    let CrossHost {
        tree,
        client,
        server,
    } = cross_host_tls_request(&[]);
    tree.assert_root(&client);
    for s in [&client, &server] {
        tree.assert_attr(s, "url.scheme", "https");
        tree.assert_attr(s, "sonde.tls.library", "openssl");
    }
    check!(
        tree,
        client.attr("sonde.inject").is_none(),
        "nothing is inserted into TLS"
    );
    tree.assert_child(&client, &server, "tcp_option");
}

/// Negative control: with `--no-inject` on the client's agent no option is sent, and the
/// TLS server span starts its own trace.
#[test]
fn two_hosts_over_tls_without_injection_are_two_traces() {
    require_tracing!();
    if !util::tls::openssl_available() {
        return;
    }
    let CrossHost {
        tree,
        client,
        server,
    } = cross_host_tls_request(&["--no-inject"]);
    tree.assert_root(&client);
    tree.assert_root(&server);
    check!(
        tree,
        server.trace_id() != client.trace_id(),
        "the server span starts its own trace"
    );
}
