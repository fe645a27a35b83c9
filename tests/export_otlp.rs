//! OTLP export of real traffic to receivers running inside the test (util/otlp.rs): a
//! tonic gRPC `TraceService`/`MetricsService` and a hyper `POST /v1/traces` server. One
//! agent traces a Python and a Node server; a request crossing both must arrive as one
//! trace under two resources. Also: HTTP/protobuf with gzip and an auth header set
//! through the OTel environment variables, metrics over OTLP, and a 30 s backend outage.

mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, metric::Data, number_data_point,
};
use util::otlp::{Collector, Proto, attr_str, res_attr};
use util::*;

/// The version the agent reports as its instrumentation scope (the workspace version).
const SONDE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Python (`/call`) -> Node: returns the servers and the path the Node server saw.
fn py_calls_node(py: &Server, node: &Server) -> String {
    let c = curl(&[&format!(
        "{}?url={}",
        py.url("/call"),
        node.url("/downstream")
    )]);
    assert!(c.status.success(), "curl failed: {}", c.stderr);
    assert_eq!(String::from_utf8_lossy(&c.body), "hello /downstream\n");
    "/downstream".to_owned()
}

/// Every request is grouped by resource: one `ResourceSpans` per process (no resource
/// twice in a request), each with one `ScopeSpans` of scope `sonde` and its version.
fn assert_request_shape(tree: &SpanTree, req: &ExportTraceServiceRequest) {
    let mut seen = Vec::new();
    for rs in &req.resource_spans {
        let res = rs.resource.as_ref();
        check!(tree, res.is_some(), "every ResourceSpans has a resource");
        let key = (
            res_attr(res, "service.name"),
            res_attr(res, "process.pid"),
            res_attr(res, "service.instance.id"),
        );
        check!(
            tree,
            !seen.contains(&key),
            "resource {key:?} appears in two ResourceSpans of one request"
        );
        seen.push(key);
        eqnice!(tree, rs.scope_spans.len(), 1, "one ScopeSpans per resource");
        let scope = rs.scope_spans[0].scope.as_ref();
        eqnice!(
            tree,
            scope.map(|s| (s.name.as_str(), s.version.as_str())),
            Some(("sonde", SONDE_VERSION)),
            "instrumentation scope"
        );
        check!(
            tree,
            !rs.scope_spans[0].spans.is_empty(),
            "no empty ScopeSpans"
        );
    }
}

