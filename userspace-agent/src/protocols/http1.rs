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

use std::borrow::Cow;
use std::collections::VecDeque;
use std::mem;

pub use super::segment::Segment;

mod conn;
mod sniff;

pub use conn::Http1Conn;
pub use sniff::{MAX_UNDECIDED, sniff};

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

/// What both start lines share before the minor version digit.
const VERSION_PREFIX: &[u8] = b"HTTP/1.";
/// The standard methods (RFC 9110 §9, RFC 5789): `looks_like_request` trusts them before
/// it has seen the whole request line, and request heads borrow them instead of
/// allocating a copy per request.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
/// How a chunked body ends when it has no extensions and no trailers; what we look for
/// at segment ends after losing chunk sync.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// Bytes of known stream end remembered after losing chunk sync: `LAST_CHUNK`'s length.
const RECENT_LEN: usize = 5;

// ---------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------

/// The last few known bytes of a stream, contiguous: so the last chunk is recognised at
/// the end of a segment even when that segment holds only part of it.
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    bytes: [u8; RECENT_LEN],
    len: usize,
}

impl Recent {
    fn push(&mut self, more: &[u8]) {
        for &b in more.iter().rev().take(RECENT_LEN).rev() {
            if self.len == RECENT_LEN {
                self.bytes.rotate_left(1);
                self.len -= 1;
            }
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    fn ends_with(&self, pattern: &[u8]) -> bool {
        self.bytes
            .get(..self.len)
            .is_some_and(|known| known.ends_with(pattern))
    }
}

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

/// Header fields of one head, bounded: at most 64 fields kept, values cut at 1024 bytes,
/// names lower-cased.
///
/// Names and values sit back to back in one buffer, with their ranges beside it: two
/// allocations per head instead of two per field (this runs for every request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    buf: String,
    /// (name start, name end = value start, value end) in `buf`.
    fields: Vec<(u32, u32, u32)>,
    omitted: usize,
}

impl Headers {
    /// Room for a head block of `bytes` bytes, so parsing it never reallocates.
    fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: String::with_capacity(
                bytes.min(MAX_HEADERS * (MAX_HEADER_NAME + MAX_HEADER_VALUE)),
            ),
            fields: Vec::with_capacity(16),
            omitted: 0,
        }
    }

    /// The first value of the field `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Kept fields in wire order, as (lower-case name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|&(a, b, c)| {
            let (a, b, c) = (a as usize, b as usize, c as usize);
            (
                self.buf.get(a..b).unwrap_or_default(),
                self.buf.get(b..c).unwrap_or_default(),
            )
        })
    }

    /// Number of fields kept.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Fields seen but not kept because of the field-count bound.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        if self.fields.len() >= MAX_HEADERS {
            self.omitted += 1;
            return;
        }
        let start = self.buf.len();
        append_bounded(&mut self.buf, name, MAX_HEADER_NAME);
        let name_end = self.buf.len();
        self.buf[start..name_end].make_ascii_lowercase();
        append_bounded(&mut self.buf, value, MAX_HEADER_VALUE);
        // At most 64 fields of bounded size: always fits in u32.
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.fields
            .push((offset(start), offset(name_end), offset(self.buf.len())));
    }

    /// Appends an obsolete line folding continuation to the last value (RFC 9112 §5.2:
    /// replace the fold with a space). The last value is at the end of the buffer.
    fn append_folded(&mut self, more: &[u8]) {
        let Some(last) = self.fields.last_mut() else {
            return;
        };
        let len = (last.2 - last.1) as usize;
        let room = MAX_HEADER_VALUE.saturating_sub(len);
        if room > 1 {
            self.buf.push(' ');
            append_bounded(&mut self.buf, more, room - 1);
            last.2 = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
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

/// Cheap check used by the agent: does this look like the start of an HTTP/1 request?
///
/// A complete request line must be valid; a cut-off one must be a valid prefix with a
/// standard method, a space and at least one target byte.
pub fn looks_like_request(bytes: &[u8]) -> bool {
    let mut parser = RequestLineParser::new();
    match parser.feed(bytes).1 {
        Progress::Done(_) => true,
        Progress::Bad => false,
        Progress::More => {
            parser.target_seen > 0
                && STANDARD_METHODS
                    .iter()
                    .any(|m| m.as_bytes() == parser.method())
        }
    }
}

/// Cheap check used by the agent: does this look like the start of an HTTP/1 response?
///
/// Needs at least "HTTP/1.x NNN"; a complete status line must be valid.
pub fn looks_like_response(bytes: &[u8]) -> bool {
    let mut parser = StatusLineParser::new();
    match parser.feed(bytes).1 {
        Progress::Done(_) => true,
        Progress::Bad => false,
        Progress::More => matches!(
            parser.phase,
            StatusPhase::AfterCode | StatusPhase::Reason(_) | StatusPhase::Lf
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The stream engine shared by both directions
// ---------------------------------------------------------------------------------------

/// What a response's request was, as far as response framing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Head,
    Connect,
    Other,
}

impl RequestKind {
    fn of(method: &str) -> Self {
        match method {
            "HEAD" => RequestKind::Head,
            "CONNECT" => RequestKind::Connect,
            _ => RequestKind::Other,
        }
    }
}

/// Direction-specific knowledge.
#[derive(Debug)]
enum Side {
    Request {
        /// The last request asked to switch protocols (Upgrade or CONNECT): if what
        /// follows is not HTTP/1, it is the new protocol, not garbage.
        upgrade_pending: bool,
    },
    Response {
        /// Requests sent and not answered yet, oldest first.
        pending: VecDeque<RequestKind>,
    },
}

impl Side {
    fn line_parser(&self) -> LineParser {
        match self {
            Side::Request { .. } => LineParser::Request(RequestLineParser::new()),
            Side::Response { .. } => LineParser::Status(StatusLineParser::new()),
        }
    }

    /// Whether a segment starting with `head` may start a message (resync after desync).
    fn starts_message(&self, head: &[u8]) -> bool {
        match self {
            Side::Request { .. } => looks_like_request(head),
            Side::Response { .. } => looks_like_response(head),
        }
    }

    fn reset(&mut self) {
        match self {
            Side::Request { upgrade_pending } => *upgrade_pending = false,
            Side::Response { pending } => pending.clear(),
        }
    }
}

/// Where a stream is, between two bytes.
#[derive(Debug)]
enum State {
    /// Between messages: the next byte starts a message.
    Idle,
    /// Reading a request or status line that started in the segment stamped `ts_ns`.
    StartLine { ts_ns: u64, parser: LineParser },
    /// Start line parsed; collecting header lines until the blank line.
    Headers(PartialHead),
    /// Inside a body (the message's Start event is out).
    Body { framing: Framing, body_bytes: u64 },
    /// Lost track of message boundaries: skip until a segment starts with a start line.
    Desync,
    /// After an upgrade or CONNECT: the rest of the stream is not HTTP/1.
    Tunnel,
}

/// A head whose start line is parsed and whose header block is being collected.
#[derive(Debug)]
struct PartialHead {
    ts_ns: u64,
    line: StartLine,
    /// Header-block bytes, at most `MAX_HEAD_BLOCK`.
    block: Vec<u8>,
    blank: BlankLineScanner,
}

/// How much of a head was seen when its Start event goes out.
#[derive(Debug, Clone, Copy)]
enum HeadSeen {
    /// Every byte up to the blank line.
    Complete,
    /// Cut by the size bound, but the blank line was found in the same bytes.
    CutEnded,
    /// Cut by the size bound; the blank line may still be found in the known bytes.
    CutScanning(BlankLineScanner),
    /// Cut by a gap, the peer's turn or the close: where the head ends is unknown.
    CutLost,
}

impl HeadSeen {
    fn truncated(self) -> bool {
        !matches!(self, HeadSeen::Complete)
    }

    /// Whether we know where the head ends, so a bodiless message ends there too.
    fn end_known(self) -> bool {
        matches!(self, HeadSeen::Complete | HeadSeen::CutEnded)
    }

    fn rest_scanner(self) -> Option<BlankLineScanner> {
        match self {
            HeadSeen::CutScanning(scanner) => Some(scanner),
            _ => None,
        }
    }
}

/// What follows a head once its Start event (if any) is out.
#[derive(Debug)]
enum Next {
    /// Interim (1xx) response: no events, the final response follows.
    Interim,
    NoBody,
    /// 101 or 2xx to CONNECT: the message ends with its head, the stream turns opaque.
    Tunnel,
    Body(Framing),
}

/// How the end of a body is found (RFC 9112 §6).
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// Content-Length; `remaining` is never 0.
    Length {
        remaining: u64,
    },
    Chunked(Chunked),
    /// A gap or malformed framing cost us the chunk boundaries; the body ends at a
    /// segment whose last bytes are the last chunk, the peer's turn or the close.
    ChunkedLostSync {
        /// The stream's last known bytes (none right after a gap).
        recent: Recent,
    },
    /// Response without length: the body ends with the connection.
    UntilClose,
    /// The head was truncated: the body ends at the peer's turn or the close.
    Unknown {
        /// While the rest of the truncated head streams by in known bytes, it is still
        /// found and not counted as body.
        head_rest: Option<BlankLineScanner>,
    },
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy)]
enum Chunked {
    Size(ChunkSizeLine),
    Data {
        remaining: u64,
    },
    /// After chunk data: the CRLF (or bare LF) that closes it.
    DataEnd {
        saw_cr: bool,
    },
    /// After the last chunk: trailer fields until the blank line.
    Trailers(BlankLineScanner),
}

/// Outcome of feeding bytes to a body.
#[derive(Debug)]
enum BodyStep {
    Continue(Framing),
    Done,
}

impl Framing {
    /// Consumes known bytes; returns (bytes used, bytes that count as body, outcome).
    fn consume(self, bytes: &[u8]) -> (usize, u64, BodyStep) {
        let all = bytes.len();
        match self {
            Framing::Length { remaining } => {
                let (used, step) = Framing::count_length(remaining, all as u64);
                (used as usize, used, step)
            }
            Framing::Chunked(chunked) => {
                let (used, step) = chunked.consume(bytes);
                (used, used as u64, step)
            }
            Framing::ChunkedLostSync { mut recent } => {
                recent.push(bytes);
                (
                    all,
                    all as u64,
                    BodyStep::Continue(Framing::ChunkedLostSync { recent }),
                )
            }
            Framing::UntilClose | Framing::Unknown { head_rest: None } => {
                (all, all as u64, BodyStep::Continue(self))
            }
            Framing::Unknown {
                head_rest: Some(mut scanner),
            } => match scanner.scan(bytes) {
                Some(used) => (
                    used,
                    0,
                    BodyStep::Continue(Framing::Unknown { head_rest: None }),
                ),
                None => (
                    all,
                    0,
                    BodyStep::Continue(Framing::Unknown {
                        head_rest: Some(scanner),
                    }),
                ),
            },
        }
    }

    /// Consumes `gap` unknown bytes; returns (bytes used, outcome). All used bytes are body.
    fn skip(self, gap: u64) -> (u64, BodyStep) {
        match self {
            Framing::Length { remaining } => Framing::count_length(remaining, gap),
            // A gap inside chunk data costs nothing: the data is skipped by count anyway.
            Framing::Chunked(Chunked::Data { remaining }) if gap <= remaining => {
                let (used, next) = Chunked::count_data(remaining, gap);
                (used, BodyStep::Continue(Framing::Chunked(next)))
            }
            Framing::Chunked(_) | Framing::ChunkedLostSync { .. } => {
                (gap, BodyStep::Continue(Framing::lost_sync()))
            }
            Framing::UntilClose => (gap, BodyStep::Continue(Framing::UntilClose)),
            Framing::Unknown { .. } => (
                gap,
                BodyStep::Continue(Framing::Unknown { head_rest: None }),
            ),
        }
    }
}

impl Framing {
    fn lost_sync() -> Self {
        Framing::ChunkedLostSync {
            recent: Recent::default(),
        }
    }

    /// Counts up to `available` bytes against a Content-Length body; returns (used, outcome).
    fn count_length(remaining: u64, available: u64) -> (u64, BodyStep) {
        let used = remaining.min(available);
        let step = match remaining - used {
            0 => BodyStep::Done,
            remaining => BodyStep::Continue(Framing::Length { remaining }),
        };
        (used, step)
    }
}

impl Chunked {
    fn start() -> Self {
        Chunked::Size(ChunkSizeLine::new())
    }

    /// Counts up to `available` bytes of chunk data; returns (used, next state). The
    /// data's closing CRLF follows once it is used up.
    fn count_data(remaining: u64, available: u64) -> (u64, Chunked) {
        let used = remaining.min(available);
        let next = match remaining - used {
            0 => Chunked::DataEnd { saw_cr: false },
            remaining => Chunked::Data { remaining },
        };
        (used, next)
    }

    /// Consumes known chunked-body bytes; returns (bytes used, outcome).
    fn consume(self, bytes: &[u8]) -> (usize, BodyStep) {
        let chunked = |c| BodyStep::Continue(Framing::Chunked(c));
        match self {
            Chunked::Size(mut line) => {
                let (used, progress) = line.feed(bytes);
                let step = match progress {
                    Progress::More => chunked(Chunked::Size(line)),
                    Progress::Bad => BodyStep::Continue(Framing::lost_sync()),
                    Progress::Done(0) => chunked(Chunked::Trailers(BlankLineScanner::default())),
                    Progress::Done(size) => chunked(Chunked::Data { remaining: size }),
                };
                (used, step)
            }
            Chunked::Data { remaining } => {
                let (used, next) = Chunked::count_data(remaining, bytes.len() as u64);
                (used as usize, chunked(next))
            }
            Chunked::DataEnd { saw_cr } => match bytes.first() {
                None => (0, chunked(self)),
                Some(b'\r') if !saw_cr => (1, chunked(Chunked::DataEnd { saw_cr: true })),
                Some(b'\n') => (1, chunked(Chunked::start())),
                Some(_) => (1, BodyStep::Continue(Framing::lost_sync())),
            },
            Chunked::Trailers(mut scanner) => match scanner.scan(bytes) {
                Some(used) => (used, BodyStep::Done),
                None => (bytes.len(), chunked(Chunked::Trailers(scanner))),
            },
        }
    }
}

/// The parser for one direction; `RequestStream` and `ResponseStream` differ only in `side`.
#[derive(Debug)]
struct Core {
    side: Side,
    state: State,
    /// Timestamp of the last segment pushed, for ends found outside `push`.
    last_ts: u64,
}

impl Core {
    fn new(side: Side) -> Self {
        Self {
            side,
            state: State::Idle,
            last_ts: 0,
        }
    }

    fn in_message(&self) -> bool {
        matches!(self.state, State::Headers(_) | State::Body { .. })
    }

    fn is_tunnel(&self) -> bool {
        matches!(self.state, State::Tunnel)
    }

    fn push(&mut self, seg: &Segment<'_>, out: &mut Vec<Http1Event>) {
        let (head, gap, tail) = seg.parts();
        if head.is_empty() && gap == 0 && tail.is_empty() {
            return;
        }
        let ts = seg.ts_ns;
        self.last_ts = ts;
        if matches!(self.state, State::Desync) && self.side.starts_message(head) {
            self.state = State::Idle;
        }
        self.feed(head, ts, out);
        self.feed_gap(gap, ts, out);
        self.feed(tail, ts, out);
        if let State::Body {
            framing: Framing::ChunkedLostSync { recent },
            body_bytes,
        } = self.state
            && recent.ends_with(LAST_CHUNK)
        {
            out.push(Http1Event::MessageEnd {
                ts_ns: ts,
                body_bytes,
            });
            self.state = State::Idle;
        }
    }

    fn end_at_peer_turn(&mut self, out: &mut Vec<Http1Event>) {
        let ts = self.last_ts;
        if let Some(head) = self.take_head() {
            self.finish_head(head, HeadSeen::CutLost, ts, out);
        }
        self.end_open_ended(ts, out);
    }

    fn finish(&mut self, out: &mut Vec<Http1Event>) -> Option<Incomplete> {
        let ts = self.last_ts;
        let head = self.take_head();
        let head_cut = head.is_some();
        if let Some(head) = head {
            self.finish_head(head, HeadSeen::CutLost, ts, out);
        }
        let result = match mem::replace(&mut self.state, State::Idle) {
            State::Body {
                framing: Framing::UntilClose | Framing::Unknown { .. },
                body_bytes,
            } if !head_cut => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes,
                });
                None
            }
            State::Body { body_bytes, .. } => Some(Incomplete {
                ts_ns: ts,
                body_bytes,
            }),
            _ => None,
        };
        self.side.reset();
        result
    }

    /// Takes the head being collected out of the state, if that is the state.
    fn take_head(&mut self) -> Option<PartialHead> {
        match mem::replace(&mut self.state, State::Idle) {
            State::Headers(head) => Some(head),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Ends a body whose end can only be inferred (unknown or lost-sync framing).
    fn end_open_ended(&mut self, ts: u64, out: &mut Vec<Http1Event>) {
        if let State::Body {
            framing: Framing::Unknown { .. } | Framing::ChunkedLostSync { .. },
            body_bytes,
        } = self.state
        {
            out.push(Http1Event::MessageEnd {
                ts_ns: ts,
                body_bytes,
            });
            self.state = State::Idle;
        }
    }

    /// Feeds known bytes until all are used.
    fn feed(&mut self, mut bytes: &[u8], ts: u64, out: &mut Vec<Http1Event>) {
        let mut stalls = 0;
        while !bytes.is_empty() {
            let used = self.step(bytes, ts, out);
            if used == 0 {
                stalls += 1;
                debug_assert!(
                    stalls < MAX_STALLS,
                    "http1 parser stalled in {:?}",
                    self.state
                );
                if stalls >= MAX_STALLS {
                    return;
                }
                continue;
            }
            stalls = 0;
            bytes = bytes.get(used..).unwrap_or_default();
        }
    }

    /// Feeds `gap` unknown bytes until all are used.
    fn feed_gap(&mut self, mut gap: u64, ts: u64, out: &mut Vec<Http1Event>) {
        let mut stalls = 0;
        while gap > 0 {
            let used = self.step_gap(gap, ts, out);
            if used == 0 {
                stalls += 1;
                debug_assert!(
                    stalls < MAX_STALLS,
                    "http1 parser stalled in {:?}",
                    self.state
                );
                if stalls >= MAX_STALLS {
                    return;
                }
                continue;
            }
            stalls = 0;
            gap -= used.min(gap);
        }
    }

    /// Consumes some known bytes in the current state; returns how many.
    fn step(&mut self, bytes: &[u8], ts: u64, out: &mut Vec<Http1Event>) -> usize {
        match mem::replace(&mut self.state, State::Idle) {
            State::Idle => self.step_idle(bytes, ts, out),
            State::StartLine { ts_ns, parser } => self.step_start_line(ts_ns, parser, bytes, out),
            State::Headers(head) => self.step_headers(head, bytes, ts, out),
            State::Body {
                framing,
                body_bytes,
            } => {
                let (used, counted, step) = framing.consume(bytes);
                self.after_body_step(step, body_bytes.saturating_add(counted), ts, out);
                used
            }
            parked @ (State::Desync | State::Tunnel) => {
                self.state = parked;
                bytes.len()
            }
        }
    }

    /// Consumes some of `gap` unknown bytes in the current state; returns how many.
    fn step_gap(&mut self, gap: u64, ts: u64, out: &mut Vec<Http1Event>) -> u64 {
        match mem::replace(&mut self.state, State::Idle) {
            State::Idle => {
                self.lose_sync(ts, out);
                0
            }
            State::StartLine { ts_ns, .. } => {
                self.lose_sync(ts_ns, out);
                0
            }
            State::Headers(head) => {
                self.finish_head(head, HeadSeen::CutLost, ts, out);
                0
            }
            State::Body {
                framing,
                body_bytes,
            } => {
                let (used, step) = framing.skip(gap);
                self.after_body_step(step, body_bytes.saturating_add(used), ts, out);
                used
            }
            parked @ (State::Desync | State::Tunnel) => {
                self.state = parked;
                gap
            }
        }
    }

    fn step_idle(&mut self, bytes: &[u8], ts: u64, out: &mut Vec<Http1Event>) -> usize {
        // RFC 9112 §2.2: empty lines before a start line are to be ignored.
        let blank = bytes
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            return blank;
        }
        let parser = self.side.line_parser();
        self.step_start_line(ts, parser, bytes, out)
    }

    fn step_start_line(
        &mut self,
        ts_ns: u64,
        mut parser: LineParser,
        bytes: &[u8],
        out: &mut Vec<Http1Event>,
    ) -> usize {
        let (used, progress) = parser.feed(bytes);
        match progress {
            Progress::More => self.state = State::StartLine { ts_ns, parser },
            Progress::Bad => self.lose_sync(ts_ns, out),
            Progress::Done(line) => {
                if let Side::Request { upgrade_pending } = &mut self.side {
                    *upgrade_pending = false;
                }
                self.state = State::Headers(PartialHead {
                    ts_ns,
                    line,
                    block: Vec::new(),
                    blank: BlankLineScanner::default(),
                });
            }
        }
        used
    }

    fn step_headers(
        &mut self,
        mut head: PartialHead,
        bytes: &[u8],
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) -> usize {
        let end = head.blank.scan(bytes);
        let take = end.unwrap_or(bytes.len());
        // The usual case, a whole head in one segment: parsed where it lies, not copied.
        if let Some(end) = end
            && head.block.is_empty()
            && end <= MAX_HEAD_BLOCK
            && let Some(block) = bytes.get(..end)
        {
            self.finish_head_in(head.ts_ns, head.line, block, HeadSeen::Complete, ts, out);
            return end;
        }
        let stored = bounded_extend(
            &mut head.block,
            bytes.get(..take).unwrap_or(bytes),
            MAX_HEAD_BLOCK,
        );
        if stored < take {
            let seen = match end {
                Some(_) => HeadSeen::CutEnded,
                None => HeadSeen::CutScanning(head.blank),
            };
            self.finish_head(head, seen, ts, out);
        } else if end.is_some() {
            self.finish_head(head, HeadSeen::Complete, ts, out);
        } else {
            self.state = State::Headers(head);
        }
        take
    }

    /// Things do not look like HTTP/1 at a message boundary.
    fn lose_sync(&mut self, ts_ns: u64, out: &mut Vec<Http1Event>) {
        if let Side::Request {
            upgrade_pending: true,
        } = self.side
        {
            // The client switched protocols right after asking to: not garbage.
            self.state = State::Tunnel;
        } else {
            out.push(Http1Event::NotHttp { ts_ns });
            self.state = State::Desync;
        }
    }

    /// Emits the Start event for a head (if any) and enters what follows it.
    fn finish_head(
        &mut self,
        head: PartialHead,
        seen: HeadSeen,
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) {
        self.finish_head_in(head.ts_ns, head.line, &head.block, seen, ts, out);
    }

    /// `finish_head` for a head whose start line is `line` and header block `block`.
    fn finish_head_in(
        &mut self,
        head_ts: u64,
        line: StartLine,
        block: &[u8],
        seen: HeadSeen,
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) {
        // A cut head may lack the very fields that frame the body.
        let complete = !seen.truncated();
        let mut next = match line {
            StartLine::Request(line) => {
                let mut headers = Headers::with_capacity(block.len());
                let framing = parse_header_block(block, Some(&mut headers));
                let framing = complete.then_some(&framing);
                self.start_request(head_ts, line, headers, framing, out)
            }
            StartLine::Status(line) => {
                // Spans use no response field beyond those that frame the body: none is kept.
                let framing = parse_header_block(block, None);
                self.start_response(head_ts, line, complete.then_some(&framing), out)
            }
        };
        if let Next::Body(Framing::Unknown { head_rest }) = &mut next {
            *head_rest = seen.rest_scanner();
        }
        let after_head = if seen.end_known() {
            State::Idle
        } else {
            State::Desync
        };
        self.state = match next {
            Next::Interim => after_head,
            Next::NoBody => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes: 0,
                });
                after_head
            }
            Next::Tunnel => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes: 0,
                });
                State::Tunnel
            }
            Next::Body(framing) => State::Body {
                framing,
                body_bytes: 0,
            },
        };
    }

    /// Emits RequestStart; `framing` is `None` when the head was cut.
    fn start_request(
        &mut self,
        ts_ns: u64,
        line: RequestLine,
        headers: Headers,
        framing: Option<&FramingFields>,
        out: &mut Vec<Http1Event>,
    ) -> Next {
        if let Side::Request { upgrade_pending } = &mut self.side {
            *upgrade_pending = line.method == "CONNECT" || headers.get("upgrade").is_some();
        }
        out.push(Http1Event::RequestStart {
            ts_ns,
            head: RequestHead {
                method: line.method,
                target: line.target,
                version: line.version,
                headers,
                truncated: framing.is_none(),
            },
        });
        framing.map_or(
            Next::Body(Framing::Unknown { head_rest: None }),
            request_body,
        )
    }

    /// Emits ResponseStart for final responses; `framing` is `None` when the head was cut.
    fn start_response(
        &mut self,
        ts_ns: u64,
        line: StatusLine,
        framing: Option<&FramingFields>,
        out: &mut Vec<Http1Event>,
    ) -> Next {
        let status = line.status;
        if (100..200).contains(&status) && status != 101 {
            return Next::Interim;
        }
        let request = match &mut self.side {
            Side::Response { pending } => pending.pop_front(),
            Side::Request { .. } => None,
        }
        .unwrap_or(RequestKind::Other);
        out.push(Http1Event::ResponseStart {
            ts_ns,
            head: ResponseHead {
                version: line.version,
                status,
                truncated: framing.is_none(),
            },
        });
        response_body(status, request, framing)
    }

    fn after_body_step(
        &mut self,
        step: BodyStep,
        body_bytes: u64,
        ts: u64,
        out: &mut Vec<Http1Event>,
    ) {
        self.state = match step {
            BodyStep::Continue(framing) => State::Body {
                framing,
                body_bytes,
            },
            BodyStep::Done => {
                out.push(Http1Event::MessageEnd {
                    ts_ns: ts,
                    body_bytes,
                });
                State::Idle
            }
        };
    }

    /// Bytes held in buffers, for memory-bound tests.
    #[cfg(test)]
    fn retained_bytes(&self) -> usize {
        let state = match &self.state {
            State::StartLine {
                parser: LineParser::Request(p),
                ..
            } => p.method.len() + p.target.capacity(),
            State::Headers(head) => {
                head.block.capacity()
                    + match &head.line {
                        StartLine::Request(line) => line.method.len() + line.target.capacity(),
                        StartLine::Status(_) => 0,
                    }
            }
            _ => 0,
        };
        let side = match &self.side {
            Side::Response { pending } => pending.capacity(),
            Side::Request { .. } => 0,
        };
        state + side
    }
}

