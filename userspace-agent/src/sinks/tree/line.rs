//! The text of one span in the tree: `service  KIND  name  duration  status  → peer`.
//!
//! Everything printed here may come from captured network traffic, so control
//! characters are escaped: a request path containing `ESC[2J` must not clear the
//! user's terminal.

use std::fmt::Write as _;

use crate::spans::{Span, SpanId, SpanKind, Status, Value};

/// Attributes that carry a response status, in the order they are looked for; the
/// first one present is shown after the duration.
const STATUS_ATTRIBUTES: &[&str] = &[
    "http.response.status_code",
    "rpc.grpc.status_code",
    "db.response.status_code",
];

const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Appends the line for `span` (without tree prefix or newline). `orphan_of` is the
/// parent ID to mention when the span is shown as a root despite having a parent.
pub(super) fn push_span_line(
    out: &mut String,
    span: &Span,
    orphan_of: Option<SpanId>,
    color: bool,
) {
    push_sanitized(out, &span.resource.service_name);
    out.push_str("  ");
    out.push_str(kind_label(span.kind));
    out.push_str("  ");
    push_sanitized(out, &span.name);
    out.push_str("  ");
    push_duration(out, span.duration_nanos());

    if let Some(code) = STATUS_ATTRIBUTES.iter().find_map(|key| span.attr(key)) {
        out.push_str("  ");
        push_value(out, code);
    }
    if span.kind == SpanKind::Client {
        push_peer(out, span);
    }
    if let Status::Error { message } = &span.status {
        out.push_str("  ");
        if color {
            out.push_str(RED);
        }
        out.push_str("ERROR");
        if !message.is_empty() {
            out.push_str(": ");
            push_sanitized(out, message);
        }
        if color {
            out.push_str(RESET);
        }
    }
    if let Some(parent) = orphan_of {
        // Writing to a String cannot fail.
        let _ = write!(out, "  (parent {parent})");
    }
}

/// `12.41 ms`, or whole microseconds below one millisecond (`450 µs`), where two
/// decimals of a millisecond would hide the difference.
pub(super) fn push_duration(out: &mut String, nanos: u64) {
    // Writing to a String cannot fail.
    let _ = if nanos < 1_000_000 {
        write!(out, "{} µs", nanos / 1_000)
    } else {
        write!(out, "{:.2} ms", nanos as f64 / 1_000_000.0)
    };
}

fn kind_label(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
    }
}

/// `  → host:port` from `server.address`/`server.port`; IPv6 literals are bracketed so
/// the port stays readable.
fn push_peer(out: &mut String, span: &Span) {
    let Some(address) = span.attr("server.address") else {
        return;
    };
    out.push_str("  → ");
    let address = address.to_string();
    match span.attr("server.port") {
        Some(port) if address.contains(':') => {
            out.push('[');
            push_sanitized(out, &address);
            out.push_str("]:");
            push_value(out, port);
        }
        Some(port) => {
            push_sanitized(out, &address);
            out.push(':');
            push_value(out, port);
        }
        None => push_sanitized(out, &address),
    }
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Str(s) => push_sanitized(out, s),
        // Writing to a String cannot fail.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Copies `text`, escaping control characters (`\n`, `\u{1b}`) so one span stays on
/// one line and cannot drive the terminal.
pub(super) fn push_sanitized(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::test_support::{SpanExt, span, span_id, trace_id};

    fn line(span: &Span, orphan_of: Option<SpanId>, color: bool) -> String {
        let mut out = String::new();
        push_span_line(&mut out, span, orphan_of, color);
        out
    }

    #[test]
    fn durations_switch_to_microseconds_below_one_millisecond() {
        let cases = [
            (0, "0 µs"),
            (999, "0 µs"),
            (450_000, "450 µs"),
            (999_999, "999 µs"),
            (1_000_000, "1.00 ms"),
            (12_410_000, "12.41 ms"),
            (3_600_000_000_000, "3600000.00 ms"),
        ];
        for (nanos, expected) in cases {
            let mut out = String::new();
            push_duration(&mut out, nanos);
            assert_eq!(out, expected, "{nanos} ns");
        }
    }

    #[test]
    fn error_is_red_only_with_color() {
        let failed = span(trace_id(1), span_id(1), None, "svc").error("connection reset");
        assert_eq!(
            line(&failed, None, false),
            "svc  SERVER  GET /  1.00 ms  ERROR: connection reset"
        );
        assert_eq!(
            line(&failed, None, true),
            "svc  SERVER  GET /  1.00 ms  \x1b[31mERROR: connection reset\x1b[0m"
        );
        let bare = span(trace_id(1), span_id(1), None, "svc").error("");
        assert_eq!(
            line(&bare, None, false),
            "svc  SERVER  GET /  1.00 ms  ERROR"
        );
    }

    #[test]
    fn client_peer_and_other_status_attributes() {
        let ipv6 = span(trace_id(1), span_id(1), None, "svc")
            .kind(SpanKind::Client)
            .named("/orders.Orders/Get")
            .attr("rpc.grpc.status_code", 0_i64)
            .attr("server.address", "::1")
            .attr("server.port", 50051_i64);
        assert_eq!(
            line(&ipv6, None, false),
            "svc  CLIENT  /orders.Orders/Get  1.00 ms  0  → [::1]:50051"
        );
        let no_port = span(trace_id(1), span_id(1), None, "svc")
            .kind(SpanKind::Client)
            .attr("server.address", "db.internal");
        assert_eq!(
            line(&no_port, None, false),
            "svc  CLIENT  GET /  1.00 ms  → db.internal"
        );
        // A SERVER span's own address is not a peer worth an arrow.
        let server = span(trace_id(1), span_id(1), None, "svc").attr("server.address", "x");
        assert_eq!(line(&server, None, false), "svc  SERVER  GET /  1.00 ms");
    }

    #[test]
    fn control_characters_are_escaped() {
        let hostile = span(trace_id(1), span_id(1), None, "svc\n")
            .named("GET /\x1b[2J")
            .attr("http.response.status_code", "2\r00");
        assert_eq!(
            line(&hostile, Some(span_id(7)), false),
            "svc\\n  SERVER  GET /\\u{1b}[2J  1.00 ms  2\\r00  (parent 8000000000000007)"
        );
    }
}
