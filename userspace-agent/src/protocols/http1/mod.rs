//! HTTP/1.0 and HTTP/1.1 message framing for one direction of one TCP connection.
//!
//! The eBPF probes see every read/write-family syscall on a socket but copy only a
//! bounded prefix (and sometimes the last few bytes) of what each call moved. This module
//! turns that lossy view back into message boundaries: where each request or response
//! starts, what its head says, and where it ends, with the body size on the wire.
//!
//! Design rules:
//! - Parsing is incremental and exact: a message may span any number of segments and a
//!   segment may hold any number of messages; the same events come out however the
//!   stream was split.
//! - Unknown bytes (the "gap" inside a segment) are counted, never guessed at. Framing
//!   that only needs counting (Content-Length, chunk data) survives gaps; anything that
//!   needs to read bytes (heads, chunk-size lines) degrades explicitly (truncated heads,
//!   unknown or lost-sync framing) rather than inventing boundaries.
//! - Memory per stream is bounded whatever the input (see the `MAX_*` constants), and no
//!   input can make the parser panic.
//!
//! Where things are:
//! - `engine`: `Core`, the per-direction state machine behind both streams: it walks
//!   known bytes and gaps through start line, header block and body, emits the events,
//!   resynchronises after a desync and goes opaque after an upgrade.
//!   The parts it drives, in the order bytes meet them, follow.
//! - `start_line`: the request-line and status-line parsers, and `looks_like_request` /
//!   `looks_like_response`.
//! - `headers`: the header block: the fields a span keeps (`Headers`) and the fields that
//!   frame the body.
//! - `framing`: how a body ends (RFC 9112 §6) and counting it, also through gaps.
//! - `chunked`: the chunked coding: chunk-size lines, chunk data, trailers, lost sync.
//! - `blank_line`: the blank line that ends a header block or trailer section.
//! - `line`: what the incremental line parsers share; `bounded`: buffers that stay bounded.
//!
//! Tests sit beside each part; `tests` runs every case of a table through every way a
//! stream can be cut, and `testutil` holds the wire bytes they share.

use std::borrow::Cow;
use std::collections::VecDeque;

use engine::{Core, Side, State};
use framing::RequestKind;

pub use super::segment::Segment;
pub use conn::Http1Conn;
pub use headers::Headers;
pub use sniff::{MAX_UNDECIDED, sniff};
pub use start_line::{looks_like_request, looks_like_response};

mod blank_line;
mod bounded;
mod chunked;
mod conn;
mod engine;
mod framing;
mod headers;
mod line;
mod sniff;
mod start_line;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

// ---------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------

/// Most header-block bytes (after the start line) kept while waiting for the blank line.
const MAX_HEAD_BLOCK: usize = 16 * 1024;
/// Most header fields kept per head; framing still looks at every field.
const MAX_HEADERS: usize = 64;
/// Longest header value kept (bytes); longer values are cut.
const MAX_HEADER_VALUE: usize = 1024;
/// Longest header name kept (bytes); names come from the bounded block anyway.
const MAX_HEADER_NAME: usize = 256;
/// Longest method token accepted.
const MAX_METHOD: usize = 16;
/// Longest request-target kept (bytes); longer targets are cut, not rejected.
const MAX_TARGET: usize = 8 * 1024;
/// A request-target longer than this is taken as evidence the bytes are not HTTP/1.
const MAX_TARGET_SEEN: u64 = 64 * 1024;
/// A reason phrase longer than this is taken as evidence the bytes are not HTTP/1.
const MAX_REASON: u64 = 8 * 1024;
/// A chunk-size line (with extensions) longer than this loses chunk sync.
const MAX_CHUNK_LINE: u64 = 4 * 1024;
/// Most request methods remembered for responses not yet seen (pipelining depth).
const MAX_PENDING_REQUESTS: usize = 128;
/// Steps in a row that may consume nothing (each one changes state) before we give up
/// on the rest of the input; guards against an infinite loop should a bug creep in.
const MAX_STALLS: u32 = 4;

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

/// The HTTP versions this parser understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// The version as OTel's `network.protocol.version` wants it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
        }
    }

    fn from_minor_digit(b: u8) -> Option<Self> {
        match b {
            b'0' => Some(Version::Http10),
            b'1' => Some(Version::Http11),
            _ => None,
        }
    }
}

/// A request head as far as it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Borrowed for the standard methods.
    pub method: Cow<'static, str>,
    /// The raw request-target, e.g. "/a/b?x=1" (cut at 8 KiB).
    pub target: String,
    pub version: Version,
    pub headers: Headers,
    /// The head block was not fully seen (gap, size bound or end of input).
    pub truncated: bool,
}

