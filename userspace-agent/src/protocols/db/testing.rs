//! Test harness for the SQL wire-protocol parsers: recorded sessions (see
//! `testdata/README.md`) fed whole, byte by byte, at random split points and with lossy
//! capture, in the spirit of ripgrep's `SearcherTester`.

use super::{DbCall, DbParser, ParserStats, Segment, Side};

/// One recv() the recording proxy saw.
pub(super) struct Chunk {
    pub side: Side,
    pub bytes: Vec<u8>,
}

/// Loads `testdata/NAME`: lines `C <hex>` (client) or `S <hex>` (server).
pub(super) fn load(name: &str) -> Vec<Chunk> {
    let path = format!(
        "{}/src/protocols/db/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| {
            let (dir, hex) = line.split_once(' ').expect("direction and hex");
            let side = match dir {
                "C" => Side::Client,
                "S" => Side::Server,
                other => panic!("bad direction {other}"),
            };
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            Chunk { side, bytes }
        })
        .collect()
}

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
    }
}

/// How each chunk is cut into segments. Every segment of chunk `i` has timestamp `i`, so
/// the calls are the same however chunks are cut.
#[derive(Clone, Copy, Debug)]
pub(super) enum Mode {
    Whole,
    ByteByByte,
    Random(u64),
    /// Each chunk one segment, head cut to this many bytes, last 8 bytes as tail.
    Lossy(usize),
}

pub(super) fn run<P: DbParser>(parser: &mut P, chunks: &[Chunk], mode: Mode) -> Vec<DbCall> {
    let mut out = Vec::new();
    let mut rng = Rng(match mode {
        Mode::Random(seed) => seed,
        _ => 1,
    });
    for (i, chunk) in chunks.iter().enumerate() {
        let ts = i as u64;
        let bytes = chunk.bytes.as_slice();
        match mode {
            Mode::Whole => parser.push(chunk.side, &Segment::complete(ts, bytes), &mut out),
            Mode::ByteByByte => {
                for b in bytes.chunks(1) {
                    parser.push(chunk.side, &Segment::complete(ts, b), &mut out);
                }
            }
            Mode::Random(_) => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = 1 + rng.below(rest.len().min(40));
                    let (now, later) = rest.split_at(n);
                    parser.push(chunk.side, &Segment::complete(ts, now), &mut out);
                    rest = later;
                }
            }
            Mode::Lossy(cap) => {
                let seg = Segment {
                    ts_ns: ts,
                    len: bytes.len() as u64,
                    head: &bytes[..cap.min(bytes.len())],
                    tail: &bytes[bytes.len().saturating_sub(8)..],
                };
                parser.push(chunk.side, &seg, &mut out);
            }
        }
    }
    parser.finish(&mut out);
    out
}

/// Runs `chunks` whole, byte by byte and at random splits: the calls must not depend on
/// the cuts, nor may anything be counted as lost. Returns the calls.
pub(super) fn check_splits<P: DbParser>(new: impl Fn() -> P, chunks: &[Chunk]) -> Vec<DbCall> {
    let mut parser = new();
    let whole = run(&mut parser, chunks, Mode::Whole);
    assert_eq!(
        parser.stats(),
        ParserStats::default(),
        "whole: nothing lost"
    );
    let mut parser = new();
    assert_eq!(
        run(&mut parser, chunks, Mode::ByteByByte),
        whole,
        "byte by byte"
    );
    for seed in 1..20 {
        let mut parser = new();
        assert_eq!(
            run(&mut parser, chunks, Mode::Random(seed)),
            whole,
            "random #{seed}"
        );
    }
    whole
}

/// Lossy captures: no panic; every call reported is also reported in the complete run at
/// the same times with the same operation, or its loss is visible in the stats; nothing
/// is invented.
pub(super) fn check_lossy<P: DbParser>(new: impl Fn() -> P, chunks: &[Chunk], whole: &[DbCall]) {
    for cap in [0, 5, 16, 64, 300] {
        let mut parser = new();
        let got = run(&mut parser, chunks, Mode::Lossy(cap));
        for call in &got {
            let twin = whole
                .iter()
                .find(|w| w.start_ns == call.start_ns && w.end_ns == call.end_ns);
            let twin = twin.unwrap_or_else(|| panic!("cap {cap}: invented {call:?}"));
            if call.operation.is_some() {
                assert_eq!(call.operation, twin.operation, "cap {cap}");
            }
            if call.collection.is_some() {
                assert_eq!(call.collection, twin.collection, "cap {cap}");
            }
            // An error whose code was cut off is still an error.
            assert!(call.status_code.is_none() || call.status_code == twin.status_code);
            assert_eq!(
                call.error_type.is_some(),
                twin.error_type.is_some(),
                "cap {cap}"
            );
        }
        let stats = parser.stats();
        if got.len() < whole.len() {
            assert!(
                stats.desync_bytes > 0 || stats.dropped_calls > 0,
                "cap {cap}: {} of {} calls, loss not counted: {stats:?}",
                got.len(),
                whole.len()
            );
        }
    }
}

/// (summary, status) of each call, for compact assertions.
pub(super) fn summaries(calls: &[DbCall]) -> Vec<(String, Option<String>)> {
    calls
        .iter()
        .map(|c| (c.summary.clone(), c.status_code.clone()))
        .collect()
}

pub(super) fn extra<'a>(call: &'a DbCall, key: &str) -> Option<&'a str> {
    call.extra
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}
