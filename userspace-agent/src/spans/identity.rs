//! Trace identity of one request: its IDs and how its parent was found.

use super::model::{SpanId, TraceId};
use crate::abi::{CtxFormat, KernelParentSource, RawTraceCtx};

/// How a span's parent link was obtained, so users know how far to trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentSource {
    /// The same thread was serving a request when it sent this one (and was never seen
    /// serving two at once).
    Thread,
    /// The same goroutine was serving a request when it sent this one, or was started by
    /// or handed the call by one that was (Go programs): read from the runtime, exact.
    Goroutine,
    /// The thread serves several requests at once (an event loop): the last request it
    /// read is named, which may be the wrong one. A guess, marked as one.
    ThreadLastRead,
    /// Inherited from the thread or process that forked this one.
    Fork,
    /// Both ends of the connection are traced on this host: joined by 4-tuple.
    LocalPeer,
    /// The request carried a trace context header, in this format (decided in the kernel:
    /// an incoming request's header, or the application's own on an outgoing one).
    Header(CtxFormat),
    /// The request carried the `traceparent` Sonde inserted into its client's request
    /// (both ends traced on this host, so the insertion is known; across hosts the same
    /// link reads `header`).
    Injected,
    /// No header: the peer's agent (another host running Sonde) sent the context in a TCP
    /// header option; the parent is its client span, or for non-HTTP bytes (TLS, database
    /// protocols) the server span that sent them.
    TcpOption,
}

impl ParentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ParentSource::Thread => "thread",
            ParentSource::Goroutine => "goroutine",
            ParentSource::ThreadLastRead => "thread_last_read",
            ParentSource::Fork => "fork",
            ParentSource::LocalPeer => "local_peer",
            ParentSource::Header(_) => "header",
            ParentSource::Injected => "injected",
            ParentSource::TcpOption => "tcp_option",
        }
    }

    /// Whether the link is a guess: a viewer shows it as uncertain, counter
    /// `parent_guessed` counts it.
    pub fn is_guess(self) -> bool {
        matches!(self, ParentSource::ThreadLastRead)
    }

    /// The header format, for a parent that came from a header.
    pub fn header_format(self) -> Option<CtxFormat> {
        match self {
            ParentSource::Header(format) => Some(format),
            ParentSource::Injected => Some(CtxFormat::W3c),
            _ => None,
        }
    }

    fn from_kernel(source: KernelParentSource, format: CtxFormat) -> Option<Self> {
        match source {
            KernelParentSource::None => None,
            KernelParentSource::Thread => Some(ParentSource::Thread),
            KernelParentSource::Fork => Some(ParentSource::Fork),
            KernelParentSource::Header => Some(ParentSource::Header(format)),
            KernelParentSource::TcpOption => Some(ParentSource::TcpOption),
            KernelParentSource::Goroutine => Some(ParentSource::Goroutine),
            KernelParentSource::ThreadLastRead => Some(ParentSource::ThreadLastRead),
        }
    }
}

/// A parent that always carries its provenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentLink {
    pub span_id: SpanId,
    pub source: ParentSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIdentity {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<ParentLink>,
}

impl SpanIdentity {
    /// A new root span in a new trace (decided in userspace).
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent: None,
        }
    }

    /// A new span whose parent the kernel named (`SONDE_CTX_IN_SPAN`: bytes a thread sent
    /// while serving a request); `None` if the kernel named no valid parent.
    pub fn child_of_kernel(ctx: &RawTraceCtx, source: KernelParentSource) -> Option<Self> {
        let trace_id = TraceId::from_bytes(ctx.trace_id)?;
        let span_id = SpanId::from_bytes(ctx.parent_span_id)?;
        let source = ParentSource::from_kernel(source, CtxFormat::None)?;
        Some(Self {
            trace_id,
            span_id: SpanId::random(),
            parent: Some(ParentLink { span_id, source }),
        })
    }

    /// The identity the kernel decided; `None` if its IDs are invalid (all zero).
    pub fn from_kernel(
        ctx: &RawTraceCtx,
        source: KernelParentSource,
        format: CtxFormat,
    ) -> Option<Self> {
        let trace_id = TraceId::from_bytes(ctx.trace_id)?;
        let span_id = SpanId::from_bytes(ctx.span_id)?;
        let source = ParentSource::from_kernel(source, format);
        let parent = match (SpanId::from_bytes(ctx.parent_span_id), source) {
            (Some(span_id), Some(source)) => Some(ParentLink { span_id, source }),
            _ => None,
        };
        Some(Self {
            trace_id,
            span_id,
            parent,
        })
    }
}
