//! Test harness for the database parsers, in the spirit of ripgrep's `SearcherTester`:
//! replays the recorded sessions of `testdata/` (see its README) whole, byte by byte, in
//! random splits and as lossy captures, checks that the calls do not depend on the cuts
//! and that a lossy capture invents nothing, and feeds the fuzz driver real bytes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{DbCall, DbParser, ParseOptions, ParserStats, Side};
use crate::protocols::{Segment, fuzz};

pub use crate::protocols::fuzz::{
    FIXTURE_TS_STEP as TS_STEP, FixtureChunk as Chunk, fixture_ts as ts,
};

fn path(name: &str) -> String {
    format!(
        "{}/src/protocols/db/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn text(name: &str) -> String {
    let path = path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Loads `testdata/<name>`.
pub fn fixture(name: &str) -> Vec<Chunk> {
    fuzz::fixture(&text(name)).unwrap_or_else(|e| panic!("{}: {e}", path(name)))
}

/// How complete chunks are cut into segments (chunks recorded lossy go as recorded). Every
/// segment of chunk `i` has timestamp [`ts`]`(i)`, so the calls are the same however the
/// chunks are cut.
#[derive(Debug, Clone, Copy)]
pub enum Split {
    Whole,
    Bytewise,
    /// Pieces of 1 to `max_piece` bytes, cut at random from `seed`.
    Random {
        seed: u64,
        max_piece: usize,
    },
    /// Each chunk captured as the probes would with this head size.
    Lossy(usize),
}

/// Feeds `chunks` to `parser` cut as `split` says, then finishes. The parser is left for
/// the caller to inspect (stats, detected system).
pub fn replay(parser: &mut impl DbParser, chunks: &[Chunk], split: Split) -> Vec<DbCall> {
    let mut out = Vec::new();
    let mut rng = StdRng::seed_from_u64(match split {
        Split::Random { seed, .. } => seed,
        _ => 0,
    });
    for (i, chunk) in chunks.iter().enumerate() {
        let (side, ts_ns, bytes) = (chunk.side, ts(i), &chunk.head[..]);
        if !chunk.is_complete() {
            parser.push(side, &chunk.segment(ts_ns), &mut out);
            continue;
        }
        match split {
            Split::Whole => parser.push(side, &Segment::complete(ts_ns, bytes), &mut out),
            Split::Bytewise => {
                for piece in bytes.chunks(1) {
                    parser.push(side, &Segment::complete(ts_ns, piece), &mut out);
                }
            }
            Split::Random { max_piece, .. } => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = rng.random_range(1..=rest.len().min(max_piece));
                    let (piece, after) = rest.split_at(n);
                    parser.push(side, &Segment::complete(ts_ns, piece), &mut out);
                    rest = after;
                }
            }
            Split::Lossy(head) => {
                parser.push(side, &Segment::captured(ts_ns, bytes, head), &mut out);
            }
        }
    }
    parser.finish(&mut out);
    out
}

/// The start of a ClientHello and of a ServerHello: what the socket carries once a
/// connection switched to TLS.
const CIPHERTEXT: [(Side, &[u8]); 2] = [
    (
        Side::Client,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ),
    (
        Side::Server,
        b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03",
    ),
];

/// Replays `chunks` whole as the span builder feeds a connection that switches to TLS
/// within its protocol: the first `on_socket` chunks are the socket's own bytes, ending
/// with the switch; then ciphertext from both sides (to be ignored), then
/// [`DbParser::tls_started`] and the rest as the library's plaintext. Chunk `i` at
/// [`ts`]`(i)`, as in [`replay`].
pub fn replay_tls_resumed(
    parser: &mut impl DbParser,
    chunks: &[Chunk],
    on_socket: usize,
) -> Vec<DbCall> {
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        if i == on_socket {
            for (side, bytes) in CIPHERTEXT {
                parser.push(side, &Segment::complete(ts(i), bytes), &mut out);
            }
            parser.tls_started();
        }
        parser.push(chunk.side, &chunk.segment(ts(i)), &mut out);
    }
    parser.finish(&mut out);
    out
}

/// Replays `chunks` whole, byte by byte and in random splits (small pieces and large):
/// all must give the same calls and count the same losses. Returns the calls and stats.
pub fn replay_every_way<P: DbParser>(
    new: impl Fn() -> P,
    chunks: &[Chunk],
) -> (Vec<DbCall>, ParserStats) {
    let mut parser = new();
    let whole = replay(&mut parser, chunks, Split::Whole);
    let stats = parser.stats();
    let mut splits = vec![Split::Bytewise];
    for seed in 0..20 {
        for max_piece in [40, usize::MAX] {
            splits.push(Split::Random { seed, max_piece });
        }
    }
    for split in splits {
        let mut parser = new();
        assert_eq!(replay(&mut parser, chunks, split), whole, "{split:?}");
        assert_eq!(parser.stats(), stats, "{split:?}");
    }
    (whole, stats)
}