/// The span tree of one `/call` through Python to Node, as received by the backend:
/// SERVER python -> CLIENT python (thread) -> SERVER node (injected), one trace, two
/// resources with their pids.
fn assert_cross_service_trace(collector: &Collector, py: &Server, node: &Server, leaf: &str) {
    let tree = collector.span_tree();
    tree.check_invariants();
    for r in collector.traces() {
        assert_request_shape(&tree, &r.request);
    }
    let leaf_name = format!("GET {leaf}");
    tree.assert_names(&[
        (SERVER, "GET /call"),
        (CLIENT, &leaf_name),
        (SERVER, &leaf_name),
    ]);
    let py_server = tree.find(SERVER, "GET /call");
    let py_client = tree.find(CLIENT, &leaf_name);
    let node_server = tree.find(SERVER, &leaf_name);
    tree.assert_root(py_server);
    tree.assert_child(py_server, py_client, "thread");
    tree.assert_child(py_client, node_server, "injected");
    for s in [py_server, py_client, node_server] {
        eqnice!(tree, s.trace_id(), py_server.trace_id(), "one trace");
        tree.assert_attr(s, "http.response.status_code", "200");
        tree.assert_attr(s, "http.request.method", "GET");
        eqnice!(tree, s.status_code(), 0, "status unset on a 200");
        check!(
            tree,
            s.get("status")
                .is_some_and(|st| st == &serde_json::json!({})),
            "no status at all on a 200: {}",
            s.summary()
        );
    }
    for (s, server, service) in [
        (py_server, py, "py_server"),
        (py_client, py, "py_server"),
        (node_server, node, "node_server"),
    ] {
        eqnice!(
            tree,
            s.res_attr("service.name").as_deref(),
            Some(service),
            "service.name of {}",
            s.summary()
        );
        eqnice!(
            tree,
            s.res_attr("process.pid"),
            Some(server.pid().to_string()),
            "process.pid of {}",
            s.summary()
        );
    }
    tree.assert_attr(py_client, "url.full", &node.url(leaf));
    tree.assert_attr(py_client, "server.port", &node.port.to_string());
    tree.assert_attr(node_server, "server.port", &node.port.to_string());
    tree.assert_attr(py_server, "server.port", &py.port.to_string());

    // Across requests, the spans of each process sit under that process's resource.
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    for r in collector.traces() {
        for rs in &r.request.resource_spans {
            let name = res_attr(rs.resource.as_ref(), "service.name").unwrap_or_default();
            let pid = res_attr(rs.resource.as_ref(), "process.pid").unwrap_or_default();
            let want_pid = if name == "node_server" {
                node.pid()
            } else {
                py.pid()
            };
            eqnice!(tree, pid, want_pid.to_string(), "process.pid of {name}");
            *by_service.entry(name).or_default() += rs.scope_spans[0].spans.len();
        }
    }
    eqnice!(
        tree,
        by_service,
        BTreeMap::from([("node_server".to_owned(), 1), ("py_server".to_owned(), 2)]),
        "spans per resource"
    );
}

/// Waits until the agent built `n` spans (SIGUSR1 report), then stops it at once with
/// SIGINT, which must flush the export queue before exiting 0.
fn stop_after_spans_built(agent: &mut Agent, n: u64) {
    let built = agent.wait_counter("spans_built", n, Duration::from_secs(15));
    assert!(
        built >= n,
        "the agent built {built} spans, expected {n}; stderr:\n{}",
        agent.stderr()
    );
    let spans = agent.stop();
    assert!(spans.is_empty(), "-o none prints no spans: {spans:?}");
}

/// Scenario 1: gRPC. `sonde attach --pid <python> --pid <node>`, Python calls Node: one
/// trace, two ResourceSpans, exact tree; SIGINT flushes.
#[test]
fn grpc_two_services_one_trace() {
    require_tracing!();
    let collector = Collector::grpc();
    let py = Server::python();
    let node = Server::node();
    let mut agent = AgentCmd::attach(&[py.pid(), node.pid()])
        .arg("--otlp-endpoint")
        .arg(collector.endpoint())
        .arg("--otlp-protocol")
        .arg("grpc")
        .output("none")
        .start();
    let leaf = py_calls_node(&py, &node);
    stop_after_spans_built(&mut agent, 3);

    // Everything was delivered before the agent exited: no waiting here.
    eqnice!(
        collector.span_tree(),
        collector.span_count(),
        3,
        "spans at the collector when the agent has exited"
    );
    assert_cross_service_trace(&collector, &py, &node, &leaf);
    for r in collector.traces() {
        check!(
            collector.span_tree(),
            r.headers
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/grpc")),
            "gRPC content-type: {:?}",
            r.headers
        );
    }
    eqnice!(
        collector.span_tree(),
        agent.counter("spans_exported"),
        3,
        "spans_exported"
    );
    eqnice!(
        collector.span_tree(),
        agent.counter("export_failures"),
        0,
        "export_failures"
    );
    eqnice!(
        collector.span_tree(),
        agent.counter("export_queue_dropped"),
        0,
        "export_queue_dropped"
    );
    // Metrics go to the same gRPC endpoint: the final export on shutdown (the default
    // interval is 60 s). Whether the exit report counts it: `exit_report_counts_*`.
    check!(
        collector.span_tree(),
        !collector.metrics().is_empty(),
        "metrics exported over gRPC on shutdown"
    );
}

