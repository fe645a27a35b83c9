//! The chunked transfer coding (RFC 9112 §7.1): chunk-size lines, chunk data and the CRLF
//! that closes it, trailers; and, once a gap has cost the chunk boundaries, the last few
//! known bytes (`Recent`) in which the last chunk is recognised.

use super::MAX_CHUNK_LINE;
use super::blank_line::BlankLineScanner;
use super::line::{Progress, Step, feed_bytes};

/// How a chunked body ends when it has no extensions and no trailers; what we look for
/// at segment ends after losing chunk sync.
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// Bytes of known stream end remembered after losing chunk sync: `LAST_CHUNK`'s length.
const RECENT_LEN: usize = 5;

/// Where a chunked body is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Chunked {
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

impl Chunked {
    pub(super) fn start() -> Self {
        Chunked::Size(ChunkSizeLine::new())
    }

    /// Counts up to `available` bytes of chunk data; returns (used, next state). The
    /// data's closing CRLF follows once it is used up.
    pub(super) fn count_data(remaining: u64, available: u64) -> (u64, Chunked) {
        let used = remaining.min(available);
        let next = match remaining - used {
            0 => Chunked::DataEnd { saw_cr: false },
            remaining => Chunked::Data { remaining },
        };
        (used, next)
    }

    /// Consumes known chunked-body bytes; returns (bytes used, outcome).
    pub(super) fn consume(self, bytes: &[u8]) -> (usize, ChunkStep) {
        let chunked = ChunkStep::Continue;
        match self {
            Chunked::Size(mut line) => {
                let (used, progress) = line.feed(bytes);
                let step = match progress {
                    Progress::More => chunked(Chunked::Size(line)),
                    Progress::Bad => ChunkStep::LostSync,
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
                Some(_) => (1, ChunkStep::LostSync),
            },
            Chunked::Trailers(mut scanner) => match scanner.scan(bytes) {
                Some(used) => (used, ChunkStep::Done),
                None => (bytes.len(), chunked(Chunked::Trailers(scanner))),
            },
        }
    }
}

/// Outcome of feeding bytes to a chunked body.
#[derive(Debug)]
pub(super) enum ChunkStep {
    Continue(Chunked),
    /// The chunk framing is broken: only the body's end can still be recognised.
    LostSync,
    /// The last chunk and its trailers ended the body.
    Done,
}

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
pub(super) struct ChunkSizeLine {
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

    #[inline]
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

/// The last few known bytes of a stream, contiguous: so the last chunk is recognised at
/// the end of a segment even when that segment holds only part of it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Recent {
    bytes: [u8; RECENT_LEN],
    len: usize,
}

impl Recent {
    pub(super) fn push(&mut self, more: &[u8]) {
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

    pub(super) fn ends_with(&self, pattern: &[u8]) -> bool {
        self.bytes
            .get(..self.len)
            .is_some_and(|known| known.ends_with(pattern))
    }
}

#[cfg(test)]
mod tests {
    use crate::protocols::http1::testutil::{
        captured, ends, head_len, nginx_200, node_chunked, pattern, response_heads,
    };
    use crate::protocols::http1::{Incomplete, ResponseStream};

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
}
