//! Spans: capture's per-connection segments become spans.
//!
//! The [`SpanBuilder`] is capture's consumer. Per connection ([`session`]) it picks the
//! protocol once, feeds the parser, pairs what the parser reports by stream whatever the
//! protocol ([`pairing`]), gives each request its identity and parents: the kernel's
//! decisions ([`marks`]), the same-host joins ([`trace_join`]) and the model of
//! provenance every parent link carries ([`identity`]); finished exchanges are named
//! and attributed per protocol ([`semconv`]). Its output, a [`Batch`], goes to the
//! pipeline.

pub mod builder;
pub mod identity;
pub mod marks;
pub mod model;
pub mod pairing;
pub mod role;
pub mod semconv;
pub mod session;
pub mod trace_join;

#[cfg(test)]
mod tests;

pub use builder::{Limits, ResourceFn, SpanBuilder};
pub use identity::{ParentLink, ParentSource, SpanIdentity};
pub use model::{KeyValue, Resource, Span, SpanId, SpanKind, Status, Text, TraceId, Value};
pub use role::Role;
pub use session::Session;

/// What the span builder hands to the pipeline: finished spans, and the requests seen
/// start, in the order they happened. Spans stay where they are built until a sink takes
/// them (the pipeline works on them in place).
#[derive(Debug, Default)]
pub struct Batch {
    pub spans: Vec<Span>,
    /// The process of each span (same index).
    pub tgids: Vec<u32>,
    /// Requests whose head completed, each with the number of spans built before it.
    pub requests: Vec<(usize, RequestSeen)>,
}

impl Batch {
    pub fn push_span(&mut self, tgid: u32, span: Span) {
        self.spans.push(span);
        self.tgids.push(tgid);
    }

    pub fn push_request(&mut self, seen: RequestSeen) {
        self.requests.push((self.spans.len(), seen));
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.requests.is_empty()
    }
}

/// The facts about a request that pipeline stages read as it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSeen {
    pub tgid: u32,
    pub kind: SpanKind,
    /// The identity its span will have.
    pub ident: SpanIdentity,
    /// An OTLP/HTTP trace export (`POST …/v1/traces`).
    pub otlp_trace_export: bool,
}
