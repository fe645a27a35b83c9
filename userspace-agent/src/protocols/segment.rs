//! What every parser is fed: the bytes one syscall moved, as the probes captured them.

/// Bytes one syscall moved in one direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Monotonic kernel timestamp (ns) of the syscall.
    pub ts_ns: u64,
    /// Bytes the syscall actually moved; may be larger than `head.len()`.
    pub len: u64,
    /// The first captured bytes of those `len` bytes (a prefix; at most `len`, typically <= 2048).
    pub head: &'a [u8],
    /// When `len > head.len()`: the LAST bytes (up to 8) of those `len` bytes, if the probe
    /// could read them; may be empty. Bytes between head and tail are unknown (a "gap")
    /// but their count is known.
    pub tail: &'a [u8],
}

impl<'a> Segment<'a> {
    /// The most tail bytes a probe reads.
    pub const TAIL_MAX: usize = crate::abi::TAIL_BYTES;

    /// A segment whose bytes were all captured.
    pub fn complete(ts_ns: u64, bytes: &'a [u8]) -> Self {
        Self {
            ts_ns,
            len: bytes.len() as u64,
            head: bytes,
            tail: &[],
        }
    }

    /// `bytes` as a probe capturing at most `head_max` bytes reports them: that head, and
    /// when bytes were left out the last [`Self::TAIL_MAX`] after it.
    pub fn captured(ts_ns: u64, bytes: &'a [u8], head_max: usize) -> Self {
        let (head, rest) = bytes.split_at(head_max.min(bytes.len()));
        Self {
            ts_ns,
            len: bytes.len() as u64,
            head,
            tail: rest
                .get(rest.len().saturating_sub(Self::TAIL_MAX)..)
                .unwrap_or_default(),
        }
    }

    /// Splits the segment into known head, unknown gap length and known tail.
    ///
    /// Tolerates inconsistent probe output: a `len` shorter than the head is taken as the
    /// head's length, and a tail overlapping the head keeps only its non-overlapping end.
    pub(crate) fn parts(&self) -> (&'a [u8], u64, &'a [u8]) {
        let after_head = self.len.saturating_sub(self.head.len() as u64);
        let keep = usize::try_from(after_head).map_or(self.tail.len(), |n| n.min(self.tail.len()));
        let tail = self.tail.get(self.tail.len() - keep..).unwrap_or_default();
        (self.head, after_head - keep as u64, tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_keeps_head_and_the_tail_after_it() {
        let bytes: Vec<u8> = (0..20).collect();
        let seg = Segment::captured(7, &bytes, 5);
        assert_eq!((seg.ts_ns, seg.len), (7, 20));
        assert_eq!((seg.head, seg.tail), (&bytes[..5], &bytes[12..]));
        assert_eq!(seg.parts(), (&bytes[..5], 7, &bytes[12..]));
        // Fewer than 8 bytes after the head: the tail never repeats head bytes.
        let seg = Segment::captured(7, &bytes, 15);
        assert_eq!((seg.head, seg.tail), (&bytes[..15], &bytes[15..]));
        assert_eq!(seg.parts().1, 0);
        // All captured: the same as a complete segment.
        assert_eq!(
            Segment::captured(7, &bytes, 20),
            Segment::complete(7, &bytes)
        );
        assert_eq!(
            Segment::captured(7, &bytes, 99),
            Segment::complete(7, &bytes)
        );
    }
}
