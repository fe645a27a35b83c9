//! Length-prefixed message framing over lossy segments, shared by the PostgreSQL and
//! MySQL parsers.
//!
//! Both protocols announce each message's length in a short header, so the bytes a probe
//! did not copy (the gap inside a segment) can be skipped by counting. Only a header that
//! falls into a gap loses sync: the framer then reports [`Step::Lost`] and stays lost
//! until the parser proves a new boundary and calls [`Framer::resync`].

use super::Segment;

/// How a message header looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Header {
    /// PostgreSQL: type byte, then a big-endian u32 length counting itself.
    Typed,
    /// PostgreSQL startup-phase message: a big-endian u32 length counting itself only.
    Untyped,
    /// MySQL: little-endian u24 payload length, then a sequence id.
    Mysql,
}

impl Header {
    fn len(self) -> usize {
        match self {
            Header::Typed => 5,
            Header::Untyped | Header::Mysql => 4,
        }
    }

    /// `(tag, payload length)`, or `None` when no message can start with these bytes.
    fn decode(self, b: [u8; 5], max_len: u64) -> Option<(u8, u64)> {
        let [b0, b1, b2, b3, b4] = b;
        let (tag, len) = match self {
            Header::Typed => (
                b0,
                u64::from(u32::from_be_bytes([b1, b2, b3, b4])).checked_sub(4)?,
            ),
            Header::Untyped => (
                0,
                u64::from(u32::from_be_bytes([b0, b1, b2, b3])).checked_sub(4)?,
            ),
            Header::Mysql => (b3, u64::from(u32::from_le_bytes([b0, b1, b2, 0]))),
        };
        (len <= max_len).then_some((tag, len))
    }
}

/// One message: its tag (Postgres type byte, 0 for untyped, MySQL sequence id), payload
/// length and the first payload bytes the parser asked to keep.
#[derive(Debug)]
pub(super) struct Frame {
    pub tag: u8,
    pub len: u64,
    pub body: Vec<u8>,
    /// `body` holds the whole payload: nothing cut, nothing lost in a gap.
    pub complete: bool,
    /// Timestamp of the segment holding the header.
    pub start_ts: u64,
}

/// A segment's known bytes or unknown byte count, in order.
#[derive(Clone, Copy, Debug)]
pub(super) enum Piece<'a> {
    Bytes(&'a [u8]),
    Gap(u64),
}

impl Piece<'_> {
    pub fn is_empty(&self) -> bool {
        match self {
            Piece::Bytes(b) => b.is_empty(),
            Piece::Gap(n) => *n == 0,
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Gap(n) => *n,
        }
    }
}

/// The pieces of a segment: head, gap, tail.
pub(super) fn pieces<'a>(seg: &Segment<'a>) -> [Piece<'a>; 3] {
    let (head, gap, tail) = seg.parts();
    [Piece::Bytes(head), Piece::Gap(gap), Piece::Bytes(tail)]
}

/// What one call to [`Framer::step`] found.
#[derive(Debug)]
pub(super) enum Step {
    /// A whole message went by.
    Frame(Frame),
    /// The piece is used up inside a message.
    More,
    /// A header fell into a gap or made no sense: boundaries are unknown from here.
    Lost,
}

#[derive(Debug)]
enum State {
    Header {
        buf: [u8; 5],
        have: usize,
        start_ts: u64,
    },
    Body {
        frame: Frame,
        remaining: u64,
        keep: usize,
    },
    Lost,
}

/// Splits one direction of a connection into messages.
#[derive(Debug)]
pub(super) struct Framer {
    state: State,
    /// Longest payload accepted as sane.
    max_len: u64,
}

impl Framer {
    pub fn new(max_len: u64) -> Self {
        Self {
            state: State::Header {
                buf: [0; 5],
                have: 0,
                start_ts: 0,
            },
            max_len,
        }
    }

    pub fn is_lost(&self) -> bool {
        matches!(self.state, State::Lost)
    }

