//! `--prometheus-listen`: span metrics (RED histograms, service graph) and the agent's
//! own counters scraped over TCP from the running agent and parsed from the text
//! exposition format (0.0.4) by a small parser below.

mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use util::*;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: samples and `# TYPE` declarations.
#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Exposition {
    /// Samples named `name` whose labels include every `(key, value)` of `want`.
    fn select(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum of the selected samples' values.
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.select(name, want).iter().map(|s| s.value).sum()
    }
}

/// Parses a label set `k="v",k2="v2"` (escapes `\\`, `\"`, `\n`).
fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || *c == ' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("label {key:?}: expected =\""));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some(c) => value.push(c),
                None => return Err(format!("unterminated value of {key}")),
            }
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|e| format!("value {v:?}: {e}")),
    }
}

/// The text exposition format: `# HELP`, `# TYPE name kind`, `name{labels} value [ts]`.
/// Panics on a line it cannot parse.
fn parse_exposition(text: &str) -> Exposition {
    let mut e = Exposition {
        text: text.to_owned(),
        ..Exposition::default()
    };
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind), None) = (it.next(), it.next(), it.next()) else {
                panic!("bad TYPE line {line:?}");
            };
            assert!(
                e.types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE of {name} declared twice"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line
                    .rfind('}')
                    .unwrap_or_else(|| panic!("no closing brace: {line:?}"));
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close])
                        .unwrap_or_else(|err| panic!("{err} in {line:?}")),
                    &line[close + 1..],
                )
            }
            None => {
                let sp = line
                    .find(' ')
                    .unwrap_or_else(|| panic!("no value: {line:?}"));
                (&line[..sp], BTreeMap::new(), &line[sp..])
            }
        };
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        e.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: parse_value(value).unwrap_or_else(|err| panic!("{err} in {line:?}")),
        });
    }
    e
}

/// `GET /metrics` over a plain TCP connection; returns (status line, headers, body).
fn scrape(port: u16) -> (String, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("sending the scrape");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("reading the scrape");
    let end = header_end(&resp);
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let body = String::from_utf8(resp[end..].to_vec()).expect("UTF-8 exposition");
    let status = head.lines().next().unwrap_or("").to_owned();
    if let Some(len) = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().parse::<usize>().expect("a length"))
    }) {
        assert_eq!(len, body.len(), "Content-Length matches the body");
    }
    (status, head, body)
}

