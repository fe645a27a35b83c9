//! Tree sink behaviour: exact layout, the quiet period, and the buffer bounds.

use std::time::Duration;

use super::TreeSink;
use crate::sinks::SpanSink;
use crate::sinks::test_support::{SpanExt, span, span_id, trace_id};
use crate::spans::{Span, SpanKind};

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000 * MS;

fn sink() -> TreeSink<Vec<u8>> {
    TreeSink::new(Vec::new(), Duration::from_secs(1), false)
}

fn output(sink: &TreeSink<Vec<u8>>) -> anyhow::Result<&str> {
    Ok(std::str::from_utf8(sink.get_ref())?)
}

/// nginx serves /api/orders, calls orders (which answers) and payments (which fails);
/// payments' own SERVER span arrives with a parent the buffer never saw.
fn checkout_trace() -> Vec<Span> {
    let t = trace_id(0x36);
    let root = span(t, span_id(1), None, "nginx")
        .named("GET /api/orders")
        .timed(0, 12_410_000)
        .attr("http.response.status_code", 200_i64);
    let to_orders = span(t, span_id(2), Some(span_id(1)), "nginx")
        .kind(SpanKind::Client)
        .named("GET /orders")
        .timed(MS, 10_020_000)
        .attr("http.response.status_code", 200_i64)
        .attr("server.address", "127.0.0.1")
        .attr("server.port", 8081_i64);
    let orders = span(t, span_id(3), Some(span_id(2)), "orders")
        .named("GET /orders")
        .timed(1_200_000, 9_500_000)
        .attr("http.response.status_code", 200_i64);
    let to_payments = span(t, span_id(4), Some(span_id(1)), "nginx")
        .kind(SpanKind::Client)
        .named("GET /payments")
        .timed(11_500_000, 450_000)
        .attr("http.response.status_code", 503_i64)
        .attr("server.address", "payments.internal")
        .attr("server.port", 9000_i64)
        .error("HTTP 503");
    let payments = span(t, span_id(5), Some(span_id(0x99)), "payments")
        .named("POST /charge")
        .timed(11_600_000, 300_000)
        .attr("http.response.status_code", 200_i64);
    // Children first, the way spans really finish.
    vec![orders, to_orders, payments, to_payments, root]
}

#[test]
fn renders_three_level_trace_with_orphan_and_error() -> anyhow::Result<()> {
    let mut sink = sink();
    sink.export(checkout_trace(), 0)?;
    sink.shutdown()?;
    assert_eq!(
        output(&sink)?,
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  (5 spans, 12.41 ms)
├─ nginx  SERVER  GET /api/orders  12.41 ms  200
│  ├─ nginx  CLIENT  GET /orders  10.02 ms  200  → 127.0.0.1:8081
│  │  └─ orders  SERVER  GET /orders  9.50 ms  200
│  └─ nginx  CLIENT  GET /payments  450 µs  503  → payments.internal:9000  ERROR: HTTP 503
└─ payments  SERVER  POST /charge  300 µs  200  (parent 8000000000000099)
"
    );
    Ok(())
}

#[test]
fn color_marks_only_the_error() -> anyhow::Result<()> {
    let mut sink = TreeSink::new(Vec::new(), Duration::from_secs(1), true);
    sink.export(checkout_trace(), 0)?;
    sink.shutdown()?;
    let text = output(&sink)?;
    assert!(text.contains("  \x1b[31mERROR: HTTP 503\x1b[0m\n"));
    assert_eq!(text.matches('\x1b').count(), 2);
    Ok(())
}

#[test]
fn prints_only_after_the_trace_is_quiet() -> anyhow::Result<()> {
    let mut sink = sink();
    let a = trace_id(0xa);
    let b = trace_id(0xb);
    sink.export(vec![span(a, span_id(2), Some(span_id(1)), "svc")], 0)?;
    sink.export(vec![span(b, span_id(3), None, "svc")], 200 * MS)?;
    sink.tick(500 * MS)?;
    assert_eq!(output(&sink)?, "");

    // A late span restarts trace a's quiet period.
    sink.export(vec![span(a, span_id(1), None, "svc")], 900 * MS)?;
    sink.tick(SECOND)?;
    assert_eq!(output(&sink)?, "");

    sink.tick(SECOND + 200 * MS)?;
    let text = output(&sink)?;
    assert!(text.starts_with(&format!("trace {b}  (1 span, ")), "{text}");
    assert!(!text.contains(&a.to_string()));
    assert_eq!(sink.buffered_traces(), 1);

    sink.tick(SECOND + 899 * MS)?;
    assert_eq!(sink.buffered_traces(), 1);
    sink.tick(SECOND + 900 * MS)?;
    assert_eq!(sink.buffered_traces(), 0);
    let text = output(&sink)?;
    let tail = text
        .split_once(&format!("trace {a}"))
        .map(|(_, tail)| tail)
        .unwrap_or_default();
    // Both halves of trace a print together, the late parent as the root.
    assert_eq!(
        tail,
        "  (2 spans, 1.00 ms)\n\
         └─ svc  SERVER  GET /  1.00 ms\n   \
            └─ svc  SERVER  GET /  1.00 ms\n"
    );
    Ok(())
}

