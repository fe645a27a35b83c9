//! Replays of real sessions recorded against memcached 1.6 (see `testdata/`).

use super::*;
use crate::protocols::db::testutil::{
    CutOperation, Split, TS_STEP, check_lossy, extra, fixture, fuzz_with_noise, operations, replay,
    replay_lossless, ts,
};

fn parser() -> MemcachedParser {
    MemcachedParser::new(ParseOptions::default())
}

#[test]
fn pymemcache_session() {
    let chunks = fixture("memcached_pymemcache.txt");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("set", "set ? ? ? ?", ""),
            ("get", "get ?", ""),
            ("get", "get ? ? ?", ""),
            ("set", "set ? ? ? ?", ""),
            ("incr", "incr ? ?", ""),
            ("decr", "decr ? ?", ""),
            ("incr", "incr ? ?", ""),
            ("add", "add ? ? ? ?", ""),
            ("replace", "replace ? ? ? ?", ""),
            ("append", "append ? ? ? ?", ""),
            ("prepend", "prepend ? ? ? ?", ""),
            ("gets", "gets ?", ""),
            ("cas", "cas ? ? ? ? ?", ""),
            ("cas", "cas ? ? ? ? ?", ""),
            ("touch", "touch ? ?", ""),
            ("delete", "delete ?", ""),
            ("delete", "delete ?", ""),
            ("set", "set ? ? ? ? noreply", ""),
            ("get", "get ?", ""),
            ("set", "set ? ? ? ?", ""),
            ("get", "get ?", ""),
            ("version", "version", ""),
            ("stats", "stats", ""),
            ("flush_all", "flush_all ?", ""),
        ]
    );
    let results: Vec<_> = calls
        .iter()
        .map(|c| extra(c, "sonde.db.memcached.result"))
        .collect();
    assert_eq!(results[0], Some("STORED"));
    assert_eq!(results[4], None, "incr answers a number");
    assert_eq!(results[6], Some("NOT_FOUND"));
    assert_eq!(results[7], Some("NOT_STORED"));
    assert_eq!(results[13], Some("EXISTS"));
    assert_eq!(results[14], Some("TOUCHED"));
    assert_eq!(results[15], Some("DELETED"));
    assert_eq!(results[16], Some("NOT_FOUND"));
    // Multi-get of three keys, one present.
    assert_eq!(extra(&calls[2], "db.response.returned_rows"), Some("1"));
    // noreply: no response, no duration; the next get pairs with the next response.
    assert_eq!(calls[17].end_ns, calls[17].start_ns);
    assert_eq!(calls[18].end_ns, calls[18].start_ns + TS_STEP);
    assert!(calls.iter().all(|c| c.namespace.is_none()));
}

#[test]
fn plain_text_is_the_command_line_without_data() {
    let chunks = fixture("memcached_pymemcache.txt");
    let opts = ParseOptions {
        obfuscate_literals: false,
        ..ParseOptions::default()
    };
    let calls = replay(&mut MemcachedParser::new(opts), &chunks, Split::Whole);
    assert_eq!(calls[0].query_text.as_deref(), Some("set user:1 0 60 3"));
    assert_eq!(
        calls[2].query_text.as_deref(),
        Some("get user:1 missing user:2")
    );
    assert!(
        calls
            .iter()
            .all(|c| !c.query_text.as_deref().unwrap().contains("ada"))
    );
}

#[test]
fn errors_meta_commands_and_a_lossy_big_value() {
    let chunks = fixture("memcached_errors.txt");
    // Nothing lost: the 100 kB value was captured as two lossy writes, its length carried
    // us over.
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("unknown", "? ?", "ERROR"),
            ("set", "set ? ? ? ?", "CLIENT_ERROR"),
            ("set", "set ? ? ? ?", ""),
            ("gat", "gat ? ? ?", ""),
            ("gats", "gats ? ?", ""),
            ("set", "set ? ? ? ?", "SERVER_ERROR"),
            ("mn", "mn", ""),
            ("ms", "ms ? ? ?", ""),
            ("mg", "mg ? ? ? ?", ""),
            ("mg", "mg ? ?", ""),
            ("md", "md ?", ""),
            ("ma", "ma ? ? ?", ""),
            ("verbosity", "verbosity ?", ""),
            ("incr", "incr ? ?", "CLIENT_ERROR"),
        ]
    );
    assert_eq!(
        calls[1].error_message.as_deref(),
        Some("bad command line format")
    );
    assert_eq!(
        calls[5].error_message.as_deref(),
        Some("object too large for cache")
    );
    assert_eq!(extra(&calls[3], "db.response.returned_rows"), Some("1"));
    assert_eq!(extra(&calls[9], "sonde.db.memcached.result"), Some("EN"));
    // `mg ... v` answers `VA 2` and a data block: the call ends with the block.
    assert_eq!(calls[8].end_ns, ts(18));
}

const SESSIONS: [&str; 2] = ["memcached_pymemcache.txt", "memcached_errors.txt"];

#[test]
fn lossy_captures_never_invent_calls() {
    for name in SESSIONS {
        let chunks = fixture(name);
        let whole = replay(&mut parser(), &chunks, Split::Whole);
        check_lossy(parser, &chunks, &whole, CutOperation::Dropped);
    }
}

#[test]
fn fuzz_entry_point_survives_noise() {
    for (seed, name) in (1..).zip(SESSIONS) {
        fuzz_with_noise(MemcachedParser::new, name, seed);
    }
}

#[test]
fn sniff_accepts_memcached_and_refuses_others() {
    for chunk in fixture("memcached_pymemcache.txt")
        .iter()
        .filter(|c| c.gap == 0)
    {
        if chunk.side == Side::Client {
            assert!(sniff(Side::Client, &chunk.head), "{:?}", chunk.head);
        }
    }
    assert!(sniff(Side::Server, b"VALUE user:1 0 3\r\nada\r\nEND\r\n"));
    assert!(sniff(Side::Server, b"STORED\r\n"));
    for other in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"get\r\n",
        b"get user:1",
        b"\x80\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x05",
        b"SET k v\r\n",
    ] {
        assert!(!sniff(Side::Client, other), "{other:?}");
    }
    assert!(!sniff(Side::Server, b"+OK\r\n"));
    assert!(!sniff(Side::Server, b"HTTP/1.1 200 OK\r\n"));
}