    /// Between two messages (no header byte or payload pending).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    pub fn lose(&mut self) {
        self.state = State::Lost;
    }

    /// The next byte starts a message.
    pub fn resync(&mut self) {
        self.state = State::Header {
            buf: [0; 5],
            have: 0,
            start_ts: 0,
        };
    }

    /// Consumes a prefix of `piece`; `keep(tag, len)` says how many payload bytes to keep.
    pub fn step(
        &mut self,
        piece: &mut Piece<'_>,
        ts: u64,
        header: Header,
        keep: impl Fn(u8) -> usize,
    ) -> Step {
        match &mut self.state {
            State::Lost => {
                *piece = Piece::Gap(0);
                Step::Lost
            }
            State::Header {
                buf,
                have,
                start_ts,
            } => {
                let bytes = match piece {
                    Piece::Bytes(b) => *b,
                    Piece::Gap(_) => {
                        self.state = State::Lost;
                        return Step::Lost;
                    }
                };
                if *have == 0 {
                    *start_ts = ts;
                }
                let need = header.len().saturating_sub(*have);
                let take = need.min(bytes.len());
                for (slot, &b) in buf.iter_mut().skip(*have).zip(bytes.iter().take(take)) {
                    *slot = b;
                }
                *have += take;
                *piece = Piece::Bytes(bytes.get(take..).unwrap_or_default());
                if *have < header.len() {
                    return Step::More;
                }
                let Some((tag, len)) = header.decode(*buf, self.max_len) else {
                    self.state = State::Lost;
                    return Step::Lost;
                };
                let keep = keep(tag).min(usize::try_from(len).unwrap_or(usize::MAX));
                let frame = Frame {
                    tag,
                    len,
                    body: Vec::with_capacity(keep),
                    complete: true,
                    start_ts: *start_ts,
                };
                self.state = State::Body {
                    frame,
                    remaining: len,
                    keep,
                };
                self.finish_if_done()
            }
            State::Body {
                frame,
                remaining,
                keep,
            } => {
                let n = piece.len().min(*remaining);
                match piece {
                    Piece::Bytes(b) => {
                        let n = usize::try_from(n).unwrap_or(b.len());
                        let room = keep.saturating_sub(frame.body.len());
                        let used = b.get(..n).unwrap_or(b);
                        frame
                            .body
                            .extend_from_slice(used.get(..room).unwrap_or(used));
                        *piece = Piece::Bytes(b.get(n..).unwrap_or_default());
                    }
                    Piece::Gap(g) => {
                        if n > 0 {
                            // The kept body is a contiguous prefix: nothing after a gap joins it.
                            frame.complete = false;
                            *keep = frame.body.len();
                        }
                        *g -= n;
                    }
                }
                *remaining -= n;
                self.finish_if_done()
            }
        }
    }

    fn finish_if_done(&mut self) -> Step {
        match &mut self.state {
            State::Body {
                frame,
                remaining: 0,
                keep,
            } => {
                if (frame.body.len() as u64) < frame.len && frame.body.len() >= *keep {
                    frame.complete = false;
                }
                let frame = std::mem::replace(
                    frame,
                    Frame {
                        tag: 0,
                        len: 0,
                        body: Vec::new(),
                        complete: true,
                        start_ts: 0,
                    },
                );
                self.resync();
                Step::Frame(frame)
            }
            _ => Step::More,
        }
    }
}

/// Reads a NUL-terminated string at the start of `bytes`: the string and the rest after
/// the NUL, or the whole input and an empty rest when no NUL is there.
pub(super) fn cstr(bytes: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(0, bytes) {
        Some(at) => (
            bytes.get(..at).unwrap_or_default(),
            bytes.get(at + 1..).unwrap_or_default(),
        ),
        None => (bytes, &[]),
    }
}

/// A protocol line arriving in pieces (Redis value headers, memcached commands and
/// replies): its first `keep` bytes are kept, every byte is counted.
#[derive(Debug, Default)]
pub(super) struct LineBuf {
    kept: Vec<u8>,
    len: usize,
}

impl LineBuf {
    /// Takes `bytes` up to and including the next LF: how many were used and whether the
    /// line ended. `Err` when the line grows past `max` (lost sync).
    pub fn feed(&mut self, bytes: &[u8], keep: usize, max: usize) -> Result<(usize, bool), ()> {
        let (used, ended) = match memchr::memchr(b'\n', bytes) {
            Some(i) => (i + 1, true),
            None => (bytes.len(), false),
        };
        let piece = bytes.get(..used).unwrap_or_default();
        let room = keep.saturating_sub(self.kept.len());
        self.kept.extend(piece.iter().take(room));
        self.len += used;
        if self.len > max {
            return Err(());
        }
        Ok((used, ended))
    }

    /// Every byte of the line was kept (it was not cut at `keep`).
    pub fn is_whole(&self) -> bool {
        self.len == self.kept.len()
    }

    /// The kept bytes (LF included when whole).
    pub fn kept_mut(&mut self) -> &mut Vec<u8> {
        &mut self.kept
    }

    pub fn clear(&mut self) {
        self.kept.clear();
        self.len = 0;
    }
}
