//! Span builders shared by the sink tests, so each test states only what it checks.

use std::sync::Arc;

use crate::spans::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId, Value};

/// The trace ID from the W3C trace-context examples.
pub const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];

/// A nonzero trace ID distinct per `n`.
pub fn trace_id(n: u8) -> TraceId {
    let mut bytes = TRACE;
    bytes[15] = n;
    TraceId(bytes)
}

/// A nonzero span ID distinct per `n`.
pub fn span_id(n: u64) -> SpanId {
    SpanId((n | 1 << 63).to_be_bytes())
}

pub fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.to_owned(),
        attributes: vec![KeyValue::new("service.name", service.to_owned())],
    })
}

/// A span in trace `trace` with ID `id`, starting `start_ns` after an arbitrary epoch.
pub fn span(trace: TraceId, id: SpanId, parent: Option<SpanId>, service: &str) -> Span {
    Span {
        trace_id: trace,
        span_id: id,
        parent_span_id: parent,
        trace_state: None,
        name: "GET /".to_owned(),
        kind: SpanKind::Server,
        start_unix_nano: 1_700_000_000_000_000_000,
        end_unix_nano: 1_700_000_000_001_000_000,
        status: Status::Unset,
        attributes: Vec::new(),
        resource: resource(service),
    }
}

/// Builder-style tweaks so test spans read like the output they produce.
pub trait SpanExt {
    fn named(self, name: &str) -> Self;
    fn kind(self, kind: SpanKind) -> Self;
    /// Start `offset_ns` after the base start, lasting `duration_ns`.
    fn timed(self, offset_ns: u64, duration_ns: u64) -> Self;
    fn attr(self, key: &str, value: impl Into<Value>) -> Self;
    fn error(self, message: &str) -> Self;
}

impl SpanExt for Span {
    fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = kind;
        self
    }

    fn timed(mut self, offset_ns: u64, duration_ns: u64) -> Self {
        self.start_unix_nano = 1_700_000_000_000_000_000 + offset_ns;
        self.end_unix_nano = self.start_unix_nano + duration_ns;
        self
    }

    fn attr(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.attributes.push(KeyValue::new(key.to_owned(), value));
        self
    }

    fn error(mut self, message: &str) -> Self {
        self.status = Status::Error {
            message: message.to_owned(),
        };
        self
    }
}