#[test]
fn shutdown_prints_everything_regardless_of_time() -> anyhow::Result<()> {
    let mut sink = sink();
    sink.export(vec![span(trace_id(1), span_id(1), None, "svc")], 0)?;
    sink.export(vec![span(trace_id(2), span_id(1), None, "svc")], 10)?;
    sink.tick(10)?;
    assert_eq!(output(&sink)?, "");
    sink.shutdown()?;
    assert_eq!(output(&sink)?.matches("trace ").count(), 2);
    assert_eq!(sink.buffered_traces(), 0);
    Ok(())
}

#[test]
fn spans_beyond_the_per_trace_limit_are_dropped_and_counted() -> anyhow::Result<()> {
    let mut sink = sink().with_limits(10, 2);
    let t = trace_id(1);
    let spans = (1..=5)
        .map(|n| span(t, span_id(n), None, "svc").timed(n * MS, MS))
        .collect();
    sink.export(spans, 0)?;
    assert_eq!(sink.dropped_spans(), 3);
    sink.shutdown()?;
    assert!(
        output(&sink)?.starts_with(&format!("trace {t}  (2 spans, 3 dropped, 2.00 ms)\n")),
        "{}",
        output(&sink)?
    );
    Ok(())
}

#[test]
fn trace_limit_prints_the_least_recently_active_trace_early() -> anyhow::Result<()> {
    let mut sink = sink().with_limits(2, 10);
    sink.export(vec![span(trace_id(1), span_id(1), None, "svc")], 0)?;
    sink.export(vec![span(trace_id(2), span_id(1), None, "svc")], 10)?;
    // Trace 1 gets more recent activity than trace 2.
    sink.export(vec![span(trace_id(1), span_id(2), None, "svc")], 20)?;
    sink.export(vec![span(trace_id(3), span_id(1), None, "svc")], 30)?;

    let text = output(&sink)?;
    assert!(
        text.starts_with(&format!("trace {}  (1 span", trace_id(2))),
        "{text}"
    );
    assert_eq!(text.matches("trace ").count(), 1);
    assert_eq!(sink.evicted_traces(), 1);
    assert_eq!(sink.buffered_traces(), 2);
    assert_eq!(sink.dropped_spans(), 0);
    Ok(())
}

#[test]
fn parent_cycles_still_print_every_span_once() -> anyhow::Result<()> {
    let mut sink = sink();
    let t = trace_id(1);
    sink.export(
        vec![
            span(t, span_id(1), Some(span_id(2)), "svc").timed(0, MS),
            span(t, span_id(2), Some(span_id(1)), "svc").timed(MS, MS),
            span(t, span_id(3), Some(span_id(3)), "svc").timed(2 * MS, MS),
        ],
        0,
    )?;
    sink.shutdown()?;
    assert_eq!(
        output(&sink)?,
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4701  (3 spans, 3.00 ms)
├─ svc  SERVER  GET /  1.00 ms  (parent 8000000000000002)
│  └─ svc  SERVER  GET /  1.00 ms
└─ svc  SERVER  GET /  1.00 ms  (parent 8000000000000003)
"
    );
    Ok(())
}

#[test]
fn deep_chains_do_not_recurse() -> anyhow::Result<()> {
    let mut sink = sink().with_limits(1, 5_000);
    let t = trace_id(1);
    let spans = (1..=5_000)
        .map(|n| span(t, span_id(n), (n > 1).then(|| span_id(n - 1)), "svc"))
        .collect();
    sink.export(spans, 0)?;
    sink.shutdown()?;
    let text = output(&sink)?;
    assert_eq!(text.lines().count(), 5_001);
    let last = text.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("{}└─ svc", "   ".repeat(4_999))));
    Ok(())
}
