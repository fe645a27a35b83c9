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
    /// Go's `crypto/tls` (`(*Conn).Read`, `(*Conn).Write`).
    Go,
    /// GnuTLS (`gnutls_record_recv`, `gnutls_record_send`).
    GnuTls,
}

impl TlsLibrary {
    /// The value of the `sonde.tls.library` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsLibrary::OpenSsl => "openssl",
            TlsLibrary::Go => "go",
            TlsLibrary::GnuTls => "gnutls",
        }
    }
}

/// A TLS protocol version, as the library negotiated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// From the wire value (`0x0303`: TLS 1.2); None for anything else.
    pub fn from_wire(v: u16) -> Option<Self> {
        Some(match v {
            0x0300 => TlsVersion::Ssl3,
            0x0301 => TlsVersion::Tls10,
            0x0302 => TlsVersion::Tls11,
            0x0303 => TlsVersion::Tls12,
            0x0304 => TlsVersion::Tls13,
            _ => return None,
        })
    }

    /// `tls.protocol.name` and `tls.protocol.version`, as OpenTelemetry spells them.
    pub fn name_and_version(self) -> (&'static str, &'static str) {
        match self {
            TlsVersion::Ssl3 => ("ssl", "3"),
            TlsVersion::Tls10 => ("tls", "1.0"),
            TlsVersion::Tls11 => ("tls", "1.1"),
            TlsVersion::Tls12 => ("tls", "1.2"),
            TlsVersion::Tls13 => ("tls", "1.3"),
        }
    }
}

/// Plaintext from a TLS library's probes: which library, and the session's version when
/// the probe could read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsSource {
    pub library: TlsLibrary,
    pub version: Option<TlsVersion>,
}

impl TlsSource {
    /// What a connection knows after `next`: the newest library, and the newest version
    /// known (a write before the handshake does not know it yet).
    pub fn then(self, next: TlsSource) -> TlsSource {
        TlsSource {
            library: next.library,
            version: next.version.or(self.version),
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
    Tls(TlsSource),
}

impl Source {
    /// The library (and session version) whose plaintext these bytes are; `None` for
    /// the socket's own.
    pub fn tls(self) -> Option<TlsSource> {
        match self {
            Source::Socket => None,
            Source::Tls(tls) => Some(tls),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_versions_from_the_wire() {
        let got: Vec<_> = [0x0300, 0x0301, 0x0302, 0x0303, 0x0304]
            .into_iter()
            .map(|v| TlsVersion::from_wire(v).map(TlsVersion::name_and_version))
            .collect();
        assert_eq!(
            got,
            [
                Some(("ssl", "3")),
                Some(("tls", "1.0")),
                Some(("tls", "1.1")),
                Some(("tls", "1.2")),
                Some(("tls", "1.3")),
            ]
        );
        for other in [0, 0x0200, 0x0305, 0xfefd, 0x7f1c] {
            assert_eq!(TlsVersion::from_wire(other), None, "{other:#x}");
        }
    }

    /// A write before the handshake knows no version; what came before or after does.
    #[test]
    fn a_connection_keeps_the_newest_version_known() {
        let known = TlsSource {
            library: TlsLibrary::Go,
            version: Some(TlsVersion::Tls13),
        };
        let unknown = TlsSource {
            version: None,
            ..known
        };
        assert_eq!(known.then(unknown), known);
        assert_eq!(unknown.then(known), known);
        assert_eq!(unknown.then(unknown), unknown);
    }
}
