//! RED metrics (rate, errors, duration) from spans: which span records into which
//! duration histogram, with which attributes.
//!
//! The mapping is a table of [`RedRule`]s, first match wins. A protocol adds its
//! metric by adding a rule (e.g. `db.client.operation.duration` for CLIENT spans that
//! carry `db.system.name`, `rpc.server.duration` for RPC); the aggregator never changes.
//! Rates and error ratios come from the histogram's `_count` split by `error.type` /
//! `http.response.status_code`, as the semantic conventions intend.

use super::attrs::{AttrValue, Attrs};
use super::histogram::HTTP_DURATION_BOUNDS;
use super::store::{InstrumentDesc, InstrumentKind};
use crate::spans::{Span, SpanKind, Value};

/// One line of the mapping table.
#[derive(Clone, Copy, Debug)]
pub struct RedRule {
    /// The histogram the span's duration (seconds) is recorded into.
    pub instrument: InstrumentDesc,
    /// Whether this rule applies to the span.
    pub matches: fn(&Span) -> bool,
    /// The series' attributes (the span's resource is the series' resource).
    pub attributes: fn(&Span) -> Attrs,
}

pub const HTTP_SERVER_DURATION: InstrumentDesc = InstrumentDesc {
    name: "http.server.request.duration",
    description: "Duration of HTTP server requests.",
    unit: "s",
    kind: InstrumentKind::Histogram(HTTP_DURATION_BOUNDS),
};

pub const HTTP_CLIENT_DURATION: InstrumentDesc = InstrumentDesc {
    name: "http.client.request.duration",
    description: "Duration of HTTP client requests.",
    unit: "s",
    kind: InstrumentKind::Histogram(HTTP_DURATION_BOUNDS),
};

/// The rules Sonde uses today.
pub const DEFAULT_RULES: &[RedRule] = &[
    RedRule {
        instrument: HTTP_SERVER_DURATION,
        matches: |s| s.kind == SpanKind::Server && is_http(s),
        attributes: http_attributes,
    },
    RedRule {
        instrument: HTTP_CLIENT_DURATION,
        matches: |s| s.kind == SpanKind::Client && is_http(s),
        attributes: http_attributes,
    },
];

/// The histogram, attributes and value (seconds) `span` records, if any rule matches.
pub fn red_series<'r>(
    span: &Span,
    rules: &'r [RedRule],
) -> Option<(&'r InstrumentDesc, Attrs, f64)> {
    let rule = rules.iter().find(|r| (r.matches)(span))?;
    let seconds = span.duration_nanos() as f64 / 1e9;
    Some((&rule.instrument, (rule.attributes)(span), seconds))
}

fn is_http(span: &Span) -> bool {
    span.attr("http.request.method").is_some()
}

/// Methods the HTTP semantic conventions know; anything else is `_OTHER`, so a client
/// sending made-up methods cannot create series.
const KNOWN_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY",
];

/// Attributes of `http.{server,client}.request.duration`.
///
/// `http.route` is copied when a span carries it: Sonde does not infer routes yet, and
/// `url.path` is deliberately not used (unbounded). Whatever later sets `http.route` on
/// spans (a route template table, framework detection) makes it appear here.
pub fn http_attributes(span: &Span) -> Attrs {
    let mut attrs = Attrs::new();
    let method = match span.attr("http.request.method") {
        Some(Value::Str(m)) if KNOWN_METHODS.contains(&m.as_ref()) => m.to_string(),
        _ => "_OTHER".to_owned(),
    };
    attrs.insert("http.request.method", method);
    for key in [
        "http.response.status_code",
        "server.address",
        "server.port",
        "error.type",
        "http.route",
    ] {
        if let Some(v) = span.attr(key) {
            attrs.insert(key, AttrValue::from(v));
        }
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::test_support::{SpanExt, span, span_id, trace_id};

    fn http(kind: SpanKind, status: i64) -> Span {
        span(trace_id(1), span_id(1), None, "svc")
            .kind(kind)
            .timed(0, 250_000_000)
            .attr("http.request.method", "GET")
            .attr("url.path", "/users/42")
            .attr("server.address", "api.local")
            .attr("server.port", 8080)
            .attr("network.peer.address", "10.0.0.1")
            .attr("http.response.status_code", status)
    }

    #[test]
    fn server_500_gets_error_type_and_the_server_histogram() {
        let s = http(SpanKind::Server, 500)
            .attr("error.type", "500")
            .error("HTTP 500");
        let (desc, attrs, secs) = red_series(&s, DEFAULT_RULES).expect("matches");
        assert_eq!(desc.name, "http.server.request.duration");
        assert_eq!(desc.unit, "s");
        assert!((secs - 0.25).abs() < 1e-12);
        let expected = Attrs::new()
            .with("http.request.method", "GET")
            .with("http.response.status_code", 500)
            .with("server.address", "api.local")
            .with("server.port", 8080)
            .with("error.type", "500");
        assert_eq!(attrs, expected);
    }

    #[test]
    fn client_404_uses_the_client_histogram_and_drops_unbounded_attributes() {
        let s = http(SpanKind::Client, 404).attr("error.type", "404");
        let (desc, attrs, _) = red_series(&s, DEFAULT_RULES).expect("matches");
        assert_eq!(desc.name, "http.client.request.duration");
        assert_eq!(attrs.get("error.type"), Some(&"404".into()));
        assert_eq!(attrs.get("url.path"), None);
        assert_eq!(attrs.get("network.peer.address"), None);
    }

    #[test]
    fn ok_response_has_no_error_type_and_route_is_copied_when_known() {
        let s = http(SpanKind::Server, 200).attr("http.route", "/users/{id}");
        let (_, attrs, _) = red_series(&s, DEFAULT_RULES).expect("matches");
        assert_eq!(attrs.get("error.type"), None);
        assert_eq!(attrs.get("http.route"), Some(&"/users/{id}".into()));
    }

    #[test]
    fn unknown_methods_collapse_and_non_http_spans_do_not_match() {
        let s = span(trace_id(1), span_id(1), None, "svc").attr("http.request.method", "BREW");
        let (_, attrs, _) = red_series(&s, DEFAULT_RULES).expect("matches");
        assert_eq!(attrs.get("http.request.method"), Some(&"_OTHER".into()));
        let plain = span(trace_id(1), span_id(2), None, "svc");
        assert!(red_series(&plain, DEFAULT_RULES).is_none());
    }
}
