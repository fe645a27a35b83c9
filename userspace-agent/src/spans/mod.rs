//! Spans: pairing requests with responses, parent links, naming and attributes.

pub mod model;

pub use model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId, Value};
