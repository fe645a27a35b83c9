//! Start lines: incremental parsers for the request line (`method SP target SP
//! HTTP/1.x`) and the status line (`HTTP/1.x SP NNN [SP reason]`), and the cheap checks
//! (`looks_like_request`, `looks_like_response`) that tell whether bytes open an HTTP/1
//! message, used by the agent to pick a parser and by the engine to resynchronise.

use std::borrow::Cow;
use std::mem;

use super::bounded::bounded_string;
use super::line::{Progress, Step, feed_bytes};
use super::{MAX_METHOD, MAX_REASON, MAX_TARGET, MAX_TARGET_SEEN, Version};

/// What both start lines share before the minor version digit.
const VERSION_PREFIX: &[u8] = b"HTTP/1.";
/// The standard methods (RFC 9110 §9, RFC 5789): `looks_like_request` trusts them before
/// it has seen the whole request line, and request heads borrow them instead of
/// allocating a copy per request.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
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

#[derive(Debug)]
pub(super) struct RequestLine {
    pub(super) method: Cow<'static, str>,
    pub(super) target: String,
    pub(super) version: Version,
}

#[derive(Debug)]
pub(super) struct StatusLine {
    pub(super) version: Version,
    pub(super) status: u16,
}

#[derive(Debug)]
pub(super) enum StartLine {
    Request(RequestLine),
    Status(StatusLine),
}

#[derive(Debug)]
pub(super) enum LineParser {
    Request(RequestLineParser),
    Status(StatusLineParser),
}

impl LineParser {
    pub(super) fn feed(&mut self, bytes: &[u8]) -> (usize, Progress<StartLine>) {
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
pub(super) const TARGET_RESERVE: usize = 64;

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
pub(super) struct RequestLineParser {
    phase: RequestPhase,
    /// Method bytes; no token longer than `MAX_METHOD` is accepted.
    pub(super) method: [u8; MAX_METHOD],
    method_len: usize,
    pub(super) target: Vec<u8>,
    target_seen: u64,
    version: Option<Version>,
}

impl RequestLineParser {
    pub(super) fn new() -> Self {
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

    #[inline]
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
pub(super) struct StatusLineParser {
    phase: StatusPhase,
    version: Option<Version>,
    status: u16,
}

impl StatusLineParser {
    pub(super) fn new() -> Self {
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

    #[inline]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::http1::testutil::{TLS_HELLO, curl_get, ends, request_heads};
    use crate::protocols::http1::{Http1Event, RequestStream, Segment};

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
}