/// A response head as far as it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    /// The head block was not fully seen (gap, size bound or end of input).
    pub truncated: bool,
}

/// What the parser found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http1Event {
    /// A request started in the segment stamped `ts_ns`.
    RequestStart { ts_ns: u64, head: RequestHead },
    /// A (final) response started in the segment stamped `ts_ns`.
    ResponseStart { ts_ns: u64, head: ResponseHead },
    /// The message that started last is complete. ts_ns = timestamp of the segment holding its last byte.
    /// body_bytes = wire bytes after the head block (chunk framing included) = OTel http.*.body.size.
    /// For ends inferred at the peer's turn or the close, ts_ns is the last segment seen; after a
    /// truncated head whose end fell in a gap, body_bytes counts from the end of what was seen.
    MessageEnd { ts_ns: u64, body_bytes: u64 },
    /// Bytes at a message boundary that are not HTTP/1 (count once per desync, then skip until resync).
    NotHttp { ts_ns: u64 },
}

/// A message cut off by connection close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incomplete {
    /// Timestamp of the last segment seen.
    pub ts_ns: u64,
    /// Body bytes seen before the close.
    pub body_bytes: u64,
}

// ---------------------------------------------------------------------------------------
// Public streams
// ---------------------------------------------------------------------------------------

/// Parses requests (the client -> server direction of one connection).
#[derive(Debug)]
pub struct RequestStream {
    core: Core,
}

impl Default for RequestStream {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestStream {
    pub fn new() -> Self {
        Self {
            core: Core::new(Side::Request {
                upgrade_pending: false,
            }),
        }
    }

    /// Feeds the next segment of the stream.
    pub fn push(&mut self, seg: &Segment<'_>, out: &mut Vec<Http1Event>) {
        self.core.push(seg, out);
    }

    /// The server started its next message: ends a message whose framing is unknown.
    /// Messages with known framing are left alone (e.g. a body after `100 Continue`).
    pub fn end_at_peer_turn(&mut self, out: &mut Vec<Http1Event>) {
        self.core.end_at_peer_turn(out);
    }

    /// The connection closed. Returns the message it cut off, if any, and resets.
    pub fn finish(&mut self, out: &mut Vec<Http1Event>) -> Option<Incomplete> {
        self.core.finish(out)
    }

    /// Whether a message's start line has been seen and its end has not.
    pub fn in_message(&self) -> bool {
        self.core.in_message()
    }

    /// Whether the stream is an opaque tunnel (upgrade or CONNECT) and no longer parsed.
    pub fn is_tunnel(&self) -> bool {
        self.core.is_tunnel()
    }

    /// The peer accepted an upgrade or CONNECT: everything after is opaque. Call when the
    /// matching `ResponseStream` turns into a tunnel; any open message is dropped.
    pub fn enter_tunnel(&mut self) {
        self.core.state = State::Tunnel;
    }
}

/// Parses responses (the server -> client direction of one connection).
#[derive(Debug)]
pub struct ResponseStream {
    core: Core,
}

impl Default for ResponseStream {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseStream {
    pub fn new() -> Self {
        Self {
            core: Core::new(Side::Response {
                pending: VecDeque::new(),
            }),
        }
    }

    /// Records that a request with `request_method` was sent; call once per request, in
    /// order. Responses to "HEAD" have no body; 2xx responses to "CONNECT" open a tunnel.
    /// Beyond 128 unanswered requests, further ones are assumed to be plain requests.
    pub fn expect_response(&mut self, request_method: &str) {
        if let Side::Response { pending } = &mut self.core.side
            && pending.len() < MAX_PENDING_REQUESTS
        {
            pending.push_back(RequestKind::of(request_method));
        }
    }

    /// Feeds the next segment of the stream.
    pub fn push(&mut self, seg: &Segment<'_>, out: &mut Vec<Http1Event>) {
        self.core.push(seg, out);
    }

    /// The client started its next request: ends a response whose framing is unknown.
    pub fn end_at_peer_turn(&mut self, out: &mut Vec<Http1Event>) {
        self.core.end_at_peer_turn(out);
    }

    /// The connection closed. A body delimited by the close ends here (`MessageEnd`);
    /// returns the message it cut off, if any, and resets.
    pub fn finish(&mut self, out: &mut Vec<Http1Event>) -> Option<Incomplete> {
        self.core.finish(out)
    }

    /// Whether a message's start line has been seen and its end has not.
    pub fn in_message(&self) -> bool {
        self.core.in_message()
    }

    /// Whether the stream is an opaque tunnel (after 101 or a 2xx to CONNECT).
    pub fn is_tunnel(&self) -> bool {
        self.core.is_tunnel()
    }
}
