//! RESP2/RESP3 value framing over a lossy byte stream.
//!
//! [`Reader`] walks values as bytes arrive, in any split, and tells a [`Visit`] what it
//! sees: each value's header, the payload of bulk values, the end of each top-level
//! value. It keeps no value in memory: only the header line being read (bounded) and
//! one counter per open aggregate (bounded depth). Bulk payloads are length-prefixed, so
//! a gap inside one is counted through; a gap anywhere else loses sync.

use super::super::framing::LineBuf;

/// Deepest aggregate nesting followed (Redis replies nest a handful of levels).
pub const MAX_DEPTH: usize = 32;
/// Longest header or simple-value line accepted; Redis' own inline limit is 64 KiB.
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes of a line handed to the visitor; the rest is counted and dropped.
pub const LINE_KEEP: usize = 512;
/// Largest element count or bulk length accepted (Redis caps bulks at 512 MB).
const MAX_LENGTH: u64 = u32::MAX as u64;

/// Receives what the reader finds.
pub trait Visit {
    /// A value starts at `depth` (0 = top level). `line` is its header line without the
    /// type byte and CRLF, cut at [`LINE_KEEP`] bytes.
    fn header(&mut self, depth: usize, kind: u8, line: &[u8]);
    /// Payload bytes of the bulk value that started last, in pieces, CRLF excluded.
    fn bulk(&mut self, depth: usize, bytes: &[u8]);
    /// Payload bytes of that bulk value that were not captured.
    fn bulk_unseen(&mut self, depth: usize, count: u64);
    /// The top-level value is complete.
    fn done(&mut self);
}

/// The bytes stopped being RESP where the reader is: framing is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desync {
    /// Bytes of the fed slice consumed before the error.
    pub consumed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a type byte.
    Type,
    /// Reading the header line of a value of `kind`.
    Line { kind: u8 },
    /// Inside a bulk payload: `payload` bytes, then `crlf` bytes of terminator.
    Bulk { payload: u64, crlf: u8 },
}

/// One open aggregate.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Elements still to come.
    left: u64,
    /// An attribute (`|`) annotates the value after it and is not an element itself.
    attribute: bool,
}

#[derive(Debug)]
pub struct Reader {
    state: State,
    stack: Vec<Frame>,
    line: LineBuf,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            state: State::Type,
            stack: Vec::new(),
            line: LineBuf::default(),
        }
    }
}