/// [`replay_every_way`] for a session the parser must follow without losing anything.
pub fn replay_lossless<P: DbParser>(new: impl Fn() -> P, chunks: &[Chunk]) -> Vec<DbCall> {
    let (calls, stats) = replay_every_way(new, chunks);
    assert_eq!(stats, ParserStats::default(), "nothing lost");
    calls
}

/// Head sizes the lossy checks capture with: from nothing to more than most messages.
const LOSSY_HEADS: [usize; 11] = [0, 3, 4, 5, 10, 16, 30, 40, 64, 100, 300];

/// What a parser does with a call whose operation a lossy capture cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOperation {
    /// Reports the call without an operation: its framing still says where it is (SQL).
    Reported,
    /// Drops the call, counted: no command name, no call (Redis, memcached).
    Dropped,
}

/// Replays `chunks` captured lossy with heads of every size in [`LOSSY_HEADS`]: no panic;
/// every call reported is one of `whole` (the complete replay): same times, same
/// operation (or none, where `cut` allows), and what else it reports agrees (an error
/// whose code was cut off is still an error); a call missing or extra is counted as a
/// loss in the stats.
pub fn check_lossy<P: DbParser>(
    new: impl Fn() -> P,
    chunks: &[Chunk],
    whole: &[DbCall],
    cut: CutOperation,
) {
    for head in LOSSY_HEADS {
        let mut parser = new();
        let got = replay(&mut parser, chunks, Split::Lossy(head));
        for call in &got {
            assert!(
                whole.iter().any(|w| agrees(call, w, cut)),
                "head {head}: invented {call:?}"
            );
        }
        let stats = parser.stats();
        assert!(
            got.len() == whole.len() || stats.desync_bytes > 0 || stats.dropped_calls > 0,
            "head {head}: {} of {} calls, loss not counted: {stats:?}",
            got.len(),
            whole.len()
        );
    }
}

/// Whether `lossy`, reported from a lossy capture, can be the complete run's `call`.
fn agrees(lossy: &DbCall, call: &DbCall, cut: CutOperation) -> bool {
    let known_and_equal = |l: &Option<String>, c: &Option<String>| l.is_none() || l == c;
    let operation = match cut {
        CutOperation::Reported => known_and_equal(&lossy.operation, &call.operation),
        CutOperation::Dropped => lossy.operation == call.operation,
    };
    lossy.start_ns == call.start_ns
        && lossy.end_ns == call.end_ns
        && operation
        && known_and_equal(&lossy.collection, &call.collection)
        && known_and_equal(&lossy.status_code, &call.status_code)
        && lossy.error_type.is_some() == call.error_type.is_some()
}

/// Runs the fuzz driver on `testdata/<name>` as the fuzzer's seed, then on its chunks as
/// a binary script with random cuts and lossy segments, and on 300 noisy, truncated
/// copies of that script: whatever the bytes, no panic and no call out of bounds.
pub fn fuzz_with_noise<P: DbParser>(new: impl Fn(ParseOptions) -> P + Copy, name: &str, seed: u64) {
    fuzz::db(new, text(name).as_bytes());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut script = Vec::new();
    for chunk in fixture(name) {
        let side = u8::from(chunk.side == Side::Server);
        let mut rest = &chunk.head[..];
        while !rest.is_empty() {
            let (piece, after) = rest.split_at(rng.random_range(1..=rest.len().min(64)));
            let lossy = if rng.random_bool(0.25) { 2 } else { 0 };
            let head = rng.random_range(0..64u8);
            script.extend([head << 2 | lossy | side, piece.len() as u8]);
            script.extend_from_slice(piece);
            rest = after;
        }
    }
    fuzz::db(new, &script);
    for i in 0..300 {
        let mut noisy = script.clone();
        let at = rng.random_range(..noisy.len());
        noisy[at] = rng.random();
        fuzz::db(new, &noisy[..noisy.len() - i % 7]);
    }
}

/// `(db.query.summary, status code)` of each call: what the SQL tests compare.
pub fn summaries(calls: &[DbCall]) -> Vec<(&str, Option<&str>)> {
    calls
        .iter()
        .map(|c| (c.summary.as_str(), c.status_code.as_deref()))
        .collect()
}

/// `(operation, query text, error type)` of each call, `""` for none: what the key-value
/// tests compare.
pub fn operations(calls: &[DbCall]) -> Vec<(&str, &str, &str)> {
    fn or_empty(s: &Option<String>) -> &str {
        s.as_deref().unwrap_or_default()
    }
    calls
        .iter()
        .map(|c| {
            (
                or_empty(&c.operation),
                or_empty(&c.query_text),
                or_empty(&c.error_type),
            )
        })
        .collect()
}

/// The value of attribute `key` in `call.extra`.
pub fn extra<'a>(call: &'a DbCall, key: &str) -> Option<&'a str> {
    call.extra
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}