/// RFC 9112 §6.3 for requests: chunked > Content-Length > no body. A request with an
/// unusable length would be rejected by the server; we just stop knowing its end.
fn request_body(fields: &FramingFields) -> Next {
    match (fields.transfer_encoding, fields.content_length) {
        (Some(Coding::Chunked), _) => Next::Body(Framing::Chunked(Chunked::start())),
        (Some(Coding::Other), _) | (None, ContentLength::Invalid) => {
            Next::Body(Framing::Unknown { head_rest: None })
        }
        (None, ContentLength::Valid(remaining)) if remaining > 0 => {
            Next::Body(Framing::Length { remaining })
        }
        (None, _) => Next::NoBody,
    }
}

/// RFC 9112 §6.3 for responses; `fields` is `None` when the head was cut, which still
/// leaves the status- and method-based rules usable.
fn response_body(status: u16, request: RequestKind, fields: Option<&FramingFields>) -> Next {
    if status == 101 || (request == RequestKind::Connect && (200..300).contains(&status)) {
        return Next::Tunnel;
    }
    if request == RequestKind::Head || status == 204 || status == 304 || status < 200 {
        return Next::NoBody;
    }
    let Some(fields) = fields else {
        return Next::Body(Framing::Unknown { head_rest: None });
    };
    match (fields.transfer_encoding, fields.content_length) {
        (Some(Coding::Chunked), _) => Next::Body(Framing::Chunked(Chunked::start())),
        (Some(Coding::Other), _) | (None, ContentLength::Absent) => Next::Body(Framing::UntilClose),
        (None, ContentLength::Invalid) => Next::Body(Framing::Unknown { head_rest: None }),
        (None, ContentLength::Valid(0)) => Next::NoBody,
        (None, ContentLength::Valid(remaining)) => Next::Body(Framing::Length { remaining }),
    }
}

