//! Replays of real sessions recorded against redis-server 7.0 (see `testdata/`).

use super::*;
use crate::protocols::db::testutil::{
    CutOperation, Split, TS_STEP, check_lossy, extra, fixture, fuzz_with_noise, operations, replay,
    replay_every_way, replay_lossless, ts,
};

fn parser() -> RedisParser {
    RedisParser::new(ParseOptions::default())
}

fn plain() -> RedisParser {
    RedisParser::new(ParseOptions {
        obfuscate_literals: false,
        ..ParseOptions::default()
    })
}

#[test]
fn redis_cli_session_resp2() {
    let chunks = fixture("redis_cli.txt");
    let (calls, stats) = replay_every_way(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("PING", "PING", ""),
            ("SET", "SET ? ?", ""),
            ("GET", "GET ?", ""),
            ("GET", "GET ?", ""),
            ("SELECT", "SELECT ?", ""),
            ("SET", "SET ? ?", ""),
            ("INCR", "INCR ?", ""),
            ("HSET", "HSET ? ? ? ? ?", ""),
            ("HGETALL", "HGETALL ?", ""),
            ("LPUSH", "LPUSH ? ? ? ?", ""),
            ("GET", "GET ?", "WRONGTYPE"),
            ("NOSUCHCMD", "NOSUCHCMD ? ?", "ERR"),
            ("AUTH", "AUTH ?", "ERR"),
            ("CLIENT SETNAME", "CLIENT SETNAME ?", ""),
            ("MGET", "MGET ? ? ?", ""),
            ("DEL", "DEL ? ?", ""),
            ("EXISTS", "EXISTS ?", ""),
        ]
    );
    // redis-cli's first command, COMMAND DOCS, got a reply larger than the capture: the
    // gap falls inside nested arrays, so that call is dropped and the rest resyncs.
    assert_eq!(stats.dropped_calls, 1);
    assert!(stats.desync_bytes > 100_000, "{stats:?}");
    // Namespace: unknown until SELECT 2 succeeded, then "2" (SELECT's own span included).
    let namespaces: Vec<_> = calls.iter().map(|c| c.namespace.as_deref()).collect();
    assert_eq!(namespaces[3], None);
    assert!(namespaces[4..].iter().all(|n| *n == Some("2")));
    assert_eq!(calls[0].summary, "PING");
    // Each span runs from its command's segment to its reply's.
    for call in &calls {
        assert_eq!(call.end_ns, call.start_ns + TS_STEP, "{call:?}");
    }
    let wrongtype = &calls[10];
    assert_eq!(wrongtype.status_code.as_deref(), Some("WRONGTYPE"));
    assert_eq!(
        wrongtype.error_message.as_deref(),
        Some("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    // Redis echoes an unknown command's arguments: not kept when obfuscating.
    assert_eq!(
        calls[11].error_message.as_deref(),
        Some("ERR unknown command 'NOSUCHCMD'")
    );
}

#[test]
fn plain_text_shows_arguments_but_never_credentials() {
    let chunks = fixture("redis_cli.txt");
    let calls = replay(&mut plain(), &chunks, Split::Whole);
    let texts: Vec<_> = calls
        .iter()
        .filter_map(|c| c.query_text.as_deref())
        .collect();
    assert!(texts.contains(&"SET greeting hello"));
    assert!(texts.contains(&"HSET user:1 name ada age 36"));
    assert!(texts.contains(&"AUTH ?"));
    assert!(texts.contains(&"CLIENT SETNAME app-1"));
    for call in &calls {
        assert!(!format!("{call:?}").contains("s3cr3t"), "{call:?}");
    }
    assert!(
        calls[11]
            .error_message
            .as_deref()
            .unwrap()
            .contains("with args beginning with")
    );
}

#[test]
fn resp3_session_with_maps_sets_doubles_and_nulls() {
    let chunks = fixture("redis_cli_resp3.txt");
    let (calls, stats) = replay_every_way(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("HELLO", "HELLO ?", ""),
            ("HSET", "HSET ? ? ? ? ?", ""),
            ("HGETALL", "HGETALL ?", ""),
            ("SADD", "SADD ? ? ?", ""),
            ("SMEMBERS", "SMEMBERS ?", ""),
            ("ZADD", "ZADD ? ? ?", ""),
            ("ZSCORE", "ZSCORE ? ?", ""),
            ("GET", "GET ?", ""),
            ("LPUSH", "LPUSH ? ?", "WRONGTYPE"),
        ]
    );
    assert_eq!(stats.dropped_calls, 1, "COMMAND DOCS, lossy");
}

