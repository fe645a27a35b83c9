//! Naming and attributes per protocol, after the OpenTelemetry semantic conventions: a
//! finished exchange or call becomes a [`Span`](crate::spans::Span). One file per
//! protocol family; the span builder picks by what the parser reported.

pub mod db;
pub mod http;

use std::sync::Arc;

use super::identity::{ParentLink, ParentSource};
use super::model::{KeyValue, Span, SpanKind, TraceId};
use super::pairing::{Exchange, Outcome};
use crate::capture::{Endpoints, TlsSource};
use crate::protocols::parser::RequestHeadOf;

/// The span of a finished exchange, by its protocol's conventions.
pub fn exchange_span(
    ex: Exchange,
    kind: SpanKind,
    ends: &Endpoints,
    repeated: &mut Repeated,
    tls: Option<TlsSource>,
    outcome: Outcome,
) -> Span {
    match ex.request {
        RequestHeadOf::Http1(_) => http::build_span(ex, kind, ends, repeated, tls, outcome),
    }
}

/// Where a span's parent came from (`identity::ParentSource`).
const PARENT_SOURCE_KEY: &str = "sonde.parent.source";

/// Whether `span`'s parent link is a guess (its `sonde.parent.source` says so).
pub fn parent_is_guess(span: &Span) -> bool {
    span.attributes.iter().any(|kv| {
        kv.key == PARENT_SOURCE_KEY
            && matches!(&kv.value, super::model::Value::Str(v)
                if **v == *ParentSource::ThreadLastRead.as_str())
    })
}

/// Makes an already built root span the child of `parent` in `trace_id`: a traced
/// client's span on this host, known only once the server's span was finished.
pub fn adopt(span: &mut Span, trace_id: TraceId, parent: ParentLink) {
    if span.parent_span_id.is_some() {
        return;
    }
    span.trace_id = trace_id;
    span.parent_span_id = Some(parent.span_id);
    span.attributes
        .push(KeyValue::new(PARENT_SOURCE_KEY, parent.source.as_str()));
}

/// Says that a span's bytes came from a TLS library's plaintext, which library, and the
/// protocol version when the library's probe could read it.
pub fn tls_attributes(span: &mut Span, tls: Option<TlsSource>) {
    let Some(tls) = tls else {
        return;
    };
    span.attributes
        .push(KeyValue::new("sonde.tls.library", tls.library.as_str()));
    if let Some(version) = tls.version {
        let (name, version) = version.name_and_version();
        span.attributes
            .push(KeyValue::new("tls.protocol.name", name));
        span.attributes
            .push(KeyValue::new("tls.protocol.version", version));
    }
}

/// Whether a request is an OTLP trace export (a fact `pipeline::sdk` reads).
pub fn is_otlp_trace_export(request: &RequestHeadOf) -> bool {
    match request {
        RequestHeadOf::Http1(head) => http::is_otlp_trace_export(head),
    }
}

/// The W3C `tracestate` values a request carried, in order.
pub fn tracestate(request: &RequestHeadOf) -> impl Iterator<Item = &str> {
    match request {
        RequestHeadOf::Http1(head) => http::tracestate(head),
    }
}

/// Values a connection repeats on every request (its Host, its User-Agent): its spans
/// share one copy instead of each allocating its own.
#[derive(Debug, Default)]
pub struct Repeated {
    host: Option<Arc<str>>,
    user_agent: Option<Arc<str>>,
}

impl Repeated {
    /// The connection's last `Host` (server address), shared if it did not change.
    pub fn host(&mut self, value: &str) -> Arc<str> {
        shared(&mut self.host, value)
    }

    /// The connection's last `User-Agent`, shared if it did not change.
    pub fn user_agent(&mut self, value: &str) -> Arc<str> {
        shared(&mut self.user_agent, value)
    }
}

fn shared(cell: &mut Option<Arc<str>>, value: &str) -> Arc<str> {
    match cell {
        Some(last) if **last == *value => Arc::clone(last),
        _ => Arc::clone(cell.insert(value.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_value_is_shared_until_it_changes() {
        let mut r = Repeated::default();
        let a = r.host("example.com");
        let b = r.host("example.com");
        assert!(Arc::ptr_eq(&a, &b));
        let c = r.host("other.example");
        assert_eq!(&*c, "other.example");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(&*r.user_agent("curl/8"), "curl/8");
    }
}