// ---------------------------------------------------------------------------------------
// Start lines
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct RequestLine {
    method: Cow<'static, str>,
    target: String,
    version: Version,
}

#[derive(Debug)]
struct StatusLine {
    version: Version,
    status: u16,
}

#[derive(Debug)]
enum StartLine {
    Request(RequestLine),
    Status(StatusLine),
}

/// Result of feeding bytes to an incremental line parser.
#[derive(Debug)]
enum Progress<T> {
    /// Valid so far; the line goes on.
    More,
    Done(T),
    /// Not a valid line.
    Bad,
}

/// Result of feeding one byte.
enum Step {
    More,
    Done,
    Bad,
}

/// Runs `step` over `bytes` until the line is done or bad; returns bytes used.
fn feed_bytes(bytes: &[u8], mut step: impl FnMut(u8) -> Step) -> (usize, Progress<()>) {
    for (i, &b) in bytes.iter().enumerate() {
        match step(b) {
            Step::More => {}
            Step::Done => return (i + 1, Progress::Done(())),
            Step::Bad => return (i + 1, Progress::Bad),
        }
    }
    (bytes.len(), Progress::More)
}

#[derive(Debug)]
enum LineParser {
    Request(RequestLineParser),
    Status(StatusLineParser),
}

impl LineParser {
    fn feed(&mut self, bytes: &[u8]) -> (usize, Progress<StartLine>) {
        match self {
            LineParser::Request(p) => {
                let (used, progress) = p.feed(bytes);
                (used, progress.map(StartLine::Request))
            }
            LineParser::Status(p) => {
                let (used, progress) = p.feed(bytes);
                (used, progress.map(StartLine::Status))
            }
        }
    }
}

impl<T> Progress<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Progress<U> {
        match self {
            Progress::More => Progress::More,
            Progress::Done(t) => Progress::Done(f(t)),
            Progress::Bad => Progress::Bad,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestPhase {
    Method,
    Target,
    /// Matching `VERSION_PREFIX`; the index of the next byte to match.
    Version(usize),
    Minor,
    /// After the version: CR or (bare) LF.
    LineEnd,
    /// After CR: LF.
    Lf,
}

/// Room reserved for a request-target when its first byte arrives.
const TARGET_RESERVE: usize = 64;

/// A method token (upper-case ASCII, `-`, `_`: the parser accepts nothing else).
fn method_name(token: &[u8]) -> Cow<'static, str> {
    match STANDARD_METHODS.iter().find(|m| m.as_bytes() == token) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(String::from_utf8_lossy(token).into_owned()),
    }
}

/// The kept target bytes as a String, reusing their buffer when they are UTF-8.
fn target_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| bounded_string(e.as_bytes(), MAX_TARGET))
}

/// Incremental request-line parser: `method SP target SP HTTP/1.x CRLF`, keeping at
/// most `MAX_TARGET` bytes of the target.
#[derive(Debug)]
struct RequestLineParser {
    phase: RequestPhase,
    /// Method bytes; no token longer than `MAX_METHOD` is accepted.
    method: [u8; MAX_METHOD],
    method_len: usize,
    target: Vec<u8>,
    target_seen: u64,
    version: Option<Version>,
}

impl RequestLineParser {
    fn new() -> Self {
        Self {
            phase: RequestPhase::Method,
            method: [0; MAX_METHOD],
            method_len: 0,
            target: Vec::new(),
            target_seen: 0,
            version: None,
        }
    }

    /// The method bytes seen so far.
    fn method(&self) -> &[u8] {
        self.method.get(..self.method_len).unwrap_or_default()
    }

    fn feed(&mut self, bytes: &[u8]) -> (usize, Progress<RequestLine>) {
        let (used, progress) = feed_bytes(bytes, |b| self.step(b));
        let progress = match (progress, self.version) {
            (Progress::Done(()), Some(version)) => Progress::Done(RequestLine {
                method: method_name(self.method()),
                target: target_string(mem::take(&mut self.target)),
                version,
            }),
            (Progress::Done(()), None) | (Progress::Bad, _) => Progress::Bad,
            (Progress::More, _) => Progress::More,
        };
        (used, progress)
    }

    fn step(&mut self, b: u8) -> Step {
        self.phase = match (self.phase, b) {
            (RequestPhase::Method, b' ') if self.method_len > 0 => RequestPhase::Target,
            (RequestPhase::Method, _) => {
                let valid =
                    b.is_ascii_uppercase() || (self.method_len > 0 && (b == b'-' || b == b'_'));
                let Some(slot) = self.method.get_mut(self.method_len).filter(|_| valid) else {
                    return Step::Bad;
                };
                *slot = b;
                self.method_len += 1;
                RequestPhase::Method
            }
            (RequestPhase::Target, b' ') if self.target_seen > 0 => RequestPhase::Version(0),
            (RequestPhase::Target, _) => {
                if !is_target_byte(b) || self.target_seen >= MAX_TARGET_SEEN {
                    return Step::Bad;
                }
                self.target_seen += 1;
                if self.target.len() < MAX_TARGET {
                    if self.target.capacity() == 0 {
                        // Most targets fit: one allocation, which becomes the String.
                        self.target.reserve(TARGET_RESERVE);
                    }
                    self.target.push(b);
                }
                RequestPhase::Target
            }
            (RequestPhase::Version(i), _) => match next_prefix_index(i, b) {
                Some(i) if i == VERSION_PREFIX.len() => RequestPhase::Minor,
                Some(i) => RequestPhase::Version(i),
                None => return Step::Bad,
            },
            (RequestPhase::Minor, _) => {
                self.version = Version::from_minor_digit(b);
                if self.version.is_none() {
                    return Step::Bad;
                }
                RequestPhase::LineEnd
            }
            (RequestPhase::LineEnd, b'\r') => RequestPhase::Lf,
            (RequestPhase::LineEnd | RequestPhase::Lf, b'\n') => return Step::Done,
            (RequestPhase::LineEnd | RequestPhase::Lf, _) => return Step::Bad,
        };
        Step::More
    }
}