#[test]
fn every_resp3_type_frames() {
    let chunks = fixture("redis_resp3_types.txt");
    let calls = replay_lossless(parser, &chunks);
    let ops: Vec<_> = calls
        .iter()
        .map(|c| c.query_text.clone().unwrap())
        .collect();
    let kinds = [
        "string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib", "push",
        "verbatim", "true", "false",
    ];
    assert_eq!(ops.len(), 2 + kinds.len(), "{ops:?}");
    assert_eq!(ops[0], "HELLO ?");
    assert!(ops[1..=kinds.len()].iter().all(|t| t == "DEBUG PROTOCOL ?"));
    assert_eq!(calls[1].operation.as_deref(), Some("DEBUG PROTOCOL"));
    let eval = calls.last().unwrap();
    assert_eq!(eval.operation.as_deref(), Some("EVAL"));
    assert_eq!(eval.error_type.as_deref(), Some("MYERR"));
    // The plain text shows which type each call asked for, in order: pairing held
    // across the attribute and the push that precede real replies.
    let calls = replay(&mut plain(), &chunks, Split::Whole);
    for (call, kind) in calls[1..].iter().zip(kinds) {
        assert_eq!(
            call.query_text.as_deref(),
            Some(format!("DEBUG PROTOCOL {kind}").as_str())
        );
    }
}

#[test]
fn pipeline_transaction_and_big_value() {
    let chunks = fixture("redis_py_pipeline.txt");
    // Nothing lost: the 20 kB value was captured head + tail only, the bulk length carried
    // us over.
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("SET", "SET ? ?", ""),
            ("INCRBY", "INCRBY ? ?", ""),
            ("GET", "GET ?", ""),
            ("LPUSH", "LPUSH ? ?", "WRONGTYPE"),
            ("GET", "GET ?", ""),
            ("MULTI", "MULTI", ""),
            ("SET", "SET ? ?", ""),
            ("INCRBY", "INCRBY ? ?", ""),
            ("HSET", "HSET ? ? ?", ""),
            ("GET", "GET ?", ""),
            ("EXEC", "EXEC", ""),
            ("SET", "SET ? ?", ""),
            ("GET", "GET ?", ""),
            ("SELECT", "SELECT ?", ""),
            ("PING", "PING", ""),
        ]
    );
    // A pipeline is one write and one read: all its calls share both timestamps.
    assert!(
        calls[..5]
            .iter()
            .all(|c| c.start_ns == ts(0) && c.end_ns == ts(1))
    );
    let queued: Vec<_> = calls
        .iter()
        .map(|c| extra(c, "sonde.db.redis.queued") == Some("true"))
        .collect();
    assert_eq!(queued[5..11], [false, true, true, true, true, false]);
    assert_eq!(calls[14].namespace.as_deref(), Some("3"));
    // With obfuscation off the big value shows its captured start, marked as cut.
    let calls = replay(&mut plain(), &chunks, Split::Whole);
    let big = calls[11].query_text.as_deref().unwrap();
    assert!(
        big.starts_with("SET big vvvv") && big.ends_with('…'),
        "{big}"
    );
}

#[test]
fn pubsub_resp2_skips_published_messages() {
    let chunks = fixture("redis_py_pubsub.txt");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("SUBSCRIBE", "SUBSCRIBE ? ?", ""),
            ("PSUBSCRIBE", "PSUBSCRIBE ?", ""),
            ("PING", "PING ?", ""),
            ("UNSUBSCRIBE", "UNSUBSCRIBE", ""),
            ("PUNSUBSCRIBE", "PUNSUBSCRIBE", ""),
        ]
    );
}

#[test]
fn pubsub_resp3_pushes_are_not_replies() {
    let chunks = fixture("redis_resp3_pubsub.txt");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("HELLO", "HELLO ?", ""),
            ("SUBSCRIBE", "SUBSCRIBE ? ?", ""),
            ("GET", "GET ?", ""),
            ("UNSUBSCRIBE", "UNSUBSCRIBE", ""),
            ("PING", "PING", ""),
        ]
    );
    // GET's reply (`_`) came between two published messages.
    assert_eq!(calls[2].start_ns, ts(5));
    assert_eq!(calls[2].end_ns, ts(6));
}

