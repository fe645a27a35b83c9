//! Recorded sessions against MariaDB 10.11 (testdata/mysql_*.txt, see testdata/README.md).

use super::*;
use crate::protocols::db::testutil::{
    Chunk, CutOperation, Split, TS_STEP, check_lossy, extra, fixture, fuzz_with_noise, replay,
    replay_lossless, replay_tls_resumed, summaries,
};

fn parser() -> MysqlParser {
    MysqlParser::new(ParseOptions::default())
}

#[test]
fn mariadb_client_queries_and_errors() {
    let chunks = fixture("mysql_client.txt");
    assert!(sniff(Side::Server, &chunks[0].head), "greeting");
    assert!(!sniff(Side::Client, &chunks[0].head));
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        [
            ("CREATE TABLE users", None),
            ("INSERT users", None),
            ("SELECT users", None),
            ("UPDATE users", None),
            ("SELECT no_such_table", Some("1146")),
            ("SELEC", Some("1064")),
            ("SELECT", None),
            // COM_INIT_DB `mysql` was refused (1044): no span, namespace unchanged.
            ("SELECT shop.users", None),
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
    check_lossy(parser, &chunks, &calls, CutOperation::Reported);
}

#[test]
fn mariadb_detected_from_the_greeting() {
    let chunks = fixture("mysql_pymysql.txt");
    let calls = replay_lossless(parser, &chunks);
    let mut p = parser();
    replay(&mut p, &chunks[..1], Split::Whole);
    assert_eq!(p.system, DbSystem::Mariadb);
    assert!(
        summaries(&calls).contains(&("INSERT users", None)),
        "{calls:?}"
    );
    let insert = calls.iter().find(|c| c.summary == "INSERT users").unwrap();
    assert_eq!(
        insert.query_text.as_deref(),
        Some("INSERT INTO users (id, name, email) VALUES (?)")
    );
    check_lossy(parser, &chunks, &calls, CutOperation::Reported);
}

/// PyMySQL's session with `ssl`: after the greeting the client sends an SSL request (the
/// handshake response's first 32 bytes with `CLIENT_SSL`, sequence 1), ciphertext
/// follows, and inside TLS come the full handshake response (sequence 2), the server's
/// OK (3) and the commands: the same calls as in the clear, still MariaDB's.
#[test]
fn ssl_request_then_tls_plaintext_gives_the_same_calls() {
    let chunks = fixture("mysql_pymysql.txt");
    let plain = replay_lossless(parser, &chunks);
    let ssl_flag = |packet: &mut Vec<u8>| packet[5] |= (CLIENT_SSL >> 8) as u8;
    let mut response = chunks[1].clone();
    assert_eq!(&response.head[3..5], [1, 0x0d], "the handshake response");
    ssl_flag(&mut response.head);
    let mut request = response.head[..36].to_vec();
    request[..3].copy_from_slice(&[32, 0, 0]);
    let mut tls = vec![
        chunks[0].clone(),
        Chunk {
            head: request,
            ..response.clone()
        },
        response,
    ];
    tls.extend(chunks[2..].iter().cloned());
    tls[2].head[3] = 2;
    assert_eq!(tls[3].head, [7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0], "the OK");
    tls[3].head[3] = 3;

    let mut p = parser();
    let mut calls = replay_tls_resumed(&mut p, &tls, 2);
    // One chunk more than in the clear: every call one step later.
    for c in &mut calls {
        c.start_ns -= TS_STEP;
        c.end_ns -= TS_STEP;
    }
    assert_eq!(calls, plain);
    assert_eq!(
        p.stats(),
        ParserStats {
            tls_upgrades: 1,
            ..ParserStats::default()
        }
    );
    assert_eq!(extra(&calls[0], "db.system.name"), Some("mariadb"));
    assert_eq!(calls[0].namespace.as_deref(), Some("shop"));
}

#[test]
fn failed_authentication_gives_no_call() {
    let chunks = fixture("mysql_authfail.txt");
    let calls = replay_lossless(parser, &chunks);
    assert!(calls.is_empty(), "{calls:?}");
}

#[test]
fn connector_server_side_prepared_statements() {
    let chunks = fixture("mysql_connector.txt");
    let calls = replay_lossless(parser, &chunks);
    assert_eq!(
        summaries(&calls),
        [
            ("SET", None),
            ("SET", None),
            ("SELECT users", None),
            ("SELECT users", None),
            ("UPDATE users", None),
            // The prepare itself failed: reported, with the error.
            ("SELECT missing", Some("1146")),
            ("COMMIT", None),
        ]
    );
    assert_eq!(
        calls[2].query_text.as_deref(),
        Some("SELECT id, name FROM users WHERE id >= ?")
    );
    assert_eq!(extra(&calls[2], "db.response.returned_rows"), Some("3"));
    assert_eq!(extra(&calls[3], "db.response.returned_rows"), Some("2"));
    assert_eq!(extra(&calls[4], "sonde.db.affected_rows"), Some("1"));
    check_lossy(parser, &chunks, &calls, CutOperation::Reported);
}

#[test]
fn joined_mid_stream_reports_unknown_statements_by_id() {
    let chunks = fixture("mysql_connector.txt");
    // Attach after the first prepare: start at the first COM_STMT_EXECUTE.
    let at = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.head.get(4) == Some(&COM_STMT_EXECUTE))
        .unwrap();
    let calls = replay(&mut parser(), &chunks[at..], Split::Whole);
    assert_eq!(calls[0].summary, "EXECUTE");
    assert_eq!(calls[0].operation, None);
    assert_eq!(calls[0].query_text, None);
    assert_eq!(extra(&calls[0], "sonde.db.statement_id"), Some("1"));

    let chunks = fixture("mysql_client.txt");
    let q = chunks
        .iter()
        .position(|c| c.side == Side::Client && c.head.get(4) == Some(&COM_QUERY))
        .unwrap();
    assert!(sniff_mid_stream(Side::Client, &chunks[q].head));
    assert!(!sniff_mid_stream(Side::Server, &chunks[q].head));
    let calls = replay(&mut parser(), &chunks[q..], Split::Whole);
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
    for (name, seed) in [
        ("mysql_client.txt", 8),
        ("mysql_authfail.txt", 9),
        ("mysql_pymysql.txt", 10),
        ("mysql_connector.txt", 11),
    ] {
        fuzz_with_noise(MysqlParser::new, name, seed);
    }
}