/// The index after `VERSION_PREFIX[i]` if `b` matches it.
fn next_prefix_index(i: usize, b: u8) -> Option<usize> {
    (VERSION_PREFIX.get(i) == Some(&b)).then_some(i + 1)
}

/// Bytes allowed in a request-target: visible ASCII and (leniently) raw non-ASCII.
fn is_target_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusPhase {
    /// Matching `VERSION_PREFIX`; the index of the next byte to match.
    Version(usize),
    Minor,
    Space,
    /// Status code digits; how many seen.
    Code(u8),
    /// After the code: SP and a reason, or the line end (reason is optional in practice).
    AfterCode,
    /// In the reason phrase; bytes seen.
    Reason(u64),
    /// After CR: LF.
    Lf,
}

/// Incremental status-line parser: `HTTP/1.x SP NNN [SP reason] CRLF`.
#[derive(Debug)]
struct StatusLineParser {
    phase: StatusPhase,
    version: Option<Version>,
    status: u16,
}

impl StatusLineParser {
    fn new() -> Self {
        Self {
            phase: StatusPhase::Version(0),
            version: None,
            status: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> (usize, Progress<StatusLine>) {
        let (used, progress) = feed_bytes(bytes, |b| self.step(b));
        let progress = match (progress, self.version) {
            (Progress::Done(()), Some(version)) if self.status >= 100 => {
                Progress::Done(StatusLine {
                    version,
                    status: self.status,
                })
            }
            (Progress::Done(()) | Progress::Bad, _) => Progress::Bad,
            (Progress::More, _) => Progress::More,
        };
        (used, progress)
    }

    fn step(&mut self, b: u8) -> Step {
        self.phase = match (self.phase, b) {
            (StatusPhase::Version(i), _) => match next_prefix_index(i, b) {
                Some(i) if i == VERSION_PREFIX.len() => StatusPhase::Minor,
                Some(i) => StatusPhase::Version(i),
                None => return Step::Bad,
            },
            (StatusPhase::Minor, _) => {
                self.version = Version::from_minor_digit(b);
                if self.version.is_none() {
                    return Step::Bad;
                }
                StatusPhase::Space
            }
            (StatusPhase::Space, b' ') => StatusPhase::Code(0),
            (StatusPhase::Code(n), b'0'..=b'9') => {
                self.status = self.status * 10 + u16::from(b - b'0');
                if n + 1 == 3 {
                    if self.status < 100 {
                        return Step::Bad;
                    }
                    StatusPhase::AfterCode
                } else {
                    StatusPhase::Code(n + 1)
                }
            }
            (StatusPhase::AfterCode, b' ') => StatusPhase::Reason(0),
            (StatusPhase::AfterCode | StatusPhase::Reason(_), b'\r') => StatusPhase::Lf,
            (StatusPhase::AfterCode | StatusPhase::Reason(_) | StatusPhase::Lf, b'\n') => {
                return Step::Done;
            }
            (StatusPhase::Reason(n), _)
                if n < MAX_REASON && (b == b'\t' || b >= b' ') && b != 0x7f =>
            {
                StatusPhase::Reason(n + 1)
            }
            _ => return Step::Bad,
        };
        Step::More
    }
}

// ---------------------------------------------------------------------------------------
// Header block
// ---------------------------------------------------------------------------------------

/// Finds the blank line that ends a header block or trailer section, across calls.
/// Starts at the beginning of a line.
#[derive(Debug, Clone, Copy, Default)]
struct BlankLineScanner {
    /// Bytes in the current line so far.
    line_len: u64,
    prev_cr: bool,
}

impl BlankLineScanner {
    /// Bytes up to and including the LF of the first blank line ("\r\n" or "\n") in
    /// `bytes`, if there is one.
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        // Line by line (memchr), not byte by byte: this runs over every request and
        // response head.
        let mut line_start = 0;
        for lf in memchr::memchr_iter(b'\n', bytes) {
            let line = bytes.get(line_start..lf).unwrap_or_default();
            let len = self.line_len.saturating_add(line.len() as u64);
            let ends_cr = line.last().map_or(self.prev_cr, |&b| b == b'\r');
            *self = Self::default();
            if len == 0 || (len == 1 && ends_cr) {
                return Some(lf + 1);
            }
            line_start = lf + 1;
        }
        let rest = bytes.get(line_start..).unwrap_or_default();
        if let Some(&last) = rest.last() {
            self.line_len = self.line_len.saturating_add(rest.len() as u64);
            self.prev_cr = last == b'\r';
        }
        None
    }
}

/// A body coding named by Transfer-Encoding, as framing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Chunked,
    Other,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ContentLength {
    #[default]
    Absent,
    Valid(u64),
    /// Not a number, or several different numbers.
    Invalid,
}

/// The fields that frame a body, gathered from every field line (also those past the
/// `MAX_HEADERS` bound, so the bound cannot change framing).
#[derive(Debug, Default)]
struct FramingFields {
    /// The final transfer coding, if Transfer-Encoding is present.
    transfer_encoding: Option<Coding>,
    content_length: ContentLength,
}

impl FramingFields {
    fn observe(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value
                .rsplit(|&b| b == b',')
                .map(trim_ows)
                .find(|c| !c.is_empty());
            if let Some(coding) = last {
                self.transfer_encoding = Some(if coding.eq_ignore_ascii_case(b"chunked") {
                    Coding::Chunked
                } else {
                    Coding::Other
                });
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6: a list of identical values is the same as one value.
            for item in value.split(|&b| b == b',').map(trim_ows) {
                self.content_length = match (self.content_length, super::parse_decimal(item)) {
                    (ContentLength::Absent, Some(n)) => ContentLength::Valid(n),
                    (ContentLength::Valid(m), Some(n)) if m == n => ContentLength::Valid(n),
                    _ => ContentLength::Invalid,
                };
            }
        }
    }
}

/// Parses the header lines of `block` up to the blank line into the fields that frame the
/// body, keeping every field in `headers` when given; a trailing line without its LF (cut
/// head) is ignored because its value may be cut too.
fn parse_header_block(block: &[u8], mut headers: Option<&mut Headers>) -> FramingFields {
    let mut framing = FramingFields::default();
    let mut rest = block;
    while let Some(lf) = memchr::memchr(b'\n', rest) {
        let (line, after) = rest.split_at(lf);
        rest = after.get(1..).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(headers) = headers.as_deref_mut() {
                headers.append_folded(trim_ows(line));
            }
            continue;
        }
        // The name is a token, ended by the colon (':' is no token byte).
        let colon = line
            .iter()
            .position(|&b| !is_token_byte(b))
            .unwrap_or(line.len());
        if colon == 0 || line.get(colon) != Some(&b':') {
            continue;
        }
        let (name, value) = line.split_at(colon);
        let value = trim_ows(value.get(1..).unwrap_or_default());
        framing.observe(name, value);
        if let Some(headers) = headers.as_deref_mut() {
            headers.push(name, value);
        }
    }
    framing
}

/// RFC 9110 tchar.
fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// `is_token_byte` by byte value: a header name is checked byte by byte on every request.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    table
};

/// Trims optional whitespace (SP / HTAB) at both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Chunk-size lines
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizePhase {
    Digits,
    /// After the size: BWS and `;name=value` extensions, skipped.
    Extension,
    /// After CR: LF.
    Lf,
}

/// Incremental chunk-size line parser: `HEX [ext] CRLF`.
#[derive(Debug, Clone, Copy)]
struct ChunkSizeLine {
    phase: SizePhase,
    size: u64,
    digits: u8,
    len: u64,
}