#[test]
fn client_reply_inline_reset_and_aborted_transaction() {
    let chunks = fixture("redis_client_reply.txt");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [
            ("CLIENT REPLY", "CLIENT REPLY ?", ""),
            ("SET", "SET ? ?", ""),
            ("GET", "GET ?", ""),
            ("CLIENT REPLY", "CLIENT REPLY ?", ""),
            ("SET", "SET ? ?", ""),
            ("INCR", "INCR ?", ""),
            ("CLIENT REPLY", "CLIENT REPLY ?", ""),
            ("PING", "PING", ""),
            ("GET", "GET ?", ""),
            ("SELECT", "SELECT ?", ""),
            ("RESET", "RESET", ""),
            ("MULTI", "MULTI", ""),
            ("SET", "SET ? ?", ""),
            ("INCR", "INCR ? ?", "ERR"),
            ("EXEC", "EXEC", "EXECABORT"),
        ]
    );
    // Unanswered commands have no duration; GET after SKIP pairs with the first reply.
    assert_eq!(calls[1].end_ns, calls[1].start_ns);
    assert_eq!((calls[2].start_ns, calls[2].end_ns), (ts(2), ts(3)));
    assert_eq!(calls[9].namespace.as_deref(), Some("5"));
    assert_eq!(calls[10].namespace.as_deref(), Some("0"));
}

#[test]
fn monitor_stops_parsing() {
    let chunks = fixture("redis_monitor.txt");
    let (calls, stats) = replay_every_way(parser, &chunks);
    assert_eq!(
        operations(&calls),
        [("PING", "PING", ""), ("MONITOR", "MONITOR", "")]
    );
    assert!(stats.unparsed_bytes > 100, "{stats:?}");
    assert_eq!(stats.dropped_calls, 0);
}

const LOSSY_SESSIONS: [&str; 7] = [
    "redis_cli.txt",
    "redis_cli_resp3.txt",
    "redis_py_pipeline.txt",
    "redis_py_pubsub.txt",
    "redis_resp3_pubsub.txt",
    "redis_resp3_types.txt",
    "redis_client_reply.txt",
];

#[test]
fn lossy_captures_never_invent_calls() {
    // Losing bytes may drop calls, never mis-pair them.
    for name in LOSSY_SESSIONS {
        let chunks = fixture(name);
        let whole = replay(&mut plain(), &chunks, Split::Whole);
        check_lossy(plain, &chunks, &whole, CutOperation::Dropped);
    }
}

#[test]
fn fuzz_entry_point_survives_noise() {
    for (seed, name) in (1..).zip(LOSSY_SESSIONS.into_iter().chain(["redis_monitor.txt"])) {
        fuzz_with_noise(RedisParser::new, name, seed);
    }
}

#[test]
fn attaching_mid_stream_resyncs_at_the_next_command() {
    let chunks = fixture("redis_cli.txt");
    // Start at the GET whose reply is WRONGTYPE, but first the tail of a reply.
    let start = chunks
        .iter()
        .position(|c| c.head.ends_with(b"$5\r\nqueue\r\n") && c.head.starts_with(b"*2"))
        .unwrap();
    let mut parser = parser();
    let mut out = Vec::new();
    parser.push(Side::Server, &Segment::complete(1, b":3\r\n"), &mut out);
    for (i, chunk) in chunks[start..].iter().enumerate() {
        parser.push(chunk.side, &Segment::complete(ts(i), &chunk.head), &mut out);
    }
    assert_eq!(out.len(), 7);
    assert_eq!(out[0].error_type.as_deref(), Some("WRONGTYPE"));
    assert_eq!(parser.stats().desync_bytes, 4);
}

#[test]
fn sniff_accepts_redis_and_refuses_others() {
    let sessions = [fixture("redis_cli.txt"), fixture("redis_py_pipeline.txt")];
    // Whole chunks only: the lossy ones continue a reply begun earlier.
    for chunk in sessions.iter().flatten().filter(|c| c.gap == 0) {
        match chunk.side {
            Side::Client => assert!(sniff(Side::Client, &chunk.head), "{:?}", chunk.head),
            Side::Server => assert!(sniff(Side::Server, &chunk.head), "{:?}", chunk.head),
        }
    }
    assert!(sniff(Side::Client, b"PING\r\n"));
    assert!(sniff(Side::Client, b"GET k1\r\n"));
    for other in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"get user:1\r\n",
        b"set k 0 0 3\r\nabc\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"*\r\n",
        b"*0\r\n",
        b"POST /x HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        assert!(!sniff(Side::Client, other), "{other:?}");
    }
    assert!(!sniff(Side::Server, b"HTTP/1.1 200 OK\r\n"));
    assert!(!sniff(Side::Server, b"J\x00\x00\x00\x0a8.0.36\x00"));
    assert!(!sniff(Side::Server, b"STORED\r\n"));
}