/// The counters printed at exit account for every metrics export, including the last
/// one made on shutdown: `metric_exports` equals the requests the MetricsService got.
#[test]
fn exit_report_counts_final_metrics_export() {
    require_tracing!();
    let collector = Collector::grpc();
    let py = Server::python();
    let mut agent = AgentCmd::attach(&[py.pid()])
        .arg("--otlp-endpoint")
        .arg(collector.endpoint())
        .arg("--otlp-protocol")
        .arg("grpc")
        .start();
    assert!(curl(&[&py.url("/one")]).status.success());
    let tree = agent.collect(1);
    let received = collector.metrics().len() as u64;
    check!(tree, received >= 1, "the shutdown export arrived");
    eqnice!(
        tree,
        agent.counter("metric_exports"),
        received,
        "metric_exports at exit vs metrics requests the collector answered OK"
    );
}

/// Scenario 2: OTLP/HTTP (protobuf) with gzip, configured by the OTel environment
/// variables; `--otlp-header authorization=...` arrives as an HTTP header; `sonde config`
/// shows the effective settings with the secret masked.
#[test]
fn http_protobuf_gzip_env_config_and_header() {
    require_tracing!();
    let collector = Collector::http();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
    ];

    // `sonde config` with the same environment and flag.
    let out = std::process::Command::new(sonde_bin())
        .args(["config", "--otlp-header", "authorization=Bearer s3cret"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .env_remove("OTEL_TRACES_EXPORTER")
        .output()
        .expect("running sonde config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sonde config failed:\n{text}");
    assert!(
        !text.contains("s3cret"),
        "sonde config printed the secret:\n{text}"
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
            .unwrap_or_else(|| panic!("no `{key} = ` line in sonde config:\n{text}"))
            .to_owned()
    };
    let headers = line("headers");
    assert!(
        headers.contains("authorization") && headers.contains("****") && headers.contains("flag"),
        "headers masked, from the flag: {headers}\n{text}"
    );
    let endpoint = line("endpoint");
    assert!(
        endpoint.contains(&collector.endpoint())
            && endpoint.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "endpoint from the environment: {endpoint}\n{text}"
    );
    let protocol = line("protocol");
    assert!(
        protocol.contains("\"http/protobuf\"") && protocol.contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
        "protocol from the environment: {protocol}\n{text}"
    );
    let compression = line("compression");
    assert!(
        compression.contains("\"gzip\"") && compression.contains("OTEL_EXPORTER_OTLP_COMPRESSION"),
        "compression from the environment: {compression}\n{text}"
    );
    let enabled = line("enabled");
    assert!(
        enabled.contains("true"),
        "export enabled: {enabled}\n{text}"
    );

    // The agent with the same settings.
    let py = Server::python();
    let node = Server::node();
    let mut cmd = AgentCmd::attach(&[py.pid(), node.pid()])
        .arg("--otlp-header")
        .arg("authorization=Bearer s3cret")
        .output("none");
    for (k, v) in &env {
        cmd = cmd.env(k, v);
    }
    let mut agent = cmd.start();
    let leaf = py_calls_node(&py, &node);
    stop_after_spans_built(&mut agent, 3);
    assert!(
        !agent.stopped().stderr.contains("s3cret"),
        "the agent printed the secret:\n{}",
        agent.stopped().stderr
    );

    eqnice!(
        collector.span_tree(),
        collector.span_count(),
        3,
        "spans at the collector when the agent has exited"
    );
    assert_cross_service_trace(&collector, &py, &node, &leaf);
    let tree = collector.span_tree();
    for r in collector.traces() {
        eqnice!(
            tree,
            r.path,
            "/v1/traces",
            "path appended to the base endpoint"
        );
        let h = |k: &str| {
            r.headers
                .get(k)
                .map(|v| v.to_str().unwrap_or("<binary>").to_owned())
        };
        eqnice!(
            tree,
            h("authorization").as_deref(),
            Some("Bearer s3cret"),
            "the configured header"
        );
        eqnice!(tree, h("content-encoding").as_deref(), Some("gzip"), "gzip");
        eqnice!(
            tree,
            h("content-type").as_deref(),
            Some("application/x-protobuf"),
            "content-type"
        );
    }
    for r in collector.metrics() {
        eqnice!(tree, r.path, "/v1/metrics", "metrics path");
    }
    eqnice!(tree, agent.counter("spans_exported"), 3, "spans_exported");
    eqnice!(tree, agent.counter("export_failures"), 0, "export_failures");
}

// ===== metrics =====

/// `(method, status) -> count` of the `http.server.request.duration` histogram points of
/// `service`, plus the `sonde.*` sums, from one metrics request.
struct MetricsView {
    server_counts: BTreeMap<(String, String), u64>,
    sonde_sums: BTreeMap<String, i64>,
    problems: Vec<String>,
}

fn metrics_view(req: &ExportMetricsServiceRequest, service: &str) -> MetricsView {
    let mut v = MetricsView {
        server_counts: BTreeMap::new(),
        sonde_sums: BTreeMap::new(),
        problems: Vec::new(),
    };
    for rm in &req.resource_metrics {
        let svc = res_attr(rm.resource.as_ref(), "service.name").unwrap_or_default();
        for sm in &rm.scope_metrics {
            let scope = sm.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            if scope != "sonde" {
                v.problems.push(format!("scope {scope:?} of {svc}"));
            }
            for m in &sm.metrics {
                if m.name == "http.server.request.duration" && svc == service {
                    histogram_points(m, &mut v);
                } else if let Some(name) = m.name.strip_prefix("sonde.")
                    && let Some(Data::Sum(sum)) = &m.data
                {
                    // Counters are monotonic cumulative sums (gauges are skipped).
                    if !sum.is_monotonic
                        || sum.aggregation_temporality != AggregationTemporality::Cumulative as i32
                    {
                        v.problems
                            .push(format!("{} is not a cumulative counter", m.name));
                    }
                    for p in &sum.data_points {
                        if let Some(number_data_point::Value::AsInt(i)) = p.value {
                            *v.sonde_sums.entry(name.to_owned()).or_default() += i;
                        }
                    }
                }
            }
        }
    }
    v
}

fn histogram_points(m: &Metric, v: &mut MetricsView) {
    let Some(Data::Histogram(h)) = &m.data else {
        v.problems.push(format!("{} is not a histogram", m.name));
        return;
    };
    if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
        v.problems.push("histogram is not cumulative".into());
    }
    if m.unit != "s" {
        v.problems.push(format!("unit {:?}, expected s", m.unit));
    }
    for p in &h.data_points {
        let method = attr_str(&p.attributes, "http.request.method").unwrap_or_default();
        let status = attr_str(&p.attributes, "http.response.status_code").unwrap_or_default();
        let buckets: u64 = p.bucket_counts.iter().sum();
        if buckets != p.count {
            v.problems.push(format!(
                "{method} {status}: bucket counts sum to {buckets}, count is {}",
                p.count
            ));
        }
        if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            v.problems.push(format!(
                "{method} {status}: {} buckets for {} bounds",
                p.bucket_counts.len(),
                p.explicit_bounds.len()
            ));
        }
        *v.server_counts.entry((method, status)).or_default() += p.count;
    }
}

