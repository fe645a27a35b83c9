//! The engine through the public streams: pipelining, cut heads, gaps at boundaries,
//! tunnels, the peer's turn and the close, memory bounds and inconsistent segments.

use crate::protocols::http1::start_line::TARGET_RESERVE;
use crate::protocols::http1::testutil::{
    TLS_HELLO, captured, curl_get, curl_post, ends, head_len, nginx_200, not_http, request_heads,
    response_heads,
};
use crate::protocols::http1::{
    Http1Event, Incomplete, MAX_HEAD_BLOCK, MAX_METHOD, RequestStream, ResponseStream, Segment,
    Version,
};

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
