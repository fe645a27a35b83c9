//! Spans: capture's per-connection segments become spans.
//!
//! The [`SpanBuilder`] is capture's consumer. Per connection ([`session`]) it picks the
//! protocol once, feeds the parser, pairs what the parser reports by stream whatever the
//! protocol ([`pairing`]), gives each request its identity and parents: the kernel's
//! decisions ([`marks`]), the same-host joins ([`trace_join`]) and the model of
//! provenance every parent link carries ([`identity`]); finished exchanges are named
//! and attributed per protocol ([`semconv`]). Its output, [`Emitted`], goes to the
//! pipeline in the order it happened.

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

/// What the span builder hands to the pipeline, in the order it happened.
#[derive(Debug)]
pub enum Emitted {
    /// A request whose head is complete: its span comes later, if at all. Stateful
    /// stages learn from it (SDK recognition).
    Request(RequestSeen),
    /// A finished span of process `tgid`.
    Span { tgid: u32, span: Span },
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
