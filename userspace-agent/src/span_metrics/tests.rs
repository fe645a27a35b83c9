//! The registry end to end: spans in, Prometheus text and OTLP out.

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::metric;

use super::*;
use crate::sinks::test_support::{SpanExt, span, span_id, trace_id};
use crate::spans::SpanKind;

const SEC: u64 = 1_000_000_000;

fn registry(max_series: usize) -> SpanMetrics {
    let config = SpanMetricsConfig {
        max_series_per_metric: max_series,
        ..SpanMetricsConfig::default()
    };
    SpanMetrics::new(config, agent_resource("testhost"), 1)
}

fn http(kind: SpanKind, id: u64, parent: Option<u64>, service: &str, status: i64) -> Span {
    let s = span(trace_id(1), span_id(id), parent.map(span_id), service)
        .kind(kind)
        .timed(0, 40_000_000)
        .attr("http.request.method", "GET")
        .attr("server.address", "backend")
        .attr("server.port", 8080)
        .attr("http.response.status_code", status);
    if status >= 500 {
        s.attr("error.type", status.to_string()).error("HTTP 500")
    } else {
        s
    }
}

fn find<'a>(snap: &'a Snapshot, name: &str) -> &'a MetricSnapshot {
    snap.metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn sum_points<'a>(snap: &'a Snapshot, name: &str) -> &'a [Point<u64>] {
    match &find(snap, name).data {
        MetricData::Sum { points, .. } => points,
        other => panic!("{name} is {other:?}"),
    }
}

fn edge_value(snap: &Snapshot, name: &str, client: &str, server: &str) -> Option<u64> {
    sum_points(snap, name)
        .iter()
        .find(|p| {
            p.attrs.get("client") == Some(&client.into())
                && p.attrs.get("server") == Some(&server.into())
        })
        .map(|p| p.value)
}

#[test]
fn spans_become_red_histograms_and_service_graph_edges() {
    let m = registry(100);
    // frontend (root server) -> calls backend (traced) and an untraced peer.
    m.record(
        &[
            http(SpanKind::Server, 10, Some(1), "backend", 500),
            http(SpanKind::Client, 1, Some(9), "frontend", 500),
            http(SpanKind::Client, 2, Some(9), "frontend", 200),
            http(SpanKind::Server, 9, None, "frontend", 200),
        ],
        0,
    );
    let snap = m.snapshot(5);
    assert_eq!(
        edge_value(
            &snap,
            "traces_service_graph_request_total",
            "frontend",
            "backend"
        ),
        Some(1)
    );
    assert_eq!(
        edge_value(
            &snap,
            "traces_service_graph_request_failed_total",
            "frontend",
            "backend"
        ),
        Some(1)
    );
    assert_eq!(
        edge_value(
            &snap,
            "traces_service_graph_request_total",
            "user",
            "frontend"
        ),
        Some(1)
    );
    assert_eq!(
        edge_value(
            &snap,
            "traces_service_graph_request_failed_total",
            "user",
            "frontend"
        ),
        Some(0)
    );
    // The untraced peer shows up once its window has passed.
    assert_eq!(
        edge_value(
            &snap,
            "traces_service_graph_request_total",
            "frontend",
            "backend:8080"
        ),
        None
    );
    m.tick(11 * SEC);
    let snap = m.snapshot(11 * SEC);
    assert_eq!(
        edge_value(
            &snap,
            "traces_service_graph_request_total",
            "frontend",
            "backend:8080"
        ),
        Some(1)
    );
    assert_eq!(sum_points(&snap, "sonde.service_graph_expired")[0].value, 1);

    let MetricData::Histogram(server) = &find(&snap, "http.server.request.duration").data else {
        panic!("histogram");
    };
    assert_eq!(server.len(), 2, "one series per (service, status)");
    let failing = server
        .iter()
        .find(|p| p.attrs.get("error.type").is_some())
        .expect("500 series");
    assert_eq!(snap.resources[failing.resource].service_name, "backend");
    let MetricData::Histogram(client) = &find(&snap, "http.client.request.duration").data else {
        panic!("histogram");
    };
    assert_eq!(client.iter().map(|p| p.value.count()).sum::<u64>(), 2);

    // Service-graph series belong to the agent's resource.
    let edge = &sum_points(&snap, "traces_service_graph_request_total")[0];
    assert_eq!(snap.resources[edge.resource].service_name, "sonde");
}

#[test]
fn overflow_series_and_counter_are_exported() {
    let m = registry(2);
    let spans: Vec<_> = (0..5)
        .map(|i| {
            http(SpanKind::Server, 100 + i, None, "svc", 200).attr("http.route", format!("/r{i}"))
        })
        .collect();
    m.record(&spans, 0);
    let snap = m.snapshot(0);
    let MetricData::Histogram(points) = &find(&snap, "http.server.request.duration").data else {
        panic!("histogram");
    };
    assert_eq!(points.len(), 3);
    let overflow = points
        .iter()
        .find(|p| p.attrs == Attrs::overflow())
        .expect("overflow series");
    assert_eq!(overflow.value.count(), 3);
    assert_eq!(
        sum_points(&snap, "sonde.span_metrics_series_overflow")[0].value,
        3
    );
    let text = prometheus::render(&snap);
    assert!(text.contains(r#"otel_metric_overflow="true""#), "{text}");
}

#[test]
fn agent_counters_are_exported_as_sonde_sums() {
    let counters = Arc::new(Counters::default());
    Counters::inc(&counters.events_read);
    let m = registry(10).with_counters(Arc::clone(&counters));
    Counters::inc(&counters.events_read);
    let snap = m.snapshot(0);
    assert_eq!(sum_points(&snap, "sonde.events_read")[0].value, 2);
    assert!(matches!(
        find(&snap, "sonde.service_graph_pending").data,
        MetricData::Gauge(_)
    ));
    let text = m.render_prometheus();
    assert!(
        text.contains("# TYPE sonde_events_read_total counter\n"),
        "{text}"
    );
    assert!(text.contains("sonde_events_read_total{job=\"sonde\",instance=\"testhost:"));
}

#[test]
fn sink_records_and_flushes_at_shutdown_and_otlp_has_every_resource() {
    let m = Arc::new(registry(10));
    let mut sink = SpanMetricsSink::new(Arc::clone(&m));
    sink.export(vec![http(SpanKind::Client, 1, None, "frontend", 200)], 0)
        .expect("export");
    sink.tick(SEC).expect("tick");
    let before = m.snapshot(SEC);
    assert!(
        before
            .metrics
            .iter()
            .all(|m| m.name != "traces_service_graph_request_total")
    );
    sink.shutdown().expect("shutdown");

    let req = m.export_request(2 * SEC);
    let names: Vec<&str> = req
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| m.name.as_str())
        .collect();
    assert!(names.contains(&"traces_service_graph_request_total"));
    assert!(names.contains(&"http.client.request.duration"));
    assert_eq!(req.resource_metrics.len(), 2, "agent + frontend");
    let hist = req
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .find(|m| m.name == "http.client.request.duration")
        .expect("client histogram");
    let Some(metric::Data::Histogram(h)) = &hist.data else {
        panic!("histogram");
    };
    let p = &h.data_points[0];
    assert_eq!(p.start_time_unix_nano, 1);
    assert_eq!(p.time_unix_nano, 2 * SEC);
    assert_eq!(p.explicit_bounds, histogram::HTTP_DURATION_BOUNDS);
    assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
}