/// Scenario 3: with OTEL_METRIC_EXPORT_INTERVAL=500 the MetricsService receives the RED
/// histogram (count per method and status) and the agent's own counters while it runs.
#[test]
fn metrics_over_otlp_grpc() {
    require_tracing!();
    let collector = Collector::grpc();
    let py = Server::python();
    let mut agent = AgentCmd::attach(&[py.pid()])
        .arg("--otlp-endpoint")
        .arg(collector.endpoint())
        .arg("--otlp-protocol")
        .arg("grpc")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .start();
    let mut want = BTreeMap::new();
    for (path, status, n) in [
        ("/ok", "200", 3u64),
        ("/missing", "404", 2),
        ("/status/500", "500", 1),
    ] {
        for _ in 0..n {
            let c = curl(&[&py.url(path)]);
            assert!(c.status.success(), "curl failed: {}", c.stderr);
            assert_eq!(c.writeouts[0].http_code.to_string(), status);
        }
        want.insert(("GET".to_owned(), status.to_owned()), n);
    }
    agent.wait_for_spans(6, Duration::from_secs(10));

    // Periodic exports while the agent runs (not only the last one on shutdown).
    let mut last = None;
    let arrived = wait_until(Duration::from_secs(10), || {
        last = collector
            .metrics()
            .last()
            .map(|r| metrics_view(&r.request, "py_server"));
        last.as_ref().is_some_and(|v| v.server_counts == want)
    });
    // And another one 500 ms later, still while the agent runs.
    let seen = collector.metrics().len();
    wait_until(Duration::from_secs(3), || collector.metrics().len() > seen);
    let exports_while_running = collector.metrics().len();
    let tree = agent.collect(6);
    let view = last.expect("at least one metrics request");
    check!(
        tree,
        arrived,
        "http.server.request.duration counts per (method, status): got {:?}, want {want:?}",
        view.server_counts
    );
    check!(
        tree,
        view.problems.is_empty(),
        "metrics shape: {:?}",
        view.problems
    );
    check!(
        tree,
        exports_while_running >= 2,
        "exports every 500 ms while running: {exports_while_running} request(s)"
    );
    for (name, min) in [
        ("spans_built", 6),
        ("events_read", 1),
        ("processes_traced", 1),
    ] {
        check!(
            tree,
            view.sonde_sums.get(name).is_some_and(|v| *v >= min),
            "sonde.{name} >= {min}: {:?}",
            view.sonde_sums
        );
    }
    check!(
        tree,
        view.sonde_sums.contains_key("export_queue_dropped")
            && view.sonde_sums.contains_key("spans_exported"),
        "export counters present: {:?}",
        view.sonde_sums
    );
    // The final export on shutdown has the same totals.
    let final_view = metrics_view(
        &collector.metrics().last().expect("a request").request,
        "py_server",
    );
    eqnice!(
        tree,
        final_view.server_counts,
        want,
        "the last export (on shutdown)"
    );
    check!(
        tree,
        agent.counter("metric_exports") >= 3,
        "metric_exports {}",
        agent.counter("metric_exports")
    );
    eqnice!(
        tree,
        agent.counter("metric_export_failures"),
        0,
        "metric_export_failures"
    );
}