/// Scenario 5: RED histograms per status, `+Inf` bucket = count, agent counters, and a
/// service-graph edge for Python calling Node, scraped from the running agent.
#[test]
fn prometheus_red_histograms_counters_and_service_graph() {
    require_tracing!();
    let py = Server::python();
    let node = Server::node();
    let prom = free_port();
    let mut agent = AgentCmd::attach(&[py.pid(), node.pid()])
        .arg("--prometheus-listen")
        .arg(format!("127.0.0.1:{prom}"))
        .start();

    // 5 requests to Python: 2 x 200 (one of them calls Node), 2 x 404, 1 x 500.
    let call = format!("{}?url={}", py.url("/call"), node.url("/edge"));
    let requests = [
        (py.url("/ok"), 200),
        (call, 200),
        (py.url("/missing"), 404),
        (py.url("/missing"), 404),
        (py.url("/status/500"), 500),
    ];
    for (url, status) in &requests {
        let c = curl(&[url]);
        assert!(c.status.success(), "curl {url}: {}", c.stderr);
        assert_eq!(c.writeouts[0].http_code, *status, "{url}");
    }
    // 5 Python SERVER spans, the Python CLIENT span and the Node SERVER span.
    let n = agent.wait_for_spans(7, Duration::from_secs(10));
    assert_eq!(n, 7, "spans printed:\n{:#?}", agent.spans_now());

    // The paired edge appears once both spans of the pair are in: poll the scrape.
    let mut exp = Exposition::default();
    let mut status = String::new();
    let mut head = String::new();
    wait_until(Duration::from_secs(5), || {
        let (st, h, body) = scrape(prom);
        status = st;
        head = h;
        exp = parse_exposition(&body);
        exp.sum(
            "traces_service_graph_request_total",
            &[("client", "py_server"), ("server", "node_server")],
        ) >= 1.0
    });
    let tree = agent.collect(7);
    let ctx = format!("--- scrape:\n{head}{}", exp.text);
    let tree = SpanTree::new(tree.spans.clone()).with_context(&format!(
        "{ctx}\n--- agent stderr:\n{}",
        agent.stopped().stderr
    ));
    check!(
        tree,
        status.starts_with("HTTP/1.1 200"),
        "scrape status {status}"
    );
    check!(
        tree,
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "exposition content type"
    );

    let dur = "http_server_request_duration_seconds";
    eqnice!(
        tree,
        exp.types.get(dur).map(String::as_str),
        Some("histogram"),
        "TYPE of {dur}"
    );
    let py_job = [("job", "py_server")];
    for (code, want) in [("200", 2.0), ("404", 2.0), ("500", 1.0)] {
        let labels = [py_job[0], ("http_response_status_code", code)];
        let count = exp.sum(&format!("{dur}_count"), &labels);
        eqnice!(tree, count, want, "{dur}_count for status {code}");
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        eqnice!(
            tree,
            exp.sum(&format!("{dur}_bucket"), &inf),
            count,
            "_bucket{{le=\"+Inf\"}} == _count for status {code}"
        );
        let sum = exp.sum(&format!("{dur}_sum"), &labels);
        check!(
            tree,
            sum > 0.0 && sum < 10.0 * want,
            "{dur}_sum for status {code} is a plausible duration: {sum}"
        );
        // Buckets are cumulative: non-decreasing in le.
        let mut buckets: Vec<(f64, f64)> = exp
            .select(&format!("{dur}_bucket"), &labels)
            .iter()
            .map(|s| {
                (
                    s.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY),
                    s.value,
                )
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        check!(
            tree,
            buckets.len() == 15 && buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "15 cumulative buckets for status {code}: {buckets:?}"
        );
    }
    for sample in exp.select(&format!("{dur}_count"), &py_job) {
        let code = &sample.labels["http_response_status_code"];
        eqnice!(
            tree,
            sample.labels.get("error_type").map(String::as_str),
            (code == "500").then_some("500"),
            "error_type only on the 5xx series ({code})"
        );
        eqnice!(
            tree,
            sample.labels.get("http_request_method").map(String::as_str),
            Some("GET"),
            "method label"
        );
    }
    eqnice!(
        tree,
        exp.sum(&format!("{dur}_count"), &[("job", "node_server")]),
        1.0,
        "Node served one request"
    );
    eqnice!(
        tree,
        exp.sum(
            "http_client_request_duration_seconds_count",
            &[("job", "py_server"), ("http_response_status_code", "200")]
        ),
        1.0,
        "Python made one client request"
    );

    // The agent's own counters.
    eqnice!(
        tree,
        exp.types.get("sonde_spans_built_total").map(String::as_str),
        Some("counter"),
        "TYPE of sonde_spans_built_total"
    );
    check!(
        tree,
        exp.sum("sonde_spans_built_total", &[("job", "sonde")]) >= 5.0,
        "sonde_spans_built_total >= 5"
    );
    check!(
        tree,
        exp.sum("sonde_events_read_total", &[("job", "sonde")]) > 0.0,
        "sonde_events_read_total > 0"
    );

    // Service graph: the paired edge Python -> Node, and the user -> Python roots.
    eqnice!(
        tree,
        exp.types
            .get("traces_service_graph_request_total")
            .map(String::as_str),
        Some("counter"),
        "TYPE of traces_service_graph_request_total"
    );
    let edge = [("client", "py_server"), ("server", "node_server")];
    eqnice!(
        tree,
        exp.sum("traces_service_graph_request_total", &edge),
        1.0,
        "edge py_server -> node_server"
    );
    eqnice!(
        tree,
        exp.sum("traces_service_graph_request_failed_total", &edge),
        0.0,
        "no failed request on the edge"
    );
    let mut edge_inf = edge.to_vec();
    edge_inf.push(("le", "+Inf"));
    for h in [
        "traces_service_graph_request_client_seconds",
        "traces_service_graph_request_server_seconds",
    ] {
        eqnice!(
            tree,
            exp.sum(&format!("{h}_bucket"), &edge_inf),
            1.0,
            "{h} on the paired edge"
        );
    }
    eqnice!(
        tree,
        exp.sum(
            "traces_service_graph_request_total",
            &[("client", "user"), ("server", "py_server")]
        ),
        5.0,
        "edge user -> py_server (the five root requests)"
    );
    check!(
        tree,
        exp.sum(
            "traces_service_graph_request_failed_total",
            &[("client", "user"), ("server", "py_server")]
        ) >= 1.0,
        "the 500 counts as a failed request on user -> py_server"
    );
    // target_info names the traced processes.
    let info = exp.select("target_info", &py_job);
    check!(
        tree,
        info.len() == 1 && info[0].labels.get("process_pid") == Some(&py.pid().to_string()),
        "target_info for py_server with its pid: {info:?}"
    );
}
