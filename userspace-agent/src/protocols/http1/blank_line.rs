//! The blank line that ends a header block or a trailer section, found across segments.

/// Finds the blank line that ends a header block or trailer section, across calls.
/// Starts at the beginning of a line.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct BlankLineScanner {
    /// Bytes in the current line so far.
    line_len: u64,
    prev_cr: bool,
}

impl BlankLineScanner {
    /// Bytes up to and including the LF of the first blank line ("\r\n" or "\n") in
    /// `bytes`, if there is one.
    pub(super) fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