// ===== outage =====

/// Untraced requests to a traced server every `every` until stopped; counts successes.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16, path: &'static str, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (s, o) = (Arc::clone(&stop), Arc::clone(&ok));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let resp = raw_get_close(port, path);
                if resp.starts_with(b"HTTP/1.1 200") {
                    o.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            ok,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("traffic thread");
        }
        self.ok.load(Ordering::Relaxed)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Scenario 4: the backend is down for 30 s while traffic flows, then comes back on the
/// same port. Memory stays bounded during the outage, export resumes without a restart,
/// and the losses are counted.
#[test]
fn backend_outage_thirty_seconds_then_recovery() {
    require_tracing!();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let py = Server::python();
    let mut agent = AgentCmd::attach(&[py.pid()])
        .arg("--otlp-endpoint")
        .arg(&endpoint)
        .arg("--otlp-protocol")
        .arg("grpc")
        .output("none")
        .start();

    let outage = Instant::now();
    let traffic = Traffic::start(py.port, "/during-outage", Duration::from_millis(20));
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    while outage.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            agent.is_running(),
            "the agent died during the outage:\n{}",
            agent.stderr()
        );
        samples.push((outage.elapsed(), agent.rss_kib()));
    }
    let sent_during = traffic.finish();
    // The last requests' spans may still be in the pipeline.
    agent.wait_counter("spans_built", sent_during, Duration::from_secs(5));
    let during = agent.counters_now();
    let report = || {
        format!(
            "RSS samples (s, KiB): {:?}\ncounters: {during:?}\nstderr:\n{}",
            samples
                .iter()
                .map(|(t, kib)| (t.as_secs(), *kib))
                .collect::<Vec<_>>(),
            agent.stderr()
        )
    };
    assert!(
        sent_during > 500,
        "steady traffic during the outage: {sent_during} requests"
    );
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    assert!(max < 64 * 1024, "RSS stays under 64 MiB: {}", report());
    let at = |secs: u64| {
        samples
            .iter()
            .find(|(t, _)| t.as_secs() >= secs)
            .map_or(0, |s| s.1)
    };
    let (at10, at30) = (at(10), samples.last().map_or(0, |s| s.1));
    assert!(
        at30 <= at10 + 4 * 1024,
        "RSS grows by at most 4 MiB between 10 s and 30 s of outage ({at10} -> {at30} KiB): {}",
        report()
    );
    assert!(
        during.get("spans_built").copied().unwrap_or(0) >= sent_during,
        "every request of the outage ({sent_during}) became a span: {}",
        report()
    );
    assert_eq!(
        during.get("spans_exported").copied(),
        Some(0),
        "nothing exported while the backend is down: {}",
        report()
    );

    // The backend comes back on the same port.
    let collector = Collector::start(
        Proto::Grpc,
        format!("127.0.0.1:{port}").parse().expect("addr"),
    );
    let back = Instant::now();
    let traffic = Traffic::start(py.port, "/after-outage", Duration::from_millis(20));
    let resumed = wait_until(Duration::from_secs(20), || {
        collector
            .span_tree()
            .spans
            .iter()
            .any(|s| s.name() == "GET /after-outage")
    });
    let sent_after = traffic.finish();
    assert!(
        resumed,
        "no span of the traffic after the outage reached the restarted backend within {:?} \
         ({sent_after} requests sent); received: {}\n{}",
        back.elapsed(),
        collector.describe(),
        report()
    );
    assert!(
        agent.is_running(),
        "the agent is still running:\n{}",
        agent.stderr()
    );
    agent.stop();
    let tree = collector.span_tree();
    tree.check_invariants();
    for s in &tree.spans {
        eqnice!(
            tree,
            s.res_attr("process.pid"),
            Some(py.pid().to_string()),
            "every exported span is the Python server's"
        );
        check!(
            tree,
            s.name() == "GET /after-outage" || s.name() == "GET /during-outage",
            "only the test's spans: {}",
            s.summary()
        );
    }
    let after = tree.all(SERVER, "GET /after-outage").len() as u64;
    let exported = agent.counter("spans_exported");
    let dropped = agent.counter("export_queue_dropped");
    let failures = agent.counter("export_failures");
    let failed_spans = agent.counter("export_failed_spans");
    let c = agent.counters();
    eqnice!(
        tree,
        exported,
        tree.len() as u64,
        "spans_exported counts what the backend accepted (counters {c:?})"
    );
    check!(
        tree,
        dropped > 0 || failures > 0,
        "the outage's losses are counted: export_queue_dropped {dropped}, export_failures \
         {failures} (counters {c:?})"
    );
    check!(
        tree,
        after == sent_after,
        "every request after recovery was exported: {after} of {sent_after} (counters {c:?})"
    );
    // Whatever was built is accounted for: exported, dropped from the queue, or lost in
    // requests given up.
    let built = agent.counter("spans_built");
    check!(
        tree,
        exported + dropped + failed_spans == built,
        "exported {exported} + queue_dropped {dropped} + failed_spans {failed_spans} == \
         spans_built {built} (counters {c:?})"
    );
}