impl ChunkSizeLine {
    fn new() -> Self {
        Self {
            phase: SizePhase::Digits,
            size: 0,
            digits: 0,
            len: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> (usize, Progress<u64>) {
        let (used, progress) = feed_bytes(bytes, |b| self.step(b));
        (used, progress.map(|()| self.size))
    }

    fn step(&mut self, b: u8) -> Step {
        self.len += 1;
        if self.len > MAX_CHUNK_LINE {
            return Step::Bad;
        }
        let has_digits = self.digits > 0;
        self.phase = match (self.phase, b) {
            (SizePhase::Digits, _) if b.is_ascii_hexdigit() => {
                // 16 hex digits fill a u64; more would overflow.
                if self.digits >= 16 {
                    return Step::Bad;
                }
                self.digits += 1;
                self.size = (self.size << 4) | u64::from(hex_value(b));
                SizePhase::Digits
            }
            (SizePhase::Digits, b';' | b' ' | b'\t') if has_digits => SizePhase::Extension,
            (SizePhase::Digits | SizePhase::Extension, b'\r') if has_digits => SizePhase::Lf,
            (SizePhase::Digits | SizePhase::Extension | SizePhase::Lf, b'\n') if has_digits => {
                return Step::Done;
            }
            (SizePhase::Extension, _) => SizePhase::Extension,
            _ => return Step::Bad,
        };
        Step::More
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------
// Bounded buffers
// ---------------------------------------------------------------------------------------

/// Appends as much of `bytes` as fits under `max` bytes; returns how much. Grows the
/// buffer geometrically but never past `max`, so a stream's memory stays bounded.
fn bounded_extend(buf: &mut Vec<u8>, bytes: &[u8], max: usize) -> usize {
    let n = bytes.len().min(max.saturating_sub(buf.len()));
    let want = buf.len() + n;
    if want > buf.capacity() {
        let grown = buf.capacity().saturating_mul(2).min(max).max(want);
        buf.reserve_exact(grown - buf.len());
    }
    buf.extend_from_slice(bytes.get(..n).unwrap_or_default());
    n
}

/// `bytes` as text (invalid UTF-8 replaced), at most `max` bytes long.
fn bounded_string(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    append_bounded(&mut s, bytes, max);
    s
}

/// Appends at most `max` bytes of `bytes` as UTF-8 (invalid sequences replaced), cut on a
/// character boundary.
fn append_bounded(buf: &mut String, bytes: &[u8], max: usize) {
    let bytes = bytes.get(..max).unwrap_or(bytes);
    // Fast path: headers are nearly always ASCII.
    if let Ok(s) = std::str::from_utf8(bytes) {
        buf.push_str(s);
        return;
    }
    let lossy = String::from_utf8_lossy(bytes.get(..max).unwrap_or(bytes));
    let mut cut = lossy.len().min(max);
    while !lossy.is_char_boundary(cut) {
        cut -= 1;
    }
    buf.push_str(lossy.get(..cut).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    //! Every case in `cases()` is a byte stream cut into messages, each with the events it
    //! must produce. `check_case` runs it as one segment, byte by byte, at random split
    //! points and with limited capture (heads cut to N bytes, gap, 8-byte tail), and
    //! compares events with timestamps mapped back to byte offsets, in the spirit of
    //! ripgrep's `SearcherTester`.

    use super::*;
    use std::collections::BTreeSet;

    /// The blank line is found across calls, whatever the split.
    #[test]
    fn blank_line_scanner_across_calls() {
        let scan = |parts: &[&[u8]]| {
            let mut s = BlankLineScanner::default();
            parts.iter().map(|p| s.scan(p)).collect::<Vec<_>>()
        };
        assert_eq!(scan(&[b"\r", b"\n"]), [None, Some(1)]);
        assert_eq!(scan(&[b"a\r", b"\n\r\n"]), [None, Some(3)]);
        assert_eq!(scan(&[b"", b"\n"]), [None, Some(1)]);
        assert_eq!(scan(&[b"\r", b"\r\n", b"\r\n"]), [None, None, Some(2)]);
        assert_eq!(scan(&[b"Host: x\r\n\r\nGET"]), [Some(11)]);
        assert_eq!(scan(&[b"Host: x\r\n", b"\n"]), [None, Some(1)]);
    }
    use std::ops::Range;

    // ------------------------------------------------------------------ harness ----

    /// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform-ish in `0..n` (n > 0).
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Dir {
        Req,
        Resp,
    }

    /// What one piece of the stream must produce.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        /// A complete message: Start at its first byte, End at its last.
        Message,
        /// A 1xx interim response: nothing.
        Interim,
        /// 101 or 2xx to CONNECT: Start, End with no body, then a tunnel.
        Upgrade,
        /// Tunnel payload: nothing.
        Opaque,
        /// Not HTTP: NotHttp at its first byte; the next message starts a segment.
        Garbage,
        /// Last message, body delimited by the close: End comes from `finish`.
        UntilClose,
        /// Last message, cut off: `finish` returns it as incomplete.
        CutOff,
    }

    struct Msg {
        bytes: Vec<u8>,
        kind: Kind,
    }

    struct Case {
        name: &'static str,
        dir: Dir,
        /// Request methods announced to a `ResponseStream` before feeding.
        methods: Vec<&'static str>,
        msgs: Vec<Msg>,
    }

    /// Events with what matters for comparison; `ts` is the start offset of a segment.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Req {
            ts: u64,
            method: String,
            target: String,
            version: &'static str,
            truncated: bool,
        },
        Resp {
            ts: u64,
            status: u16,
            version: &'static str,
            truncated: bool,
        },
        End {
            ts: u64,
            body: u64,
        },
        NotHttp {
            ts: u64,
        },
        Incomplete {
            ts: u64,
            body: u64,
        },
    }

    fn ev(event: &Http1Event) -> Ev {
        match event {
            Http1Event::RequestStart { ts_ns, head } => Ev::Req {
                ts: *ts_ns,
                method: head.method.to_string(),
                target: head.target.clone(),
                version: head.version.as_str(),
                truncated: head.truncated,
            },
            Http1Event::ResponseStart { ts_ns, head } => Ev::Resp {
                ts: *ts_ns,
                status: head.status,
                version: head.version.as_str(),
                truncated: head.truncated,
            },
            Http1Event::MessageEnd { ts_ns, body_bytes } => Ev::End {
                ts: *ts_ns,
                body: *body_bytes,
            },
            Http1Event::NotHttp { ts_ns } => Ev::NotHttp { ts: *ts_ns },
        }
    }

    enum AnyStream {
        Req(RequestStream),
        Resp(ResponseStream),
    }

    impl AnyStream {
        fn new(dir: Dir, methods: &[&str]) -> Self {
            match dir {
                Dir::Req => AnyStream::Req(RequestStream::new()),
                Dir::Resp => {
                    let mut stream = ResponseStream::new();
                    for method in methods {
                        stream.expect_response(method);
                    }
                    AnyStream::Resp(stream)
                }
            }
        }

        fn push(&mut self, seg: &Segment<'_>, out: &mut Vec<Http1Event>) {
            match self {
                AnyStream::Req(s) => s.push(seg, out),
                AnyStream::Resp(s) => s.push(seg, out),
            }
        }

        fn finish(&mut self, out: &mut Vec<Http1Event>) -> Option<Incomplete> {
            match self {
                AnyStream::Req(s) => s.finish(out),
                AnyStream::Resp(s) => s.finish(out),
            }
        }

        fn retained_bytes(&self) -> usize {
            match self {
                AnyStream::Req(s) => s.core.retained_bytes(),
                AnyStream::Resp(s) => s.core.retained_bytes(),
            }
        }
    }

    /// Length of the head block (start line through blank line) at the start of `bytes`.
    fn head_len(bytes: &[u8]) -> usize {
        let mut start = 0;
        let mut first = true;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                let line = &bytes[start..i];
                if !first && (line.is_empty() || line == b"\r") {
                    return i + 1;
                }
                first = false;
                start = i + 1;
            }
        }
        bytes.len()
    }

    fn is_chunked(bytes: &[u8]) -> bool {
        let head = String::from_utf8_lossy(&bytes[..head_len(bytes)]).to_ascii_lowercase();
        head.contains("transfer-encoding: chunked")
    }

