//! What capture hands on: the bytes one syscall (or library call) moved on a connection,
//! with who moved them and what the kernel decided about their trace context.

use crate::abi::{CtxFormat, CtxRole, Direction, InjectStatus, KernelParentSource, RawTraceCtx};
use crate::protocols::Segment;

/// Who moved the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub tgid: u32,
    pub tid: u32,
    /// The descriptor the process used.
    pub fd: i32,
}

/// The kernel's trace decision for the bytes (see `ebpf-probes/trace_ctx/decide.h`): which role they
/// play, the IDs it chose, how it found the parent, and what injection did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelMark {
    pub role: CtxRole,
    pub ctx: RawTraceCtx,
    pub parent_source: KernelParentSource,
    pub format: CtxFormat,
    pub inject: InjectStatus,
}

impl KernelMark {
    /// Bytes the kernel made no decision about.
    pub const NONE: KernelMark = KernelMark {
        role: CtxRole::None,
        ctx: RawTraceCtx {
            trace_id: [0; 16],
            span_id: [0; 8],
            parent_span_id: [0; 8],
        },
        parent_source: KernelParentSource::None,
        format: CtxFormat::None,
        inject: InjectStatus::None,
    };
}

/// A TLS library whose plaintext the probes read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsLibrary {
    /// OpenSSL or BoringSSL (`SSL_read`, `SSL_write`).
    OpenSsl,
}

impl TlsLibrary {
    /// The value of the `sonde.tls.library` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsLibrary::OpenSsl => "openssl",
        }
    }
}

/// Where a segment's bytes were read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// The socket's own bytes.
    #[default]
    Socket,
    /// Plaintext of a TLS connection, from the library's probes.
    Tls(TlsLibrary),
}

impl Source {
    /// The library whose plaintext these bytes are; `None` for the socket's own.
    pub fn tls_library(self) -> Option<TlsLibrary> {
        match self {
            Source::Socket => None,
            Source::Tls(library) => Some(library),
        }
    }
}

/// Bytes of one direction of a connection, in order with the others of that connection.
/// Timestamps are Unix nanoseconds (capture converts the kernel's clock once).
#[derive(Clone, Copy, Debug)]
pub struct ConnSegment<'a> {
    pub direction: Direction,
    pub origin: Origin,
    pub seg: Segment<'a>,
    pub mark: KernelMark,
    pub source: Source,
}

impl ConnSegment<'_> {
    /// Every byte the call moved was captured (nothing is missing after the head).
    pub fn fully_captured(&self) -> bool {
        self.seg.head.len() as u64 == self.seg.len
    }
}
