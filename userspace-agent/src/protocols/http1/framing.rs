//! How a body ends (RFC 9112 §6): the framing a head selects from the fields that frame
//! it, its status and the request's method (`request_body`, `response_body`), and counting
//! body bytes against that framing, known or lost in a gap (`Framing`).

use super::blank_line::BlankLineScanner;
use super::chunked::{ChunkStep, Chunked, Recent};
use super::headers::{Coding, ContentLength, FramingFields};

/// What a response's request was, as far as response framing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestKind {
    Head,
    Connect,
    Other,
}

impl RequestKind {
    pub(super) fn of(method: &str) -> Self {
        match method {
            "HEAD" => RequestKind::Head,
            "CONNECT" => RequestKind::Connect,
            _ => RequestKind::Other,
        }
    }
}

/// What follows a head once its Start event (if any) is out.
#[derive(Debug)]
pub(super) enum Next {
    /// Interim (1xx) response: no events, the final response follows.
    Interim,
    NoBody,
    /// 101 or 2xx to CONNECT: the message ends with its head, the stream turns opaque.
    Tunnel,
    Body(Framing),
}

/// RFC 9112 §6.3 for requests: chunked > Content-Length > no body. A request with an
/// unusable length would be rejected by the server; we just stop knowing its end.
pub(super) fn request_body(fields: &FramingFields) -> Next {
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
pub(super) fn response_body(
    status: u16,
    request: RequestKind,
    fields: Option<&FramingFields>,
) -> Next {
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

/// How the end of a body is found (RFC 9112 §6).
#[derive(Debug, Clone, Copy)]
pub(super) enum Framing {
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

/// Outcome of feeding bytes to a body.
#[derive(Debug)]
pub(super) enum BodyStep {
    Continue(Framing),
    Done,
}

impl Framing {
    /// Consumes known bytes; returns (bytes used, bytes that count as body, outcome).
    pub(super) fn consume(self, bytes: &[u8]) -> (usize, u64, BodyStep) {
        let all = bytes.len();
        match self {
            Framing::Length { remaining } => {
                let (used, step) = Framing::count_length(remaining, all as u64);
                (used as usize, used, step)
            }
            Framing::Chunked(chunked) => {
                let (used, step) = chunked.consume(bytes);
                let step = match step {
                    ChunkStep::Continue(next) => BodyStep::Continue(Framing::Chunked(next)),
                    ChunkStep::LostSync => BodyStep::Continue(Framing::lost_sync()),
                    ChunkStep::Done => BodyStep::Done,
                };
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
    pub(super) fn skip(self, gap: u64) -> (u64, BodyStep) {
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
    pub(super) fn lost_sync() -> Self {
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

#[cfg(test)]
mod tests {
    use crate::protocols::http1::testutil::{
        captured, curl_get, curl_post, ends, head_len, nginx_200, nginx_head, pattern,
        request_heads, response_heads,
    };
    use crate::protocols::http1::{RequestStream, ResponseStream, Segment};

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
}
