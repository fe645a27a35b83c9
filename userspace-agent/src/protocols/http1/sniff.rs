//! Recognising HTTP/1 from a connection's first bytes.

use super::{looks_like_request, looks_like_response};
use crate::protocols::parser::Side;
use crate::protocols::registry::Sniff;

/// Longest prefix that can still be undecided: every request or status line is told
/// apart by then.
pub const MAX_UNDECIDED: usize = 16;

/// A request line is sent by the client, a status line by the server; a few bytes that
/// could still grow into either ("GET" arriving alone) need more.
pub fn sniff(bytes: &[u8]) -> Sniff {
    if looks_like_request(bytes) {
        Sniff::SentBy(Side::Client)
    } else if looks_like_response(bytes) {
        Sniff::SentBy(Side::Server)
    } else if could_become_start_line(bytes) {
        Sniff::NeedMore
    } else {
        Sniff::No
    }
}

fn could_become_start_line(bytes: &[u8]) -> bool {
    const STARTS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"HTTP/1.",
    ];
    bytes.len() < MAX_UNDECIDED
        && STARTS
            .iter()
            .any(|s| s.starts_with(bytes) || (bytes.starts_with(s) && bytes.len() < s.len() + 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_recognised_or_held() {
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::SentBy(Side::Client));
        assert_eq!(
            sniff(b"HTTP/1.1 204 No Content\r\n"),
            Sniff::SentBy(Side::Server)
        );
        assert_eq!(sniff(b"GE"), Sniff::NeedMore);
        assert_eq!(sniff(b"HTTP/1."), Sniff::NeedMore);
        assert_eq!(sniff(b"\x16\x03\x01\x02\x00"), Sniff::No);
        assert_eq!(sniff(b"GET key value that is long\r\n"), Sniff::No);
    }
}