    /// Ranges of a chunked body that carry framing (size lines, CRLFs, trailers): a
    /// reference walker over complete bytes, independent of the parser.
    fn chunk_framing(body: &[u8]) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        let mut p = 0;
        while p < body.len() {
            let Some(lf) = body[p..].iter().position(|&b| b == b'\n') else {
                ranges.push(p..body.len());
                break;
            };
            let line = &body[p..p + lf];
            let hex: String = line
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .map(|&b| b as char)
                .collect();
            let size = usize::from_str_radix(&hex, 16).unwrap_or(0);
            ranges.push(p..p + lf + 1);
            p += lf + 1;
            if size == 0 {
                ranges.push(p..body.len());
                break;
            }
            p += size;
            let end_len = if body.get(p) == Some(&b'\r') { 2 } else { 1 };
            ranges.push(p.min(body.len())..(p + end_len).min(body.len()));
            p += end_len;
        }
        ranges
    }

    /// The first line's words, without the line end.
    fn first_line_words(bytes: &[u8]) -> Vec<String> {
        let end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end])
            .trim_end_matches('\r')
            .splitn(3, ' ')
            .map(str::to_owned)
            .collect()
    }

    fn version_of(word: &str) -> &'static str {
        match word {
            "HTTP/1.0" => "1.0",
            _ => "1.1",
        }
    }

    fn start_ev(dir: Dir, bytes: &[u8], ts: u64) -> Ev {
        let words = first_line_words(bytes);
        let word = |i: usize| words.get(i).cloned().unwrap_or_default();
        match dir {
            Dir::Req => Ev::Req {
                ts,
                method: word(0),
                target: word(1),
                version: version_of(&word(2)),
                truncated: false,
            },
            Dir::Resp => Ev::Resp {
                ts,
                status: word(1).parse().unwrap_or(0),
                version: version_of(&word(0)),
                truncated: false,
            },
        }
    }

    impl Case {
        fn stream(&self) -> Vec<u8> {
            self.msgs
                .iter()
                .flat_map(|m| m.bytes.iter().copied())
                .collect()
        }

        /// (start offset, message) pairs.
        fn layout(&self) -> Vec<(usize, &Msg)> {
            let mut offset = 0;
            self.msgs
                .iter()
                .map(|m| {
                    let start = offset;
                    offset += m.bytes.len();
                    (start, m)
                })
                .collect()
        }

        /// Cuts every segmentation must have, and ranges none may cut: after garbage,
        /// resync needs a segment that starts with the next start line.
        fn constraints(&self) -> (Vec<usize>, Vec<Range<usize>>) {
            let mut forced = Vec::new();
            let mut atomic = Vec::new();
            let layout = self.layout();
            for (i, (start, msg)) in layout.iter().enumerate() {
                if msg.kind == Kind::Garbage {
                    let end = start + msg.bytes.len();
                    forced.push(end);
                    if let Some((next, next_msg)) = layout.get(i + 1) {
                        let line = next_msg
                            .bytes
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(0, |p| p + 1);
                        atomic.push(*next..next + line);
                    }
                }
            }
            (forced, atomic)
        }

        /// Byte ranges that must be captured for the events to be derivable.
        fn critical(&self) -> Vec<Range<usize>> {
            let mut ranges = Vec::new();
            for (start, msg) in self.layout() {
                match msg.kind {
                    Kind::Opaque => {}
                    Kind::Garbage => ranges.push(start..start + msg.bytes.len()),
                    _ => {
                        let head = head_len(&msg.bytes);
                        ranges.push(start..start + head);
                        if is_chunked(&msg.bytes) {
                            for r in chunk_framing(&msg.bytes[head..]) {
                                ranges.push(start + head + r.start..start + head + r.end);
                            }
                        }
                    }
                }
            }
            ranges
        }

        fn expected(&self, segs: &[Range<usize>]) -> Vec<Ev> {
            let ts_of = |p: usize| {
                segs.iter()
                    .find(|r| r.contains(&p))
                    .map_or(u64::MAX, |r| r.start as u64)
            };
            let mut out = Vec::new();
            for (start, msg) in self.layout() {
                let last = start + msg.bytes.len() - 1;
                let body = (msg.bytes.len() - head_len(&msg.bytes)) as u64;
                match msg.kind {
                    Kind::Message | Kind::UntilClose => {
                        out.push(start_ev(self.dir, &msg.bytes, ts_of(start)));
                        out.push(Ev::End {
                            ts: ts_of(last),
                            body,
                        });
                    }
                    Kind::Upgrade => {
                        out.push(start_ev(self.dir, &msg.bytes, ts_of(start)));
                        out.push(Ev::End {
                            ts: ts_of(last),
                            body: 0,
                        });
                    }
                    Kind::CutOff => {
                        out.push(start_ev(self.dir, &msg.bytes, ts_of(start)));
                        out.push(Ev::Incomplete {
                            ts: ts_of(last),
                            body,
                        });
                    }
                    Kind::Garbage => out.push(Ev::NotHttp { ts: ts_of(start) }),
                    Kind::Interim | Kind::Opaque => {}
                }
            }
            out
        }
    }

    /// Turns cut points into contiguous segment ranges, honouring the case's constraints.
    fn segmentation(case: &Case, cuts: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
        let total = case.stream().len();
        let (forced, atomic) = case.constraints();
        let cuts: BTreeSet<usize> = cuts
            .into_iter()
            .filter(|&c| c > 0 && c < total)
            .filter(|&c| !atomic.iter().any(|a| a.start < c && c < a.end))
            .chain(forced.into_iter().filter(|&c| c > 0 && c < total))
            .collect();
        let mut ranges = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([total]) {
            ranges.push(start..cut);
            start = cut;
        }
        ranges
    }

    /// Feeds `bytes` cut into `segs`, each segment's head limited to `capture` bytes.
    /// Returns the events (finish included) and the most memory retained at any point.
    fn run(case: &Case, bytes: &[u8], segs: &[Range<usize>], capture: usize) -> (Vec<Ev>, usize) {
        let mut stream = AnyStream::new(case.dir, &case.methods);
        let mut out = Vec::new();
        let mut retained = 0;
        for r in segs {
            let seg_bytes = &bytes[r.clone()];
            let head = &seg_bytes[..seg_bytes.len().min(capture)];
            let tail = if head.len() < seg_bytes.len() {
                &seg_bytes[seg_bytes.len().saturating_sub(8)..]
            } else {
                &[][..]
            };
            let seg = Segment {
                ts_ns: r.start as u64,
                len: seg_bytes.len() as u64,
                head,
                tail,
            };
            stream.push(&seg, &mut out);
            retained = retained.max(stream.retained_bytes());
        }
        let incomplete = stream.finish(&mut out);
        let mut evs: Vec<Ev> = out.iter().map(ev).collect();
        if let Some(inc) = incomplete {
            evs.push(Ev::Incomplete {
                ts: inc.ts_ns,
                body: inc.body_bytes,
            });
        }
        (evs, retained)
    }

    /// Events every run must satisfy, derivable or not: messages open and close in
    /// turn, timestamps never go back, memory stays bounded.
    fn check_well_formed(name: &str, evs: &[Ev], retained: usize) {
        let mut open = false;
        let mut last_ts = 0;
        for e in evs {
            let (ts, opens, closes) = match e {
                Ev::Req { ts, .. } | Ev::Resp { ts, .. } => (*ts, true, false),
                Ev::End { ts, .. } | Ev::Incomplete { ts, .. } => (*ts, false, true),
                Ev::NotHttp { ts } => (*ts, false, false),
            };
            assert!(ts >= last_ts, "{name}: time went back in {evs:?}");
            last_ts = ts;
            if opens {
                assert!(!open, "{name}: start inside a message in {evs:?}");
            } else if closes {
                assert!(open, "{name}: end outside a message in {evs:?}");
            } else {
                assert!(!open, "{name}: NotHttp inside a message in {evs:?}");
            }
            open = opens;
        }
        assert!(
            retained <= 2 * MAX_HEAD_BLOCK + MAX_TARGET,
            "{name}: retained {retained} bytes"
        );
    }

    fn assert_run(case: &Case, mode: &str, segs: &[Range<usize>]) {
        let bytes = case.stream();
        let (got, retained) = run(case, &bytes, segs, usize::MAX);
        check_well_formed(case.name, &got, retained);
        assert_eq!(got, case.expected(segs), "case {} mode {mode}", case.name);
    }

    /// Runs one case in every mode.
    fn check_case(case: &Case) {
        let bytes = case.stream();
        let total = bytes.len();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ total as u64);

        assert_run(case, "one segment", &segmentation(case, []));
        assert_run(case, "byte by byte", &segmentation(case, 1..total));
        for i in 0..40 {
            let n = 1 + rng.below(if i % 4 == 0 { total } else { 12 });
            let cuts: Vec<usize> = (0..n).map(|_| rng.below(total)).collect();
            assert_run(case, &format!("random #{i}"), &segmentation(case, cuts));
        }

        // Limited capture: realistic writes (one per head and one per body) and random cuts.
        let mut writes = Vec::new();
        for (start, msg) in case.layout() {
            writes.push(start);
            if msg.kind != Kind::Opaque && msg.kind != Kind::Garbage {
                writes.push(start + head_len(&msg.bytes));
            }
        }
        let critical = case.critical();
        let mut compared = 0;
        for capture in [16, 64, 300, 2048] {
            let mut segmentations = vec![segmentation(case, writes.clone())];
            for _ in 0..10 {
                let n = 1 + rng.below(8);
                segmentations.push(segmentation(case, (0..n).map(|_| rng.below(total))));
            }
            for segs in segmentations {
                let (got, retained) = run(case, &bytes, &segs, capture);
                check_well_formed(case.name, &got, retained);
                let known = |p: usize| {
                    segs.iter()
                        .any(|r| r.contains(&p) && (p < r.start + capture || p + 8 >= r.end))
                };
                if critical.iter().all(|r| r.clone().all(known)) {
                    compared += 1;
                    assert_eq!(
                        got,
                        case.expected(&segs),
                        "case {} capture {capture} {segs:?}",
                        case.name
                    );
                }
            }
        }
        assert!(
            compared > 0,
            "case {}: no limited-capture run was derivable",
            case.name
        );
    }

    // ------------------------------------------------------------------- bytes ----

    fn msg(kind: Kind, bytes: impl AsRef<[u8]>) -> Msg {
        Msg {
            bytes: bytes.as_ref().to_vec(),
            kind,
        }
    }

    fn curl_get(target: &str) -> Vec<u8> {
        format!(
            "GET {target} HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
            .collect()
    }

    fn curl_post(target: &str, body_len: usize) -> Vec<u8> {
        let mut bytes = format!(
            "POST {target} HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
             Content-Length: {body_len}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        .into_bytes();
        bytes.extend(pattern(body_len));
        bytes
    }

    fn nginx_200(body_len: usize) -> Vec<u8> {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0 (Ubuntu)\r\nDate: Tue, 02 Jan 2024 10:00:00 GMT\r\n\
             Content-Type: text/html\r\nContent-Length: {body_len}\r\nLast-Modified: Mon, 01 Jan 2024 09:00:00 GMT\r\n\
             Connection: keep-alive\r\nETag: \"65928f10-267\"\r\nAccept-Ranges: bytes\r\n\r\n"
        )
        .into_bytes();
        bytes.extend(pattern(body_len));
        bytes
    }

    /// An nginx response head announcing `body_len` bytes, without them (as for HEAD).
    fn nginx_head(body_len: usize) -> Vec<u8> {
        let mut bytes = nginx_200(body_len);
        bytes.truncate(head_len(&bytes));
        bytes
    }

    fn node_chunked(chunks: &[&[u8]]) -> Vec<u8> {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Tue, 02 Jan 2024 10:00:00 GMT\r\n\
             Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for chunk in chunks {
            bytes.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        bytes
    }

    /// A TLS ClientHello prefix: what an HTTP/1 parser sees on a TLS port.
    const TLS_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f\x00\x20\x13\x01\x13\x02\x13\x03\xc0\x2b\xc0\x2f";

    fn cases() -> Vec<Case> {
        let chunked_upload = {
            let mut b = b"POST /upload HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
                Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
                .to_vec();
            b.extend_from_slice(b"1000\r\n");
            b.extend(pattern(4096));
            b.extend_from_slice(b"\r\n5;name=value\r\nhello\r\n1A; quoted=\"a;b\"\r\n");
            b.extend(pattern(26));
            b.extend_from_slice(b"\r\n0\r\nX-Checksum: 5d41402a\r\nX-Other: 1\r\n\r\n");
            b
        };
        let python_until_close = {
            let mut b = b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6 Python/3.12.3\r\n\
                Date: Tue, 02 Jan 2024 10:00:00 GMT\r\nContent-Type: text/plain\r\n\r\n"
                .to_vec();
            b.extend(pattern(3000));
            b
        };
        let mut cut_nginx = nginx_200(5000);
        cut_nginx.truncate(cut_nginx.len() - 3766);
        let mut cut_chunked = node_chunked(&[&pattern(3000), b"{}"]);
        cut_chunked.truncate(cut_chunked.len() - 12);

        vec![
            Case {
                name: "get keep-alive",
                dir: Dir::Req,
                methods: vec![],
                msgs: (0..20)
                    .map(|i| msg(Kind::Message, curl_get(&format!("/api/items/{i}?page={i}&sort=desc"))))
                    .collect(),
            },
            Case {
                name: "pipelined requests",
                dir: Dir::Req,
                methods: vec![],
                msgs: vec![
                    msg(Kind::Message, curl_get("/a")),
                    msg(Kind::Message, b"HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"),
                    msg(Kind::Message, curl_post("/c", 11)),
                    msg(Kind::Message, b"DELETE /d/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
                    msg(Kind::Message, b"PROPFIND /dav/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\n\r\n"),
                ],
            },
            Case {
                name: "post large body",
                dir: Dir::Req,
                methods: vec![],
                msgs: vec![
                    msg(Kind::Message, curl_post("/upload", 20_000)),
                    msg(Kind::Message, curl_get("/after")),
                ],
            },
            Case {
                name: "chunked request",
                dir: Dir::Req,
                methods: vec![],
                msgs: vec![msg(Kind::Message, chunked_upload), msg(Kind::Message, curl_get("/next"))],
            },
            Case {
                name: "chunked responses",
                dir: Dir::Resp,
                methods: vec!["GET", "GET", "GET"],
                msgs: vec![
                    msg(Kind::Message, node_chunked(&[b"{\"id\":1,\"name\":\"widget\"}"])),
                    msg(Kind::Message, node_chunked(&[&pattern(5000), &pattern(17), b"]"])),
                    msg(Kind::Message, nginx_200(615)),
                ],
            },
            Case {
                name: "bodiless responses",
                dir: Dir::Resp,
                methods: vec!["HEAD", "DELETE", "GET", "GET", "GET"],
                msgs: vec![
                    msg(Kind::Message, nginx_head(615)),
                    msg(Kind::Message, b"HTTP/1.1 204 No Content\r\nServer: nginx\r\nContent-Length: 12\r\n\r\n"),
                    msg(Kind::Message, b"HTTP/1.1 304 Not Modified\r\nServer: nginx/1.24.0\r\nETag: \"65928f10-267\"\r\nContent-Length: 615\r\n\r\n"),
                    msg(Kind::Message, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                    msg(Kind::Message, nginx_200(100)),
                ],
            },
            Case {
                name: "100 continue",
                dir: Dir::Resp,
                methods: vec!["POST", "GET"],
                msgs: vec![
                    msg(Kind::Interim, b"HTTP/1.1 100 Continue\r\n\r\n"),
                    msg(Kind::Interim, b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"),
                    msg(Kind::Message, b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"id\":7}\n"),
                    msg(Kind::Message, nginx_200(10)),
                ],
            },
            Case {
                name: "101 upgrade",
                dir: Dir::Resp,
                methods: vec!["GET"],
                msgs: vec![
                    msg(Kind::Upgrade, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
                    msg(Kind::Opaque, b"\x81\x05hello\x81\x1dHTTP/1.1 200 OK\r\nX: y\r\n\r\n\x88\x02\x03\xe8"),
                ],
            },
            Case {
                name: "connect tunnel",
                dir: Dir::Resp,
                methods: vec!["CONNECT"],
                msgs: vec![
                    msg(Kind::Upgrade, b"HTTP/1.1 200 Connection established\r\n\r\n"),
                    msg(Kind::Opaque, TLS_HELLO),
                ],
            },
            Case {
                name: "http/1.0 until close",
                dir: Dir::Resp,
                methods: vec!["GET"],
                msgs: vec![msg(Kind::UntilClose, python_until_close)],
            },
            Case {
                name: "response cut off",
                dir: Dir::Resp,
                methods: vec![],
                msgs: vec![msg(Kind::Message, nginx_200(3)), msg(Kind::CutOff, cut_nginx)],
            },
            Case {
                name: "chunked response cut off",
                dir: Dir::Resp,
                methods: vec![],
                msgs: vec![msg(Kind::CutOff, cut_chunked)],
            },
            Case {
                name: "request garbage then resync",
                dir: Dir::Req,
                methods: vec![],
                msgs: vec![
                    msg(Kind::Message, curl_get("/first")),
                    msg(Kind::Garbage, TLS_HELLO),
                    msg(Kind::Message, curl_get("/again")),
                    msg(Kind::Garbage, b"get /lowercase HTTP/1.1\r\n\r\n"),
                    msg(Kind::Message, curl_post("/last", 100)),
                ],
            },
            Case {
                name: "response garbage then resync",
                dir: Dir::Resp,
                methods: vec![],
                msgs: vec![
                    msg(Kind::Garbage, b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"),
                    msg(Kind::Message, nginx_200(50)),
                    msg(Kind::Garbage, b"HTTP/2.0 200 OK\r\n\r\n"),
                    msg(Kind::Message, nginx_200(0)),
                ],
            },
            Case {
                name: "bare LF",
                dir: Dir::Req,
                methods: vec![],
                msgs: vec![
                    msg(Kind::Message, b"GET /lf HTTP/1.1\nHost: x\n\n"),
                    msg(Kind::Message, b"POST /lf HTTP/1.0\nContent-Length: 3\n\nabc"),
                    msg(Kind::Message, b"POST /lf/chunked HTTP/1.1\nTransfer-Encoding: chunked\n\n5\nhello\n3;x=1\nabc\n0\nTrailer: t\n\n"),
                    msg(Kind::Message, b"GET /mixed HTTP/1.1\r\nHost: x\n\r\n"),
                ],
            },
            Case {
                name: "bare LF responses",
                dir: Dir::Resp,
                methods: vec![],
                msgs: vec![
                    msg(Kind::Message, b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"),
                    msg(Kind::Message, b"HTTP/1.1 200\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n"),
                ],
            },
        ]
    }

    // ------------------------------------------------------------ harness tests ----

    #[test]
    fn all_cases_in_every_mode() {
        for case in cases() {
            check_case(&case);
        }
    }

    // ---------------------------------------------------------- focused tests ----

    /// A segment of `bytes` as a probe capturing `capture` bytes would report it.
    fn captured(ts_ns: u64, bytes: &[u8], capture: usize) -> Segment<'_> {
        let head = &bytes[..bytes.len().min(capture)];
        let tail = if head.len() < bytes.len() {
            &bytes[bytes.len().saturating_sub(8)..]
        } else {
            &[][..]
        };
        Segment {
            ts_ns,
            len: bytes.len() as u64,
            head,
            tail,
        }
    }

    fn ends(events: &[Http1Event]) -> Vec<(u64, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                Http1Event::MessageEnd { ts_ns, body_bytes } => Some((*ts_ns, *body_bytes)),
                _ => None,
            })
            .collect()
    }

    fn request_heads(events: &[Http1Event]) -> Vec<&RequestHead> {
        events
            .iter()
            .filter_map(|e| match e {
                Http1Event::RequestStart { head, .. } => Some(head),
                _ => None,
            })
            .collect()
    }

    fn response_heads(events: &[Http1Event]) -> Vec<&ResponseHead> {
        events
            .iter()
            .filter_map(|e| match e {
                Http1Event::ResponseStart { head, .. } => Some(head),
                _ => None,
            })
            .collect()
    }

    fn not_http(events: &[Http1Event]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Http1Event::NotHttp { .. }))
            .count()
    }

    #[test]
    fn pipelined_requests_in_one_segment() {
        let mut bytes = curl_get("/a?x=1");
        bytes.extend(curl_post("/b", 5));
        bytes.extend_from_slice(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&Segment::complete(7, &bytes), &mut out);
        let heads = request_heads(&out);
        let summary: Vec<(&str, &str, Version)> = heads
            .iter()
            .map(|h| (&*h.method, h.target.as_str(), h.version))
            .collect();
        assert_eq!(
            summary,
            [
                ("GET", "/a?x=1", Version::Http11),
                ("POST", "/b", Version::Http11),
                ("OPTIONS", "*", Version::Http11)
            ]
        );
        assert_eq!(ends(&out), [(7, 0), (7, 5), (7, 0)]);
        assert_eq!(heads[0].headers.get("user-agent"), Some("curl/8.5.0"));
        assert!(!stream.in_message());
        assert_eq!(stream.finish(&mut out), None);
    }

    #[test]
    fn headers_are_lowercased_trimmed_folded_and_bounded() {
        let mut bytes = b"GET / HTTP/1.1\r\nHOST:  example.com \t\r\nX-Folded: one\r\n  two\r\n\
            Bad Name: x\r\nno colon\r\nX-Long: "
            .to_vec();
        bytes.extend(vec![b'v'; 5000]);
        bytes.extend_from_slice(b"\r\n");
        for i in 0..100 {
            bytes.extend(format!("X-Field-{i}: {i}\r\n").into_bytes());
        }
        bytes.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&Segment::complete(1, &bytes), &mut out);
        let heads = request_heads(&out);
        let headers = &heads[0].headers;
        assert_eq!(headers.get("host"), Some("example.com"));
        assert_eq!(headers.get("Host"), Some("example.com"));
        assert_eq!(headers.get("x-folded"), Some("one two"));
        assert_eq!(headers.get("bad name"), None);
        assert_eq!(headers.get("x-long").map(str::len), Some(MAX_HEADER_VALUE));
        assert_eq!(headers.len(), MAX_HEADERS);
        assert_eq!(headers.omitted(), 3 + 100 + 1 - MAX_HEADERS);
        assert!(headers.iter().all(|(n, _)| n == n.to_ascii_lowercase()));
        // Content-Length is past the 64-field bound and still frames the body.
        assert_eq!(ends(&out), [(1, 2)]);
    }

    #[test]
    fn content_length_rules() {
        let run = |head: &str| {
            let mut stream = RequestStream::new();
            let mut out = Vec::new();
            stream.push(&Segment::complete(1, head.as_bytes()), &mut out);
            (ends(&out), stream.in_message())
        };
        assert_eq!(
            run("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc"),
            (vec![(1, 3)], false)
        );
        // Conflicting or malformed lengths: the end is unknown.
        assert_eq!(
            run("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
            (vec![], true)
        );
        assert_eq!(
            run("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            (vec![], true)
        );
        // Chunked wins over Content-Length.
        assert_eq!(
            run(
                "POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
            ),
            (vec![(1, 12)], false)
        );
    }

    #[test]
    fn post_body_larger_than_capture() {
        let bytes = curl_post("/upload", 100_000);
        let head = head_len(&bytes);
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        // One write for the head, body writes of 64 KiB as the kernel would split them.
        stream.push(&captured(1, &bytes[..head], 2048), &mut out);
        stream.push(&captured(2, &bytes[head..head + 65536], 2048), &mut out);
        assert!(stream.in_message());
        stream.push(&captured(3, &bytes[head + 65536..], 2048), &mut out);
        assert_eq!(ends(&out), [(3, 100_000)]);
        // The same as a single write.
        let mut out = Vec::new();
        stream.push(&captured(4, &bytes, 2048), &mut out);
        stream.push(&captured(5, &curl_get("/next"), 2048), &mut out);
        assert_eq!(ends(&out), [(4, 100_000), (5, 0)]);
        assert_eq!(request_heads(&out)[1].target, "/next");
    }

    #[test]
    fn chunked_gap_inside_chunk_data_keeps_sync() {
        let bytes = node_chunked(&[&pattern(10_000), &pattern(3000)]);
        let body = (bytes.len() - head_len(&bytes)) as u64;
        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        // Head + "2710\r\n" + data: the gap falls inside the first chunk's data; the tail
        // shows the end of the first chunk, then a segment per remaining part.
        let first_end = head_len(&bytes) + 6 + 10_000;
        stream.push(&captured(1, &bytes[..first_end], 2048), &mut out);
        stream.push(
            &captured(2, &bytes[first_end..first_end + 2000], 100),
            &mut out,
        );
        stream.push(&captured(3, &bytes[first_end + 2000..], 2048), &mut out);
        assert_eq!(ends(&out), [(3, body)]);
        assert!(!response_heads(&out)[0].truncated);
    }

    #[test]
    fn chunked_gap_swallowing_size_line_ends_at_last_chunk() {
        let bytes = node_chunked(&[&pattern(3000), &pattern(3000), b"]"]);
        let body = (bytes.len() - head_len(&bytes)) as u64;
        for capture in [300, 2048] {
            let mut stream = ResponseStream::new();
            let mut out = Vec::new();
            // One write: the gap covers the second and third size lines.
            stream.push(&captured(9, &bytes, capture), &mut out);
            assert_eq!(ends(&out), [(9, body)], "capture {capture}");
            assert!(!stream.in_message());
        }
        // Split so that the lost-sync segment does not end with the last chunk: the body
        // goes on until a segment does.
        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        let cut = bytes.len() - 3;
        stream.push(&captured(1, &bytes[..cut], 2048), &mut out);
        assert!(stream.in_message());
        stream.push(&captured(2, &bytes[cut..], 2048), &mut out);
        assert_eq!(ends(&out), [(2, body)]);
        // And then the next response parses.
        stream.push(&captured(3, &nginx_200(4), 2048), &mut out);
        assert_eq!(ends(&out), [(2, body), (3, 4)]);
    }

    #[test]
    fn chunked_lost_sync_without_last_chunk_ends_at_peer_turn_or_close() {
        let mut bytes = node_chunked(&[&pattern(3000), &pattern(3000)]);
        bytes.truncate(bytes.len() - 5);
        let body = (bytes.len() - head_len(&bytes)) as u64;
        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        stream.push(&captured(1, &bytes, 2048), &mut out);
        assert!(stream.in_message());
        stream.end_at_peer_turn(&mut out);
        assert_eq!(ends(&out), [(1, body)]);

        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        stream.push(&captured(1, &bytes, 2048), &mut out);
        let incomplete = stream.finish(&mut out);
        assert_eq!(
            incomplete,
            Some(Incomplete {
                ts_ns: 1,
                body_bytes: body
            })
        );
    }

    #[test]
    fn truncated_request_head_has_unknown_framing() {
        let mut bytes = b"POST /big HTTP/1.1\r\nHost: x\r\nCookie: ".to_vec();
        bytes.extend(vec![b'c'; 3000]);
        bytes.extend_from_slice(b"\r\nContent-Length: 10\r\n\r\n0123456789");
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&captured(1, &bytes, 2048), &mut out);
        let heads = request_heads(&out);
        assert!(heads[0].truncated);
        assert_eq!(
            (&*heads[0].method, heads[0].target.as_str()),
            ("POST", "/big")
        );
        assert_eq!(heads[0].headers.get("host"), Some("x"));
        assert_eq!(
            heads[0].headers.get("cookie"),
            None,
            "cut line is not reported"
        );
        assert!(stream.in_message());
        stream.end_at_peer_turn(&mut out);
        // The head's end fell in the gap: everything after the capture counts.
        assert_eq!(ends(&out), [(1, (bytes.len() - 2048) as u64)]);
        // The stream goes on with the next request.
        let mut out = Vec::new();
        stream.push(&Segment::complete(2, &curl_get("/next")), &mut out);
        assert_eq!(ends(&out), [(2, 0)]);
    }

    #[test]
    fn truncated_start_line_is_not_http() {
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        let mut bytes = b"GET /".to_vec();
        bytes.extend(vec![b'a'; 4000]);
        bytes.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        stream.push(&captured(1, &bytes, 2048), &mut out);
        assert_eq!(out, [Http1Event::NotHttp { ts_ns: 1 }]);
        stream.push(&Segment::complete(2, &curl_get("/ok")), &mut out);
        assert_eq!(ends(&out), [(2, 0)]);
    }

    #[test]
    fn truncated_bodiless_response_resyncs_quietly() {
        let mut bytes = b"HTTP/1.1 304 Not Modified\r\nSet-Cookie: ".to_vec();
        bytes.extend(vec![b'c'; 3000]);
        bytes.extend_from_slice(b"\r\n\r\n");
        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        stream.push(&captured(1, &bytes, 2048), &mut out);
        stream.push(&captured(2, &nginx_200(7), 2048), &mut out);
        assert_eq!(ends(&out), [(1, 0), (2, 7)]);
        let heads = response_heads(&out);
        assert!(heads[0].truncated && !heads[1].truncated);
        assert_eq!(not_http(&out), 0);
    }

    #[test]
    fn token_table_is_rfc9110_tchar() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token_byte(b), tchar, "byte {b:#x}");
        }
    }

    #[test]
    fn one_megabyte_header_line_is_bounded() {
        let mut bytes = b"GET /huge HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        bytes.extend(vec![b'b'; 1 << 20]);
        bytes.extend_from_slice(b"\r\nAccept: */*\r\n\r\n");
        bytes.extend(curl_get("/after"));

        // Fully captured 2048-byte writes: the rest of the head is still found.
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        for (i, chunk) in bytes.chunks(2048).enumerate() {
            stream.push(&Segment::complete(i as u64, chunk), &mut out);
            let retained = stream.core.retained_bytes();
            // The head block, the method and the request-target's first reservation.
            let bound = MAX_HEAD_BLOCK + MAX_METHOD + TARGET_RESERVE;
            assert!(retained <= bound, "retained {retained}");
        }
        let heads = request_heads(&out);
        assert_eq!(heads.len(), 1, "the rest is unknown framing: {out:?}");
        assert!(heads[0].truncated);
        assert_eq!(heads[0].target, "/huge");
        assert_eq!(heads[0].headers.get("host"), Some("x"));
        let last_ts = (bytes.len() / 2048) as u64;
        stream.end_at_peer_turn(&mut out);
        // Body bytes: only what followed the head (the next request, swallowed).
        assert_eq!(ends(&out), [(last_ts, curl_get("/after").len() as u64)]);

        // The same bytes as writes of 64 KiB with 2048-byte captures.
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        for (i, chunk) in bytes.chunks(65536).enumerate() {
            stream.push(&captured(i as u64, chunk, 2048), &mut out);
            assert!(stream.core.retained_bytes() <= MAX_HEAD_BLOCK + 64);
        }
        let heads = request_heads(&out);
        assert_eq!(heads.len(), 1);
        assert!(heads[0].truncated);
        assert!(stream.in_message());
    }

    #[test]
    fn long_target_is_cut_and_overlong_line_rejected() {
        let target = format!("/{}", "a".repeat(20_000));
        let bytes = curl_get(&target);
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&Segment::complete(1, &bytes), &mut out);
        let heads = request_heads(&out);
        assert_eq!(heads[0].target.len(), MAX_TARGET);
        assert!(target.starts_with(&heads[0].target));
        assert!(!heads[0].truncated);
        assert_eq!(ends(&out), [(1, 0)]);

        let bytes = curl_get(&format!("/{}", "a".repeat(100_000)));
        let mut out = Vec::new();
        stream.push(&Segment::complete(2, &bytes), &mut out);
        assert_eq!(out, [Http1Event::NotHttp { ts_ns: 2 }]);
        assert!(stream.core.retained_bytes() <= MAX_TARGET + MAX_METHOD);
    }

    #[test]
    fn responses_follow_request_methods_in_order() {
        let mut stream = ResponseStream::new();
        stream.expect_response("HEAD");
        stream.expect_response("GET");
        let mut bytes = nginx_head(615);
        bytes.extend(nginx_200(615));
        bytes.extend(nginx_200(3));
        let mut out = Vec::new();
        stream.push(&Segment::complete(1, &bytes), &mut out);
        // The third response had no expectation queued: assumed a GET.
        assert_eq!(ends(&out), [(1, 0), (1, 615), (1, 3)]);
        let statuses: Vec<u16> = response_heads(&out).iter().map(|h| h.status).collect();
        assert_eq!(statuses, [200, 200, 200]);
    }

    #[test]
    fn until_close_and_finish() {
        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        assert_eq!(stream.finish(&mut out), None);
        stream.push(
            &Segment::complete(
                1,
                b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.12.3\r\n\r\nhel",
            ),
            &mut out,
        );
        stream.push(&captured(2, &pattern(10_000), 2048), &mut out);
        assert!(stream.in_message());
        stream.end_at_peer_turn(&mut out);
        assert!(
            stream.in_message(),
            "a close-delimited body ignores the peer"
        );
        assert_eq!(stream.finish(&mut out), None);
        assert_eq!(ends(&out), [(2, 10_003)]);
        assert!(!stream.in_message());
    }

    #[test]
    fn request_head_cut_by_close_is_incomplete() {
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(
            &Segment::complete(4, b"GET /x HTTP/1.1\r\nHost: a\r\n"),
            &mut out,
        );
        assert!(stream.in_message());
        assert_eq!(
            stream.finish(&mut out),
            Some(Incomplete {
                ts_ns: 4,
                body_bytes: 0
            })
        );
        assert!(request_heads(&out)[0].truncated);
    }

    #[test]
    fn peer_turn_leaves_known_framing_alone() {
        // curl: Expect: 100-continue, the server answers 100, then the body comes.
        let bytes = curl_post("/up", 3000);
        let head = head_len(&bytes);
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&Segment::complete(1, &bytes[..head]), &mut out);
        stream.end_at_peer_turn(&mut out);
        assert!(stream.in_message());
        stream.push(&captured(2, &bytes[head..], 2048), &mut out);
        assert_eq!(ends(&out), [(2, 3000)]);
    }

    #[test]
    fn upgrade_request_then_frames_is_a_tunnel() {
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        let handshake = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.push(&Segment::complete(1, handshake), &mut out);
        stream.push(
            &Segment::complete(2, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
            &mut out,
        );
        stream.push(&Segment::complete(3, &curl_get("/not-parsed")), &mut out);
        assert_eq!(ends(&out), [(1, 0)]);
        assert_eq!(not_http(&out), 0);
        assert!(stream.is_tunnel());

        // A refused upgrade: the client goes on with HTTP/1.
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(
            &Segment::complete(1, b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"),
            &mut out,
        );
        stream.push(&Segment::complete(2, &curl_get("/x")), &mut out);
        stream.push(&Segment::complete(3, TLS_HELLO), &mut out);
        assert_eq!(ends(&out), [(1, 0), (2, 0)]);
        assert_eq!(not_http(&out), 1);

        // The agent can switch a stream into a tunnel itself.
        let mut stream = RequestStream::new();
        stream.enter_tunnel();
        let mut out = Vec::new();
        stream.push(&Segment::complete(1, TLS_HELLO), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn gap_at_message_boundary_is_not_http_once() {
        let mut bytes = curl_get("/a");
        let first = bytes.len();
        for i in 0..50 {
            bytes.extend(curl_get(&format!("/pipelined/{i}")));
        }
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&captured(1, &bytes, first), &mut out);
        // Starts inside a request: no resync, no second report.
        stream.push(&captured(2, &bytes[first + 5..], 2048), &mut out);
        stream.push(&Segment::complete(3, &curl_get("/b")), &mut out);
        assert_eq!(ends(&out), [(1, 0), (3, 0)]);
        assert_eq!(out.get(2), Some(&Http1Event::NotHttp { ts_ns: 1 }));
        assert_eq!(not_http(&out), 1);
    }

    #[test]
    fn empty_lines_between_requests_are_ignored() {
        let mut bytes = curl_post("/a", 2);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend(curl_get("/b"));
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&Segment::complete(1, &bytes), &mut out);
        assert_eq!(ends(&out), [(1, 2), (1, 0)]);
        assert_eq!(not_http(&out), 0);
    }

    #[test]
    fn in_message_tracks_start_and_end() {
        let bytes = nginx_200(10);
        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        assert!(!stream.in_message());
        stream.push(&Segment::complete(1, &bytes[..8]), &mut out);
        assert!(!stream.in_message(), "status line not complete yet");
        stream.push(&Segment::complete(2, &bytes[8..20]), &mut out);
        assert!(stream.in_message());
        stream.push(&Segment::complete(3, &bytes[20..bytes.len() - 1]), &mut out);
        assert!(stream.in_message());
        stream.push(&Segment::complete(4, &bytes[bytes.len() - 1..]), &mut out);
        assert!(!stream.in_message());
        assert_eq!(ends(&out), [(4, 10)]);
    }

    #[test]
    fn looks_like_checks() {
        assert!(looks_like_request(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_request(b"POST /api/v1/items?x=1 HTT"));
        assert!(looks_like_request(b"PROPFIND /dav HTTP/1.1\r\nHost: x\r\n"));
        assert!(
            !looks_like_request(b"PROPFIND /dav"),
            "non-standard method needs the full line"
        );
        assert!(!looks_like_request(b"GET"));
        assert!(!looks_like_request(b"get / HTTP/1.1\r\n"));
        assert!(!looks_like_request(b"SET key value\r\n"));
        assert!(!looks_like_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!looks_like_request(TLS_HELLO));
        assert!(!looks_like_request(b""));
        assert!(looks_like_response(b"HTTP/1.1 200 OK\r\n"));
        assert!(looks_like_response(b"HTTP/1.0 404"));
        assert!(looks_like_response(b"HTTP/1.1 200\r\n"));
        assert!(!looks_like_response(b"HTTP/1.1 20"));
        assert!(!looks_like_response(b"HTTP/2 200 OK\r\n"));
        assert!(!looks_like_response(b"HTTP/1.1 099 Low\r\n"));
        assert!(!looks_like_response(b"+OK\r\n"));
    }

    #[test]
    fn inconsistent_segments_do_not_panic() {
        let bytes = nginx_200(20);
        let mut stream = ResponseStream::new();
        let mut out = Vec::new();
        // len shorter than head; tail overlapping head; tail without gap.
        stream.push(
            &Segment {
                ts_ns: 1,
                len: 3,
                head: &bytes[..30],
                tail: b"zzzzzzzzzzzzzzzzz",
            },
            &mut out,
        );
        stream.push(
            &Segment {
                ts_ns: 2,
                len: 40,
                head: &bytes[30..66],
                tail: &bytes[62..70],
            },
            &mut out,
        );
        stream.push(
            &Segment {
                ts_ns: 3,
                len: u64::MAX,
                head: &[],
                tail: b"0\r\n\r\n",
            },
            &mut out,
        );
        stream.push(
            &Segment {
                ts_ns: 4,
                len: 0,
                head: &[],
                tail: &[],
            },
            &mut out,
        );
        let _ = stream.finish(&mut out);
    }

    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        let mut rng = Rng(0xDEAD_BEEF_1234_5678);
        let valid: Vec<Vec<u8>> = cases().into_iter().map(|c| c.stream()).collect();
        for round in 0..300 {
            // Mutated valid streams and plain noise biased towards HTTP-ish bytes.
            let mut bytes = valid[round % valid.len()].clone();
            if round % 3 == 0 {
                let alphabet = b"GET /HTTP1.0 200\r\n:chunked0123456789abcdef;\x00\xff";
                bytes = (0..rng.below(5000))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
            } else {
                for _ in 0..1 + rng.below(20) {
                    if !bytes.is_empty() {
                        let i = rng.below(bytes.len());
                        bytes[i] = rng.next() as u8;
                    }
                }
            }
            let mut req = RequestStream::new();
            let mut resp = ResponseStream::new();
            resp.expect_response(["GET", "HEAD", "CONNECT"][round % 3]);
            let mut out = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let len = 1 + rng.below(3000.min(bytes.len() - at));
                let chunk = &bytes[at..at + len];
                let capture = [1, 8, 100, 2048, usize::MAX][rng.below(5)];
                let seg = captured(at as u64, chunk, capture);
                req.push(&seg, &mut out);
                resp.push(&seg, &mut out);
                if rng.below(20) == 0 {
                    req.end_at_peer_turn(&mut out);
                    resp.end_at_peer_turn(&mut out);
                }
                assert!(req.core.retained_bytes() <= MAX_HEAD_BLOCK + MAX_TARGET + 64);
                assert!(resp.core.retained_bytes() <= MAX_HEAD_BLOCK + 4096);
                at += len;
            }
            let _ = req.finish(&mut out);
            let _ = resp.finish(&mut out);
        }
    }
}
