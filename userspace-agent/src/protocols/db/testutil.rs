//! Test harness for the database parsers: replays recorded sessions (`testdata/`,
//! written by `tests/fixtures/db/record_proxy.py`) whole, byte by byte, in random
//! splits and lossy, and collects the calls.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{DbCall, DbParser, ParserStats};
use crate::protocols::Segment;

pub use crate::protocols::fuzz::FixtureChunk as Chunk;

/// Loads `testdata/<name>`.
pub fn fixture(name: &str) -> Vec<Chunk> {
    let path = format!(
        "{}/src/protocols/db/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    crate::protocols::fuzz::fixture(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Timestamp of chunk `i`: distinct and increasing.
pub fn ts(i: usize) -> u64 {
    1_000 * (i as u64 + 1)
}

/// How complete chunks are cut into segments (lossy chunks are always fed as recorded).
#[derive(Debug, Clone, Copy)]
pub enum Split {
    Whole,
    Bytewise,
    Random(u64),
    /// Each chunk captured as the probes would with this head size (and an 8-byte tail).
    Lossy(usize),
}

/// Feeds `chunks` to `parser` cut as `split` says, then finishes.
pub fn replay(
    mut parser: impl DbParser,
    chunks: &[Chunk],
    split: Split,
) -> (Vec<DbCall>, ParserStats) {
    let mut out = Vec::new();
    let mut rng = StdRng::seed_from_u64(match split {
        Split::Random(seed) => seed,
        _ => 0,
    });
    for (i, chunk) in chunks.iter().enumerate() {
        let ts_ns = ts(i);
        if chunk.gap > 0 || !chunk.tail.is_empty() {
            let seg = Segment {
                ts_ns,
                len: chunk.head.len() as u64 + chunk.gap + chunk.tail.len() as u64,
                head: &chunk.head,
                tail: &chunk.tail,
            };
            parser.push(chunk.side, &seg, &mut out);
            continue;
        }
        let bytes = &chunk.head[..];
        match split {
            Split::Whole => parser.push(chunk.side, &Segment::complete(ts_ns, bytes), &mut out),
            Split::Bytewise => {
                for piece in bytes.chunks(1) {
                    parser.push(chunk.side, &Segment::complete(ts_ns, piece), &mut out);
                }
            }
            Split::Random(_) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = rng.random_range(1..=rest.len());
                    let (piece, after) = rest.split_at(n);
                    parser.push(chunk.side, &Segment::complete(ts_ns, piece), &mut out);
                    rest = after;
                }
            }
            Split::Lossy(head) => {
                let seg = if bytes.len() <= head {
                    Segment::complete(ts_ns, bytes)
                } else {
                    Segment {
                        ts_ns,
                        len: bytes.len() as u64,
                        head: &bytes[..head],
                        tail: &bytes[bytes.len().saturating_sub(8).max(head)..],
                    }
                };
                parser.push(chunk.side, &seg, &mut out);
            }
        }
    }
    parser.finish(&mut out);
    let stats = parser.stats();
    (out, stats)
}

/// Replays whole, byte by byte and in random splits; all must give the same calls.
pub fn replay_every_way<P: DbParser>(
    new: impl Fn() -> P,
    chunks: &[Chunk],
) -> (Vec<DbCall>, ParserStats) {
    let whole = replay(new(), chunks, Split::Whole);
    let bytewise = replay(new(), chunks, Split::Bytewise);
    assert_eq!(whole.0, bytewise.0, "byte by byte differs from whole");
    for seed in 0..20 {
        let random = replay(new(), chunks, Split::Random(seed));
        assert_eq!(
            whole.0, random.0,
            "random split (seed {seed}) differs from whole"
        );
    }
    whole
}

/// `(operation, query text, error type)` of each call: what most assertions compare.
pub fn summary(calls: &[DbCall]) -> Vec<(String, String, String)> {
    calls
        .iter()
        .map(|c| {
            (
                c.operation.clone().unwrap_or_default(),
                c.query_text.clone().unwrap_or_default(),
                c.error_type.clone().unwrap_or_default(),
            )
        })
        .collect()
}
