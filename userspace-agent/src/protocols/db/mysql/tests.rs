//! Recorded sessions against MariaDB 10.11 (testdata/my-*.hex, see testdata/README.md).

use super::*;
use crate::protocols::db::testing::{Mode, check_lossy, check_splits, extra, load, run, summaries};

fn parser() -> MysqlParser {
    MysqlParser::new(ParseOptions::default())
}

fn s(summary: &str, status: Option<&str>) -> (String, Option<String>) {
    (summary.to_owned(), status.map(str::to_owned))
}

#[test]
fn mariadb_client_queries_and_errors() {
    let chunks = load("my-client.hex");
    assert!(sniff(Side::Server, &chunks[0].bytes), "greeting");
    assert!(!sniff(Side::Client, &chunks[0].bytes));
    let calls = check_splits(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        vec![
            s("CREATE TABLE users", None),
            s("INSERT users", None),
            s("SELECT users", None),
            s("UPDATE users", None),
            s("SELECT no_such_table", Some("1146")),
            s("SELEC", Some("1064")),
            s("SELECT", None),
            // COM_INIT_DB `mysql` was refused (1044): no span, namespace unchanged.
            s("SELECT shop.users", None),
        ]
    );
    let select = &calls[2];
    assert_eq!(select.namespace.as_deref(), Some("shop"));
    assert_eq!(
        select.query_text.as_deref(),
        Some("SELECT id, name FROM users WHERE name = ? OR id IN (?)")
    );
    assert_eq!(extra(select, "db.response.returned_rows"), Some("2"));
    assert_eq!(extra(&calls[1], "sonde.db.affected_rows"), Some("2"));
    assert_eq!(calls[4].error_type.as_deref(), Some("1146"));
    assert_eq!(extra(&calls[4], "sonde.db.sqlstate"), Some("42S02"));
    assert_eq!(
        calls[4].error_message.as_deref(),
        Some("Table 'shop.no_such_table' doesn't exist")
    );
    assert_eq!(calls[7].namespace.as_deref(), Some("shop"));
    assert_eq!(extra(&calls[7], "db.response.returned_rows"), Some("1"));
    check_lossy(parser, &chunks, &calls);
}

#[test]
fn mariadb_detected_from_the_greeting() {
    let chunks = load("my-pymysql.hex");
    let calls = check_splits(parser, &chunks);
    let mut p = parser();
    run(&mut p, &chunks[..1], Mode::Whole);
    assert_eq!(p.system, DbSystem::Mariadb);
    assert!(
        summaries(&calls).contains(&s("INSERT users", None)),
        "{calls:?}"
    );
    let insert = calls.iter().find(|c| c.summary == "INSERT users").unwrap();
    assert_eq!(
        insert.query_text.as_deref(),
        Some("INSERT INTO users (id, name, email) VALUES (?)")
    );
    check_lossy(parser, &chunks, &calls);
}

#[test]
fn failed_authentication_gives_no_call() {
    let chunks = load("my-authfail.hex");
    let calls = check_splits(parser, &chunks);
    assert!(calls.is_empty(), "{calls:?}");
}

#[test]
fn connector_server_side_prepared_statements() {
    let chunks = load("my-connector.hex");
    let calls = check_splits(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        vec![
            s("SET", None),
            s("SET", None),
            s("SELECT users", None),
            s("SELECT users", None),
            s("UPDATE users", None),
            // The prepare itself failed: reported, with the error.
            s("SELECT missing", Some("1146")),
            s("COMMIT", None),
        ]
    );
    assert_eq!(
        calls[2].query_text.as_deref(),
        Some("SELECT id, name FROM users WHERE id >= ?")
    );
    assert_eq!(extra(&calls[2], "db.response.returned_rows"), Some("3"));
    assert_eq!(extra(&calls[3], "db.response.returned_rows"), Some("2"));
    assert_eq!(extra(&calls[4], "sonde.db.affected_rows"), Some("1"));
    check_lossy(parser, &chunks, &calls);
}

#[test]
fn joined_mid_stream_reports_unknown_statements_by_id() {
    let chunks = load("my-connector.hex");
    // Attach after the first prepare: start at the first COM_STMT_EXECUTE.
    let at = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.bytes.get(4) == Some(&COM_STMT_EXECUTE))
        .unwrap();
    let mut p = parser();
    let calls = run(&mut p, &chunks[at..], Mode::Whole);
    assert_eq!(calls[0].summary, "EXECUTE");
    assert_eq!(calls[0].operation, None);
    assert_eq!(calls[0].query_text, None);
    assert_eq!(extra(&calls[0], "sonde.db.statement_id"), Some("1"));

    let chunks = load("my-client.hex");
    let q = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.bytes.get(4) == Some(&COM_QUERY))
        .unwrap();
    assert!(sniff_mid_stream(Side::Client, &chunks[q].bytes));
    assert!(!sniff_mid_stream(Side::Server, &chunks[q].bytes));
    let mut p = parser();
    let calls = run(&mut p, &chunks[q..], Mode::Whole);
    assert_eq!(calls.len(), 8);
    assert_eq!(calls[0].summary, "CREATE TABLE users");
}

#[test]
fn sniff_rejects_other_protocols() {
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"+OK\r\n",
        b"\x05\x00\x00\x00\x03SEL",
        b"\x04\x00\x00\x01\x03SEL",
    ] {
        assert!(!sniff(Side::Server, bytes), "{bytes:?}");
        assert!(!sniff_mid_stream(Side::Client, bytes), "{bytes:?}");
    }
    assert!(sniff_mid_stream(Side::Client, b"\x04\x00\x00\x00\x03SEL"));
}

#[test]
fn fuzz_entry_point_survives_noise() {
    let chunks = load("my-connector.hex");
    let mut data = Vec::new();
    let mut rng = crate::protocols::db::testing::Rng(11);
    for c in &chunks {
        for piece in c.bytes.chunks(40) {
            let side = u8::from(c.side == Side::Server);
            data.push(((piece.len() as u8 - 1) << 2) | side | (rng.below(4) as u8 & 2));
            data.extend_from_slice(piece);
        }
    }
    crate::protocols::fuzz::db(MysqlParser::new, &data);
    for i in 0..300 {
        let mut noisy = data.clone();
        let at = rng.below(noisy.len());
        noisy[at] = rng.below(256) as u8;
        crate::protocols::fuzz::db(MysqlParser::new, &noisy[..noisy.len() - i % 7]);
    }
}
