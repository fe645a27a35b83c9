//! Drivers for the fuzz targets in `fuzz/` (not part of the agent's API).
//!
//! One fuzz input is a script of segments, so the fuzzer explores splits, directions and
//! lossy captures as well as bytes. Each record is
//! `[control: u8][length: u8][length bytes of payload]` (a short last record takes what
//! is left). In `control`, bit 0 picks the side (0 = client, 1 = server); when bit 1 is
//! set the segment is lossy: captured as a probe would (`Segment::captured`) with a head
//! of at most `control >> 2` bytes and its tail, and the gap between them stretched by
//! `payload_len * control` unseen bytes, so gaps range from a few bytes to a few MB.
//!
//! An input that is a recorded session fixture (the `testdata/*.txt` text format, see
//! [`fixture`]) is replayed as such instead: the fixtures are the seed corpus, and
//! mutating their hex digits mutates the bytes of a real session.
//!
//! A new parser needs one small function here (or just a type for [`db`]) and one file
//! in `fuzz/fuzz_targets/` calling it.

use super::Segment;
use super::db::{DbCall, DbParser, ParseOptions, Side};
use super::http1::{Http1Event, RequestStream, ResponseStream};

/// One scripted segment, borrowed from the fuzz input.
struct Scripted<'a> {
    side: Side,
    seg: Segment<'a>,
}

/// Runs `f` on each segment of a fuzz input: a fixture's chunks if it is one, else the
/// binary script.
fn for_each_segment(data: &[u8], mut f: impl FnMut(Scripted<'_>)) {
    let chunks = std::str::from_utf8(data)
        .ok()
        .and_then(|text| fixture(text).ok());
    match chunks {
        Some(chunks) if !chunks.is_empty() => {
            for (i, chunk) in chunks.iter().enumerate() {
                f(Scripted {
                    side: chunk.side,
                    seg: chunk.segment(fixture_ts(i)),
                });
            }
        }
        _ => script(data).for_each(f),
    }
}

/// Splits a fuzz input into its scripted segments.
fn script(mut data: &[u8]) -> impl Iterator<Item = Scripted<'_>> {
    let mut ts_ns = 0u64;
    std::iter::from_fn(move || {
        let (&control, rest) = data.split_first()?;
        let (&len, rest) = rest.split_first().unwrap_or((&u8::MAX, rest));
        let (payload, rest) = rest.split_at(usize::from(len).min(rest.len()));
        data = rest;
        ts_ns += FIXTURE_TS_STEP;
        let side = if control & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let seg = if control & 2 == 0 {
            Segment::complete(ts_ns, payload)
        } else {
            let mut seg = Segment::captured(ts_ns, payload, usize::from(control >> 2));
            seg.len += (payload.len() as u64) * u64::from(control);
            seg
        };
        Some(Scripted { side, seg })
    })
}

/// Runs one fuzz input through a database parser, then closes the connection.
pub fn db<P: DbParser>(new: impl Fn(ParseOptions) -> P, data: &[u8]) {
    // Both option sets: redaction paths differ.
    for obfuscate_literals in [true, false] {
        let mut parser = new(ParseOptions {
            obfuscate_literals,
            max_query_text: 64,
        });
        let mut out: Vec<DbCall> = Vec::new();
        for_each_segment(data, |Scripted { side, seg }| {
            parser.push(side, &seg, &mut out);
            check_calls(&out, 64);
            out.clear();
        });
        parser.finish(&mut out);
        check_calls(&out, 64);
    }
}

/// What every call must satisfy whatever the input.
fn check_calls(calls: &[DbCall], max_query_text: usize) {
    for call in calls {
        assert!(
            call.start_ns <= call.end_ns,
            "call ends before it starts: {call:?}"
        );
        if let Some(text) = &call.query_text {
            assert!(
                text.len() <= max_query_text,
                "query text over its bound: {call:?}"
            );
        }
    }
}

/// Runs one fuzz input through the HTTP/1 request and response streams, telling the
/// response side about each request as the agent does.
pub fn http1(data: &[u8]) {
    let mut requests = RequestStream::new();
    let mut responses = ResponseStream::new();
    let mut out = Vec::new();
    for_each_segment(data, |Scripted { side, seg }| {
        match side {
            Side::Client => {
                responses.end_at_peer_turn(&mut out);
                requests.push(&seg, &mut out);
            }
            Side::Server => {
                requests.end_at_peer_turn(&mut out);
                responses.push(&seg, &mut out);
            }
        }
        for event in out.drain(..) {
            if let Http1Event::RequestStart { head, .. } = event {
                responses.expect_response(&head.method);
            }
        }
    });
    requests.finish(&mut out);
    responses.finish(&mut out);
}

/// One chunk of a recorded session fixture (`tests/fixtures/db/record_proxy.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureChunk {
    pub side: Side,
    pub head: Vec<u8>,
    /// Bytes not recorded between head and tail (large chunks are stored lossy).
    pub gap: u64,
    pub tail: Vec<u8>,
}

impl FixtureChunk {
    /// Whether every byte of the chunk was recorded.
    pub fn is_complete(&self) -> bool {
        self.gap == 0 && self.tail.is_empty()
    }

    /// The chunk as the probes would report it at `ts_ns`.
    pub fn segment(&self, ts_ns: u64) -> Segment<'_> {
        Segment {
            ts_ns,
            len: self.head.len() as u64 + self.gap + self.tail.len() as u64,
            head: &self.head,
            tail: &self.tail,
        }
    }
}

/// Replays put chunk `i` of a fixture at `fixture_ts(i)`: this far apart, from this step on.
pub const FIXTURE_TS_STEP: u64 = 1_000;

/// Timestamp of chunk `i` of a replayed fixture: distinct and increasing.
pub fn fixture_ts(i: usize) -> u64 {
    FIXTURE_TS_STEP * (i as u64 + 1)
}

/// Parses a fixture: `c|s <hex>` or `c|s <head hex> +<gap> <tail hex>` lines, `#` comments.
pub fn fixture(text: &str) -> Result<Vec<FixtureChunk>, String> {
    let mut chunks = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let bad = || format!("bad fixture line {line:?}");
        let fields: Vec<&str> = line.split(' ').collect();
        let (side, head, gap, tail) = match fields.as_slice() {
            [side, head] => (*side, *head, "+0", ""),
            [side, head, gap, tail] => (*side, *head, *gap, *tail),
            _ => return Err(bad()),
        };
        let side = match side {
            "c" => Side::Client,
            "s" => Side::Server,
            _ => return Err(bad()),
        };
        let head = hex(head).ok_or_else(bad)?;
        let gap = gap
            .strip_prefix('+')
            .and_then(|g| g.parse().ok())
            .ok_or_else(bad)?;
        let tail = hex(tail).ok_or_else(bad)?;
        chunks.push(FixtureChunk {
            side,
            head,
            gap,
            tail,
        });
    }
    Ok(chunks)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let digits = s.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
