//! The scrape endpoint over a real TCP connection: spans in, `GET /metrics`, parse.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sonde::metrics::Counters;
use sonde::serve::{Limits, Server, Serving};
use sonde::sinks::SpanSink;
use sonde::span_metrics::{
    SpanMetrics, SpanMetricsConfig, SpanMetricsSink, agent_resource, scrape,
};
use sonde::spans::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.to_owned(),
        attributes: vec![
            KeyValue::new("service.name", service.to_owned()),
            KeyValue::new("service.instance.id", format!("{service}-1")),
        ],
    })
}

fn http_span(kind: SpanKind, id: u8, parent: Option<u8>, service: &str, status: i64) -> Span {
    let sid = |n: u8| SpanId([0, 0, 0, 0, 0, 0, 0, n]);
    let mut attributes = vec![
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("url.path", "/api"),
        KeyValue::new("server.address", "backend.svc"),
        KeyValue::new("server.port", 8080),
        KeyValue::new("http.response.status_code", status),
    ];
    let mut st = Status::Unset;
    if status >= 500 {
        attributes.push(KeyValue::new("error.type", status.to_string()));
        st = Status::Error {
            message: format!("HTTP {status}"),
        };
    }
    Span {
        trace_id: TraceId([7; 16]),
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        trace_state: None,
        name: "GET /api".to_owned(),
        kind,
        start_unix_nano: 1_000_000_000,
        end_unix_nano: 1_030_000_000,
        status: st,
        attributes,
        resource: resource(service),
    }
}

/// The scrape route alone on a loopback port.
async fn start(metrics: &Arc<SpanMetrics>, limits: Limits) -> (Serving, SocketAddr) {
    let server = Server::bind("127.0.0.1:0".parse().expect("addr"), limits)
        .await
        .expect("bind");
    let addr = server.local_addr();
    (server.serve(scrape::routes(Arc::clone(metrics))), addr)
}

/// Sends one raw request, returns (status line, headers, body).
async fn fetch(addr: SocketAddr, request: &str) -> (String, HashMap<String, String>, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection after its response")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head/body separator");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the text format: `(name -> TYPE)`, samples. Panics on malformed lines.
fn parse(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "duplicate TYPE for {name}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("number"),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), HashMap::new()),
            Some((name, rest)) => (
                name.to_owned(),
                parse_labels(rest.strip_suffix('}').expect("}")),
            ),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (types, samples)
}

fn parse_labels(mut s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect("label =\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.insert(key.to_owned(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    out
}

#[tokio::test]
async fn scrape_returns_parseable_red_service_graph_and_health_metrics() {
    let counters = Arc::new(Counters::default());
    Counters::inc(&counters.spans_built);
    let metrics = Arc::new(
        SpanMetrics::new(SpanMetricsConfig::default(), agent_resource("testhost"), 0)
            .with_counters(counters),
    );
    let mut sink = SpanMetricsSink::new(Arc::clone(&metrics));
    sink.export(
        vec![
            http_span(SpanKind::Server, 2, Some(1), "backend", 503),
            http_span(SpanKind::Client, 1, None, "frontend", 503),
        ],
        0,
    )
    .expect("export");

    let (serving, addr) = start(&metrics, Limits::default()).await;

    let (status, headers, body) =
        fetch(addr, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(headers["content-length"], body.len().to_string());

    let (types, samples) = parse(&body);
    let server_hist = "http_server_request_duration_seconds";
    assert_eq!(types[server_hist], "histogram");
    assert_eq!(types["http_client_request_duration_seconds"], "histogram");
    assert_eq!(types["traces_service_graph_request_total"], "counter");
    assert_eq!(
        types["traces_service_graph_request_failed_total"],
        "counter"
    );
    assert_eq!(
        types["traces_service_graph_request_client_seconds"],
        "histogram"
    );
    assert_eq!(
        types["traces_service_graph_request_server_seconds"],
        "histogram"
    );
    assert_eq!(types["sonde_spans_built_total"], "counter");

    let one = |name: &str, pred: &dyn Fn(&HashMap<String, String>) -> bool| -> f64 {
        let found: Vec<_> = samples
            .iter()
            .filter(|s| s.name == name && pred(&s.labels))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        found[0].value
    };
    let inf = one(&format!("{server_hist}_bucket"), &|l| {
        l.get("le").map(String::as_str) == Some("+Inf")
    });
    let count = one(&format!("{server_hist}_count"), &|l| {
        l["job"] == "backend"
            && l["instance"] == "backend-1"
            && l["http_request_method"] == "GET"
            && l["http_response_status_code"] == "503"
            && l["error_type"] == "503"
            && l["server_address"] == "backend.svc"
            && l["server_port"] == "8080"
    });
    assert_eq!((inf, count), (1.0, 1.0));
    let edge = |l: &HashMap<String, String>| l["client"] == "frontend" && l["server"] == "backend";
    assert_eq!(one("traces_service_graph_request_total", &edge), 1.0);
    assert_eq!(one("traces_service_graph_request_failed_total", &edge), 1.0);
    assert_eq!(
        one("traces_service_graph_request_server_seconds_count", &edge),
        1.0
    );
    assert_eq!(one("sonde_spans_built_total", &|_| true), 1.0);

    let (status, _, _) = fetch(addr, "GET /other HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, body) = fetch(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty());
    assert_ne!(headers["content-length"], "0");

    serving.shutdown().await;
}

#[tokio::test]
async fn other_methods_paths_and_query_strings() {
    let metrics = Arc::new(SpanMetrics::new(
        SpanMetricsConfig::default(),
        agent_resource("testhost"),
        0,
    ));
    let (serving, addr) = start(&metrics, Limits::default()).await;

    let (status, headers, _) = fetch(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let allow: Vec<&str> = headers["allow"].split(',').map(str::trim).collect();
    assert!(
        allow.contains(&"GET") && allow.contains(&"HEAD"),
        "{allow:?}"
    );
    let (status, _, _) = fetch(addr, "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let (status, _, _) = fetch(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = fetch(addr, "GET /metrics/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = fetch(addr, "garbage\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");

    let (status, headers, body) = fetch(
        addr,
        "GET /metrics?name[]=sonde_events_read_total HTTP/1.0\r\n\r\n",
    )
    .await;
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert_eq!(headers["content-length"], body.len().to_string());
    let (_, samples) = parse(&body);
    assert!(samples.iter().any(|s| s.name == "target_info"));

    serving.shutdown().await;
}

#[tokio::test]
async fn idle_and_partial_clients_do_not_block_a_scrape_and_are_dropped() {
    let metrics = Arc::new(SpanMetrics::new(
        SpanMetricsConfig::default(),
        agent_resource("testhost"),
        0,
    ));
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (serving, addr) = start(&metrics, limits).await;
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: loc")
        .await
        .expect("send");

    let (status, _, body) = fetch(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("# TYPE "), "{body}");

    for stream in [&mut idle, &mut partial] {
        let mut rest = Vec::new();
        // EOF (or a reset) once the header timeout has passed, never a response.
        match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await {
            Err(_) => panic!("connection still open 10 s after the header timeout"),
            Ok(_) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
        }
    }
    serving.shutdown().await;
}
