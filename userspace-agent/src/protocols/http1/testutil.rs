//! What the http1 tests share: realistic wire bytes (curl requests, nginx and node
//! responses, a TLS ClientHello), segments as a probe capturing a prefix would report them,
//! and readers that pick events apart.

use super::{Http1Event, RequestHead, ResponseHead, Segment};

/// Length of the head block (start line through blank line) at the start of `bytes`.
pub(super) fn head_len(bytes: &[u8]) -> usize {
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

pub(super) fn curl_get(target: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}

pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
        .collect()
}

pub(super) fn curl_post(target: &str, body_len: usize) -> Vec<u8> {
    let mut bytes = format!(
        "POST {target} HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Content-Length: {body_len}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(pattern(body_len));
    bytes
}

pub(super) fn nginx_200(body_len: usize) -> Vec<u8> {
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
pub(super) fn nginx_head(body_len: usize) -> Vec<u8> {
    let mut bytes = nginx_200(body_len);
    bytes.truncate(head_len(&bytes));
    bytes
}

pub(super) fn node_chunked(chunks: &[&[u8]]) -> Vec<u8> {
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
pub(super) const TLS_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f\x00\x20\x13\x01\x13\x02\x13\x03\xc0\x2b\xc0\x2f";

/// A segment of `bytes` as a probe capturing `capture` bytes would report it.
pub(super) fn captured(ts_ns: u64, bytes: &[u8], capture: usize) -> Segment<'_> {
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

pub(super) fn ends(events: &[Http1Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Http1Event::MessageEnd { ts_ns, body_bytes } => Some((*ts_ns, *body_bytes)),
            _ => None,
        })
        .collect()
}

pub(super) fn request_heads(events: &[Http1Event]) -> Vec<&RequestHead> {
    events
        .iter()
        .filter_map(|e| match e {
            Http1Event::RequestStart { head, .. } => Some(head),
            _ => None,
        })
        .collect()
}

pub(super) fn response_heads(events: &[Http1Event]) -> Vec<&ResponseHead> {
    events
        .iter()
        .filter_map(|e| match e {
            Http1Event::ResponseStart { head, .. } => Some(head),
            _ => None,
        })
        .collect()
}

pub(super) fn not_http(events: &[Http1Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Http1Event::NotHttp { .. }))
        .count()
}
