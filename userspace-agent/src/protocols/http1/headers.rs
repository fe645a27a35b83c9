//! The header block (RFC 9112 §5): field lines parsed into the fields a span keeps
//! (`Headers`, bounded) and the fields that frame the body (`FramingFields`), which are
//! read from every line so that the bounds cannot change framing.

use super::bounded::append_bounded;
use super::{MAX_HEADER_NAME, MAX_HEADER_VALUE, MAX_HEADERS};
use crate::protocols::parse_decimal;

/// Header fields of one head, bounded: at most 64 fields kept, values cut at 1024 bytes,
/// names lower-cased.
///
/// Names and values sit back to back in one buffer, with their ranges beside it: two
/// allocations per head instead of two per field (this runs for every request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    buf: String,
    /// (name start, name end = value start, value end) in `buf`.
    fields: Vec<(u32, u32, u32)>,
    omitted: usize,
}

impl Headers {
    /// Room for a head block of `bytes` bytes, so parsing it never reallocates.
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: String::with_capacity(
                bytes.min(MAX_HEADERS * (MAX_HEADER_NAME + MAX_HEADER_VALUE)),
            ),
            fields: Vec::with_capacity(16),
            omitted: 0,
        }
    }

    /// The first value of the field `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Kept fields in wire order, as (lower-case name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|&(a, b, c)| {
            let (a, b, c) = (a as usize, b as usize, c as usize);
            (
                self.buf.get(a..b).unwrap_or_default(),
                self.buf.get(b..c).unwrap_or_default(),
            )
        })
    }

    /// Number of fields kept.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Fields seen but not kept because of the field-count bound.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        if self.fields.len() >= MAX_HEADERS {
            self.omitted += 1;
            return;
        }
        let start = self.buf.len();
        append_bounded(&mut self.buf, name, MAX_HEADER_NAME);
        let name_end = self.buf.len();
        self.buf[start..name_end].make_ascii_lowercase();
        append_bounded(&mut self.buf, value, MAX_HEADER_VALUE);
        // At most 64 fields of bounded size: always fits in u32.
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.fields
            .push((offset(start), offset(name_end), offset(self.buf.len())));
    }

    /// Appends an obsolete line folding continuation to the last value (RFC 9112 §5.2:
    /// replace the fold with a space). The last value is at the end of the buffer.
    fn append_folded(&mut self, more: &[u8]) {
        let Some(last) = self.fields.last_mut() else {
            return;
        };
        let len = (last.2 - last.1) as usize;
        let room = MAX_HEADER_VALUE.saturating_sub(len);
        if room > 1 {
            self.buf.push(' ');
            append_bounded(&mut self.buf, more, room - 1);
            last.2 = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        }
    }
}

/// A body coding named by Transfer-Encoding, as framing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    Chunked,
    Other,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum ContentLength {
    #[default]
    Absent,
    Valid(u64),
    /// Not a number, or several different numbers.
    Invalid,
}

/// The fields that frame a body, gathered from every field line (also those past the
/// `MAX_HEADERS` bound, so the bound cannot change framing).
#[derive(Debug, Default)]
pub(super) struct FramingFields {
    /// The final transfer coding, if Transfer-Encoding is present.
    pub(super) transfer_encoding: Option<Coding>,
    pub(super) content_length: ContentLength,
}

impl FramingFields {
    fn observe(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value
                .rsplit(|&b| b == b',')
                .map(trim_ows)
                .find(|c| !c.is_empty());
            if let Some(coding) = last {
                self.transfer_encoding = Some(if coding.eq_ignore_ascii_case(b"chunked") {
                    Coding::Chunked
                } else {
                    Coding::Other
                });
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6: a list of identical values is the same as one value.
            for item in value.split(|&b| b == b',').map(trim_ows) {
                self.content_length = match (self.content_length, parse_decimal(item)) {
                    (ContentLength::Absent, Some(n)) => ContentLength::Valid(n),
                    (ContentLength::Valid(m), Some(n)) if m == n => ContentLength::Valid(n),
                    _ => ContentLength::Invalid,
                };
            }
        }
    }
}

/// Parses the header lines of `block` up to the blank line into the fields that frame the
/// body, keeping every field in `headers` when given; a trailing line without its LF (cut
/// head) is ignored because its value may be cut too.
pub(super) fn parse_header_block(block: &[u8], mut headers: Option<&mut Headers>) -> FramingFields {
    let mut framing = FramingFields::default();
    let mut rest = block;
    while let Some(lf) = memchr::memchr(b'\n', rest) {
        let (line, after) = rest.split_at(lf);
        rest = after.get(1..).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(headers) = headers.as_deref_mut() {
                headers.append_folded(trim_ows(line));
            }
            continue;
        }
        // The name is a token, ended by the colon (':' is no token byte).
        let colon = line
            .iter()
            .position(|&b| !is_token_byte(b))
            .unwrap_or(line.len());
        if colon == 0 || line.get(colon) != Some(&b':') {
            continue;
        }
        let (name, value) = line.split_at(colon);
        let value = trim_ows(value.get(1..).unwrap_or_default());
        framing.observe(name, value);
        if let Some(headers) = headers.as_deref_mut() {
            headers.push(name, value);
        }
    }
    framing
}

/// RFC 9110 tchar.
fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// `is_token_byte` by byte value: a header name is checked byte by byte on every request.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    table
};

/// Trims optional whitespace (SP / HTAB) at both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::http1::testutil::{ends, request_heads};
    use crate::protocols::http1::{RequestStream, Segment};

    #[test]
    fn headers_are_lowercased_trimmed_folded_and_bounded() {
        let mut bytes = b"GET / HTTP/1.1\r\nHOST:  example.com \t\r\nX-Folded: one\r\n  two\r\n\
            Bad Name: x\r\nno colon\r\nX-Long: "
            .to_vec();
        bytes.extend(vec![b'v'; 5000]);
        bytes.extend_from_slice(b"\r\n");
        for i in 0..100 {
            bytes.extend(format!("X-Field-{i}: {i}\r\n").into_bytes());
        }
        bytes.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let mut stream = RequestStream::new();
        let mut out = Vec::new();
        stream.push(&Segment::complete(1, &bytes), &mut out);
        let heads = request_heads(&out);
        let headers = &heads[0].headers;
        assert_eq!(headers.get("host"), Some("example.com"));
        assert_eq!(headers.get("Host"), Some("example.com"));
        assert_eq!(headers.get("x-folded"), Some("one two"));
        assert_eq!(headers.get("bad name"), None);
        assert_eq!(headers.get("x-long").map(str::len), Some(MAX_HEADER_VALUE));
        assert_eq!(headers.len(), MAX_HEADERS);
        assert_eq!(headers.omitted(), 3 + 100 + 1 - MAX_HEADERS);
        assert!(headers.iter().all(|(n, _)| n == n.to_ascii_lowercase()));
        // Content-Length is past the 64-field bound and still frames the body.
        assert_eq!(ends(&out), [(1, 2)]);
    }

    #[test]
    fn token_table_is_rfc9110_tchar() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token_byte(b), tchar, "byte {b:#x}");
        }
    }
}
