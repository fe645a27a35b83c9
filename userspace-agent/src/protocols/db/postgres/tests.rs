//! Recorded sessions against PostgreSQL 15 (testdata/pg-*.hex, see testdata/README.md).

use super::*;
use crate::protocols::db::testing::{Mode, check_lossy, check_splits, extra, load, run, summaries};

fn parser() -> PostgresParser {
    PostgresParser::new(ParseOptions::default())
}

fn s(summary: &str, status: Option<&str>) -> (String, Option<String>) {
    (summary.to_owned(), status.map(str::to_owned))
}

#[test]
fn psql_simple_queries_copy_and_errors() {
    let chunks = load("pg-psql.hex");
    assert!(sniff(Side::Client, &chunks[0].bytes), "SSLRequest");
    let calls = check_splits(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        vec![
            s("CREATE TABLE users", None),
            s("INSERT users", None),
            s("SELECT users", None),
            s("UPDATE users", None),
            s("SELECT no_such_table", Some("42P01")),
            s("SELEC", Some("42601")),
            s("BEGIN", None),
            s("DELETE users", None),
            s("COMMIT", None),
            s("CREATE TABLE items", None),
            s("COPY items", None),
            s("COPY", None),
            s("SELECT", None),
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
        assert_eq!(c.end_ns, c.start_ns + chunks_taken, "{c:?}");
    }
    // No secret from the SCRAM exchange in any attribute.
    let all = format!("{calls:?}");
    assert!(!all.contains("SCRAM") && !all.contains("alice"), "{all}");
    check_lossy(parser, &chunks, &calls);
}

#[test]
fn psycopg2_client_side_parameters() {
    let chunks = load("pg-psycopg2.hex");
    let calls = check_splits(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        vec![
            s("BEGIN", None),
            s("INSERT users", None),
            s("SELECT users", None),
            s("COMMIT", None)
        ]
    );
    assert_eq!(
        calls[1].query_text.as_deref(),
        Some("INSERT INTO users (id, name, email) VALUES (?)")
    );
    check_lossy(parser, &chunks, &calls);
}

#[test]
fn psycopg3_extended_prepared_and_pipelined() {
    let chunks = load("pg-psycopg3.hex");
    assert!(sniff(Side::Client, &chunks[0].bytes), "startup message");
    let calls = check_splits(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        vec![
            // Parse of `_pg3_0` then two executions of it.
            s("SELECT users", None),
            s("SELECT users", None),
            s("UPDATE users", None),
            s("SELECT missing", Some("42P01")),
            // One pipeline: three executions before one Sync.
            s("INSERT items", None),
            s("INSERT items", None),
            s("SELECT items", None),
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
    check_lossy(parser, &chunks, &calls);
}

#[test]
fn joined_mid_stream_reports_unknown_statements_by_name() {
    let chunks = load("pg-psycopg3.hex");
    // Attach after the Parse of `_pg3_0` was answered: start at its first Bind.
    let first_bind = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.bytes.first() == Some(&b'B'))
        .unwrap();
    let rest = &chunks[first_bind..];
    assert!(
        !sniff_mid_stream(Side::Client, &rest[0].bytes),
        "Bind first: not a query"
    );
    let mut p = parser();
    let calls = run(&mut p, rest, Mode::Whole);
    assert_eq!(calls[0].summary, "EXECUTE _pg3_0");
    assert_eq!(calls[0].operation, None);
    assert_eq!(calls[0].query_text, None);
    assert_eq!(extra(&calls[0], "sonde.db.statement_name"), Some("_pg3_0"));
    assert_eq!(calls[0].namespace, None);
    // The UPDATE's Parse is seen: known again.
    assert_eq!(calls[2].summary, "UPDATE users");

    // A pooled connection found at a simple query.
    let chunks = load("pg-psql.hex");
    let q = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.bytes.first() == Some(&b'Q'))
        .unwrap();
    assert!(sniff_mid_stream(Side::Client, &chunks[q].bytes));
    let mut p = parser();
    let calls = run(&mut p, &chunks[q..], Mode::Whole);
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
    let chunks = load("pg-psql.hex");
    let mut p = parser();
    let mut out = Vec::new();
    p.push(
        Side::Client,
        &Segment::complete(0, &chunks[0].bytes),
        &mut out,
    );
    // The server says 'S': TLS bytes follow.
    p.push(Side::Server, &Segment::complete(1, b"S"), &mut out);
    for (i, c) in chunks.iter().enumerate().skip(2) {
        p.push(c.side, &Segment::complete(i as u64, &c.bytes), &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(p.stats().tls_upgrades, 1);
}

#[test]
fn fuzz_entry_point_survives_noise() {
    let chunks = load("pg-psycopg3.hex");
    let mut data = Vec::new();
    let mut rng = crate::protocols::db::testing::Rng(7);
    for c in &chunks {
        for piece in c.bytes.chunks(40) {
            let side = u8::from(c.side == Side::Server);
            data.push(((piece.len() as u8 - 1) << 2) | side | (rng.below(4) as u8 & 2));
            data.extend_from_slice(piece);
        }
    }
    crate::protocols::fuzz::db(PostgresParser::new, &data);
    for i in 0..300 {
        let mut noisy = data.clone();
        let at = rng.below(noisy.len());
        noisy[at] = rng.below(256) as u8;
        crate::protocols::fuzz::db(PostgresParser::new, &noisy[..noisy.len() - i % 7]);
    }
}
