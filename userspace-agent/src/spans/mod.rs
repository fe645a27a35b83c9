//! Spans: pairing requests with responses, parent links, naming and attributes.

mod db_conn;
pub mod db_span;
pub mod http_span;
pub mod identity;
pub mod model;
pub mod sdk;
pub mod trace_join;
pub mod tracker;

pub use identity::{ParentLink, ParentSource, SpanIdentity};
pub use model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, Text, TraceId, Value};