impl Reader {
    /// Between top-level values: the next byte starts a new one.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Type && self.stack.is_empty()
    }

    /// Forgets any value in progress (after a loss of sync).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Reads `bytes`; on `Err` the reader must be [`reset`](Self::reset) before reuse.
    pub fn feed(&mut self, bytes: &[u8], v: &mut impl Visit) -> Result<(), Desync> {
        let mut at = 0;
        while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
            let used = self.step(rest, v).map_err(|()| Desync { consumed: at })?;
            at += used;
        }
        Ok(())
    }

    /// `count` bytes went by unseen: survivable only inside a bulk payload.
    pub fn skip(&mut self, count: u64, v: &mut impl Visit) -> Result<(), Desync> {
        if count == 0 {
            return Ok(());
        }
        let State::Bulk { payload, crlf } = self.state else {
            return Err(Desync { consumed: 0 });
        };
        let depth = self.stack.len();
        if count <= payload {
            self.state = State::Bulk {
                payload: payload - count,
                crlf,
            };
            v.bulk_unseen(depth, count);
            return Ok(());
        }
        // The gap ends inside the terminator: the value is over, its CRLF unchecked.
        let into_crlf = count - payload;
        if into_crlf > u64::from(crlf) {
            return Err(Desync { consumed: 0 });
        }
        v.bulk_unseen(depth, payload);
        let crlf = crlf - into_crlf as u8;
        self.state = State::Bulk { payload: 0, crlf };
        if crlf == 0 {
            self.state = State::Type;
            self.complete(v);
        }
        Ok(())
    }

    /// Consumes a prefix of `bytes` (at least one byte) or fails.
    fn step(&mut self, bytes: &[u8], v: &mut impl Visit) -> Result<usize, ()> {
        match self.state {
            State::Type => {
                let kind = *bytes.first().ok_or(())?;
                if !is_type_byte(kind) {
                    return Err(());
                }
                self.line.clear();
                self.state = State::Line { kind };
                Ok(1)
            }
            State::Line { kind } => {
                let (used, ended) = self.line.feed(bytes, LINE_KEEP, MAX_LINE)?;
                if ended {
                    self.end_line(kind, v)?;
                }
                Ok(used)
            }
            State::Bulk { payload, crlf } => {
                if payload > 0 {
                    let n = usize::try_from(payload).map_or(bytes.len(), |p| p.min(bytes.len()));
                    v.bulk(self.stack.len(), bytes.get(..n).unwrap_or_default());
                    self.state = State::Bulk {
                        payload: payload - n as u64,
                        crlf,
                    };
                    return Ok(n);
                }
                let expected = if crlf == 2 { b'\r' } else { b'\n' };
                if bytes.first() != Some(&expected) {
                    return Err(());
                }
                if crlf == 1 {
                    self.state = State::Type;
                    self.complete(v);
                } else {
                    self.state = State::Bulk {
                        payload: 0,
                        crlf: 1,
                    };
                }
                Ok(1)
            }
        }
    }

    /// The header line of a `kind` value is complete (in `self.line`, LF included).
    fn end_line(&mut self, kind: u8, v: &mut impl Visit) -> Result<(), ()> {
        let whole = self.line.is_whole();
        let mut line = std::mem::take(self.line.kept_mut());
        if whole {
            // The whole line is here: check and strip the CRLF.
            let body_len = line.len().checked_sub(2).ok_or(())?;
            if line.get(body_len) != Some(&b'\r') {
                return Err(());
            }
            line.truncate(body_len);
        } else if !matches!(kind, b'+' | b'-' | b',' | b'(') {
            // Cut at LINE_KEEP (CRLF unseen): only simple values may be that long.
            return Err(());
        }
        let depth = self.stack.len();
        let result = self.start_value(kind, &line, depth, v);
        *self.line.kept_mut() = line;
        result
    }

    fn start_value(
        &mut self,
        kind: u8,
        line: &[u8],
        depth: usize,
        v: &mut impl Visit,
    ) -> Result<(), ()> {
        match kind {
            b'+' | b'-' | b',' => {
                if line.contains(&b'\r') {
                    return Err(());
                }
                v.header(depth, kind, line);
                self.state = State::Type;
                self.complete(v);
            }
            b':' | b'(' => {
                parse_signed(line).ok_or(())?;
                v.header(depth, kind, line);
                self.state = State::Type;
                self.complete(v);
            }
            b'_' | b'#' => {
                let ok = match kind {
                    b'_' => line.is_empty(),
                    _ => line == b"t" || line == b"f",
                };
                if !ok {
                    return Err(());
                }
                v.header(depth, kind, line);
                self.state = State::Type;
                self.complete(v);
            }
            b'$' | b'!' | b'=' => {
                v.header(depth, kind, line);
                match parse_length(line).ok_or(())? {
                    None => {
                        self.state = State::Type;
                        self.complete(v);
                    }
                    Some(len) => {
                        self.state = State::Bulk {
                            payload: len,
                            crlf: 2,
                        }
                    }
                }
            }
            _ => {
                // Aggregates: `*` array, `%` map, `~` set, `>` push, `|` attribute.
                v.header(depth, kind, line);
                self.state = State::Type;
                let pairs = matches!(kind, b'%' | b'|');
                match parse_length(line).ok_or(())? {
                    Some(0) | None => self.complete(v),
                    Some(n) => {
                        if self.stack.len() >= MAX_DEPTH {
                            return Err(());
                        }
                        self.stack.push(Frame {
                            left: if pairs { n * 2 } else { n },
                            attribute: kind == b'|',
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// A value ended: count it against the aggregates it closes.
    fn complete(&mut self, v: &mut impl Visit) {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                v.done();
                return;
            };
            frame.left = frame.left.saturating_sub(1);
            if frame.left > 0 {
                return;
            }
            let closed = self.stack.pop();
            if closed.is_some_and(|f| f.attribute) {
                // The annotated value still follows at this level.
                return;
            }
        }
    }
}

fn is_type_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

/// A length line: `-1` (null, RESP2) is `None`; anything else must be decimal digits.
fn parse_length(line: &[u8]) -> Option<Option<u64>> {
    if line == b"-1" {
        return Some(None);
    }
    parse_decimal(line).filter(|&n| n <= MAX_LENGTH).map(Some)
}

fn parse_signed(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, line),
    };
    if digits.len() > 18 {
        // A bignum: check digits only.
        return digits.iter().all(u8::is_ascii_digit).then_some(0);
    }
    let n = i64::try_from(parse_decimal(digits)?).ok()?;
    Some(if negative { -n } else { n })
}

/// Parses a non-empty run of at most 19 ASCII digits.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.len() > 19 {
        return None;
    }
    crate::protocols::parse_decimal(digits)
}

/// The integer a `:` line holds, if it is one.
pub fn integer(line: &[u8]) -> Option<i64> {
    parse_signed(line)
}
