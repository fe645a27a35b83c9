//! Recorded sessions against PostgreSQL 15 (testdata/postgres_*.txt, see testdata/README.md).

use super::*;
use crate::protocols::db::testutil::{
    CutOperation, Split, TS_STEP, check_lossy, extra, fixture, fuzz_with_noise, replay,
    replay_lossless, replay_tls_resumed, summaries,
};

fn parser() -> PostgresParser {
    PostgresParser::new(ParseOptions::default())
}

#[test]
fn psql_simple_queries_copy_and_errors() {
    let chunks = fixture("postgres_psql.txt");
    assert!(sniff(Side::Client, &chunks[0].head), "SSLRequest");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        [
            ("CREATE TABLE users", None),
            ("INSERT users", None),
            ("SELECT users", None),
            ("UPDATE users", None),
            ("SELECT no_such_table", Some("42P01")),
            ("SELEC", Some("42601")),
            ("BEGIN", None),
            ("DELETE users", None),
            ("COMMIT", None),
            ("CREATE TABLE items", None),
            ("COPY items", None),
            ("COPY", None),
            ("SELECT", None),
        ]
    );
    let select = &calls[2];
    assert_eq!(select.namespace.as_deref(), Some("shop"));
    assert_eq!(select.operation.as_deref(), Some("SELECT"));
    assert_eq!(select.collection.as_deref(), Some("users"));
    assert_eq!(
        select.query_text.as_deref(),
        Some("SELECT id, name FROM users WHERE name = ? AND id IN (?);")
    );
    assert_eq!(extra(select, "db.response.returned_rows"), Some("1"));
    assert_eq!(extra(&calls[1], "sonde.db.affected_rows"), Some("2"));
    assert_eq!(extra(&calls[10], "sonde.db.affected_rows"), Some("3"));
    let err = &calls[4];
    assert_eq!(err.error_type.as_deref(), Some("42P01"));
    assert_eq!(
        err.error_message.as_deref(),
        Some("relation \"no_such_table\" does not exist")
    );
    // Each call ends at the server chunk right after its query; COPY FROM STDIN waits for
    // the server's CopyInResponse and the client's data first.
    for (i, c) in calls.iter().enumerate() {
        let chunks_taken = if i == 10 { 3 } else { 1 };
        assert_eq!(c.end_ns, c.start_ns + chunks_taken * TS_STEP, "{c:?}");
    }
    // No secret from the SCRAM exchange in any attribute.
    let all = format!("{calls:?}");
    assert!(!all.contains("SCRAM") && !all.contains("alice"), "{all}");
    check_lossy(parser, &chunks, &calls, CutOperation::Reported);
}

#[test]
fn psycopg2_client_side_parameters() {
    let chunks = fixture("postgres_psycopg2.txt");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        [
            ("BEGIN", None),
            ("INSERT users", None),
            ("SELECT users", None),
            ("COMMIT", None)
        ]
    );
    assert_eq!(
        calls[1].query_text.as_deref(),
        Some("INSERT INTO users (id, name, email) VALUES (?)")
    );
    check_lossy(parser, &chunks, &calls, CutOperation::Reported);
}

#[test]
fn psycopg3_extended_prepared_and_pipelined() {
    let chunks = fixture("postgres_psycopg3.txt");
    assert!(sniff(Side::Client, &chunks[0].head), "startup message");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        [
            // Parse of `_pg3_0` then two executions of it.
            ("SELECT users", None),
            ("SELECT users", None),
            ("UPDATE users", None),
            ("SELECT missing", Some("42P01")),
            // One pipeline: three executions before one Sync.
            ("INSERT items", None),
            ("INSERT items", None),
            ("SELECT items", None),
        ]
    );
    assert_eq!(
        calls[0].query_text.as_deref(),
        Some("SELECT name FROM users WHERE id = $1")
    );
    let pipelined: Vec<_> = calls[4..].iter().map(|c| (c.start_ns, c.end_ns)).collect();
    assert!(
        pipelined.windows(2).all(|w| w[0].1 == w[1].1),
        "{pipelined:?}"
    );
    assert_eq!(extra(&calls[6], "db.response.returned_rows"), Some("1"));
    check_lossy(parser, &chunks, &calls, CutOperation::Reported);
}

