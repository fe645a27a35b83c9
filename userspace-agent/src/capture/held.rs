//! The first bytes of a connection, held back while they are too short to tell which
//! protocol they start ("GET" arriving alone).

use super::segment::ConnSegment;
use crate::abi::Direction;
use crate::protocols::Segment;

/// Most bytes held: every sniffer that may ask for more decides within this many.
pub const MAX_HELD: usize = 16;

/// Bytes one direction sent first, all captured, not yet recognised.
#[derive(Debug)]
pub struct Held {
    dir: Direction,
    first_ts_ns: u64,
    bytes: Vec<u8>,
}

/// Bytes to recognise a connection by: what was held before, then this segment's.
pub struct Prefix<'a> {
    held: Option<Held>,
    /// `held` joined with the segment's head; borrowed from the segment when nothing was
    /// held (the common case: no copy).
    joined: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Prefix<'a> {
    /// What is held (if this segment continues it: same direction, and both fully
    /// captured, so no byte is missing between them) followed by `seg`.
    pub fn new(held: Option<Held>, seg: &ConnSegment<'a>) -> Self {
        let held = held.filter(|h| h.dir == seg.direction && seg.fully_captured());
        let joined = match &held {
            Some(h) => [h.bytes.as_slice(), seg.seg.head].concat().into(),
            None => seg.seg.head.into(),
        };
        Self { held, joined }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.joined
    }

    /// Keeps the bytes for the next segment (at most [`MAX_HELD`]).
    pub fn hold(self, seg: &ConnSegment<'_>) -> Held {
        let Prefix { held, joined } = self;
        let first_ts_ns = held.as_ref().map_or(seg.seg.ts_ns, |h| h.first_ts_ns);
        let mut bytes = joined.into_owned();
        bytes.truncate(MAX_HELD);
        Held {
            dir: seg.direction,
            first_ts_ns,
            bytes,
        }
    }

    /// The segment to parse: this one, or, when bytes were held, one segment that starts
    /// at the first of them (so a span starts at its request's first byte).
    pub fn segment<'s>(&'s self, seg: &ConnSegment<'s>) -> Segment<'s> {
        match &self.held {
            None => seg.seg,
            Some(h) => Segment {
                ts_ns: h.first_ts_ns,
                len: h.bytes.len() as u64 + seg.seg.len,
                head: &self.joined,
                tail: seg.seg.tail,
            },
        }
    }
}