#[test]
fn joined_mid_stream_reports_unknown_statements_by_name() {
    let chunks = fixture("postgres_psycopg3.txt");
    // Attach after the Parse of `_pg3_0` was answered: start at its first Bind.
    let first_bind = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.head.first() == Some(&b'B'))
        .unwrap();
    let rest = &chunks[first_bind..];
    assert!(
        !sniff_mid_stream(Side::Client, &rest[0].head),
        "Bind first: not a query"
    );
    let calls = replay(&mut parser(), rest, Split::Whole);
    assert_eq!(calls[0].summary, "EXECUTE _pg3_0");
    assert_eq!(calls[0].operation, None);
    assert_eq!(calls[0].query_text, None);
    assert_eq!(extra(&calls[0], "sonde.db.statement_name"), Some("_pg3_0"));
    assert_eq!(calls[0].namespace, None);
    // The UPDATE's Parse is seen: known again.
    assert_eq!(calls[2].summary, "UPDATE users");

    // A pooled connection found at a simple query.
    let chunks = fixture("postgres_psql.txt");
    let q = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.head.first() == Some(&b'Q'))
        .unwrap();
    assert!(sniff_mid_stream(Side::Client, &chunks[q].head));
    let calls = replay(&mut parser(), &chunks[q..], Split::Whole);
    assert_eq!(calls[0].summary, "CREATE TABLE users");
    assert_eq!(calls.len(), 13);
}

#[test]
fn sniff_rejects_other_protocols() {
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"Q\x00\x00\x00\x05",
        b"Q\x00\x00\x00\x09SEL\x00",
    ] {
        assert!(!sniff(Side::Client, bytes), "{bytes:?}");
    }
    assert!(!sniff_mid_stream(
        Side::Client,
        b"Q\x00\x00\x00\x09SEL\x00extra"
    ));
    assert!(!sniff_mid_stream(Side::Server, b"Q\x00\x00\x00\x08SEL\x00"));
    assert!(sniff_mid_stream(Side::Client, b"Q\x00\x00\x00\x08SEL\x00"));
}

#[test]
fn ssl_accepted_stops_parsing() {
    let chunks = fixture("postgres_psql.txt");
    let mut p = parser();
    let mut out = Vec::new();
    p.push(
        Side::Client,
        &Segment::complete(0, &chunks[0].head),
        &mut out,
    );
    // The server says 'S': TLS bytes follow.
    p.push(Side::Server, &Segment::complete(1, b"S"), &mut out);
    for (i, c) in chunks.iter().enumerate().skip(2) {
        p.push(c.side, &Segment::complete(i as u64, &c.head), &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(p.stats().tls_upgrades, 1);
}

/// The sessions as `sslmode=require` makes them: the server answers the SSLRequest with
/// 'S', ciphertext follows on the socket, and the session goes on in OpenSSL's
/// plaintext from the startup message: the same calls as in the clear.
#[test]
fn ssl_accepted_then_tls_plaintext_gives_the_same_calls() {
    for name in ["postgres_psql.txt", "postgres_psycopg2.txt"] {
        let chunks = fixture(name);
        let plain = replay_lossless(parser, &chunks);
        assert_eq!(chunks[1].head, b"N", "{name}: the SSLRequest was refused");
        let mut tls = chunks.clone();
        tls[1].head = b"S".to_vec();
        let mut p = parser();
        let calls = replay_tls_resumed(&mut p, &tls, 2);
        assert_eq!(calls, plain, "{name}");
        assert_eq!(
            p.stats(),
            ParserStats {
                tls_upgrades: 1,
                ..ParserStats::default()
            },
            "{name}: nothing lost"
        );
        assert_eq!(calls[1].namespace.as_deref(), Some("shop"), "{name}");
    }
}

#[test]
fn fuzz_entry_point_survives_noise() {
    for (name, seed) in [
        ("postgres_psql.txt", 5),
        ("postgres_psycopg2.txt", 6),
        ("postgres_psycopg3.txt", 7),
    ] {
        fuzz_with_noise(PostgresParser::new, name, seed);
    }
}
