//! TLS as the span builder sees it: ciphertext the socket carried (recognised, never
//! parsed), plaintext from a library's probes, and a same-host join whose client is
//! reported after its server finished.

use std::sync::atomic::Ordering;

use super::{CLIENT_SOCK, Ev, Harness, SERVER_SOCK, attr, ev, feed, tcp_state, tracker};
use crate::abi::Direction;
use crate::capture::{Source, TlsLibrary, TlsSource, TlsVersion};
use crate::spans::{Span, SpanKind, Value};

const CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0];
const REQUEST: &[u8] = b"GET /secret HTTP/1.1\r\nHost: localhost\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn plaintext(sock: u64, dir: Direction, ts: u64, bytes: &[u8]) -> Ev {
    Ev {
        from: Source::Tls(TlsSource {
            library: TlsLibrary::OpenSsl,
            version: Some(TlsVersion::Tls13),
        }),
        ..ev(sock, dir, ts, bytes)
    }
}

/// The server reads REQUEST at 10 and answers at 20, in plaintext from OpenSSL.
fn serve_exchange(t: &mut Harness, out: &mut Vec<Span>) {
    feed(
        t,
        &plaintext(SERVER_SOCK, Direction::Ingress, 10, REQUEST),
        out,
    );
    feed(
        t,
        &plaintext(SERVER_SOCK, Direction::Egress, 20, RESPONSE),
        out,
    );
}

/// The client's process: another pid than the server's.
fn client(e: Ev) -> Ev {
    Ev { tgid: 43, ..e }
}

#[test]
fn ciphertext_is_skipped_and_the_plaintext_after_it_parsed() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    // A library working on memory: its first flight reaches the socket hooks unclaimed.
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Ingress, 1, CLIENT_HELLO),
        &mut out,
    );
    serve_exchange(&mut t, &mut out);
    t.on_sock_state(SERVER_SOCK, tcp_state::CLOSE, 30, &mut out);
    // Its client, on this host, might be traced: the span waited for it in vain.
    t.tick(300_000_000);
    t.flush(&mut out);
    let names: Vec<_> = out.iter().map(|s| (s.kind, s.name.as_str())).collect();
    assert_eq!(names, [(SpanKind::Server, "GET /secret")]);
    assert_eq!(attr(&out[0], "url.scheme"), &Value::Str("https".into()));
    assert_eq!(
        attr(&out[0], "sonde.tls.library"),
        &Value::Str("openssl".into())
    );
    assert_eq!(
        attr(&out[0], "tls.protocol.name"),
        &Value::Str("tls".into())
    );
    assert_eq!(
        attr(&out[0], "tls.protocol.version"),
        &Value::Str("1.3".into())
    );
    assert_eq!(
        counters
            .unknown_protocol_connections
            .load(Ordering::Relaxed),
        0
    );
    assert_eq!(
        counters.tls_unreadable_connections.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn ciphertext_without_plaintext_is_counted_unreadable_once_closed() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    let mut taken = Vec::new();
    feed(
        &mut t,
        &ev(CLIENT_SOCK, Direction::Egress, 1, CLIENT_HELLO),
        &mut out,
    );
    // Application data records: skipped too, whatever they hold.
    feed(
        &mut t,
        &ev(
            CLIENT_SOCK,
            Direction::Egress,
            2,
            b"\x17\x03\x03\x00\x20GET / HTTP/1.1\r\n",
        ),
        &mut out,
    );
    t.builder.take_encrypted_processes(&mut taken);
    assert_eq!(taken, [42], "the process is noted for the operator, once");
    assert_eq!(
        counters.tls_unreadable_connections.load(Ordering::Relaxed),
        0
    );
    t.on_sock_state(CLIENT_SOCK, tcp_state::CLOSE, 3, &mut out);
    assert!(out.is_empty());
    assert_eq!(
        counters.tls_unreadable_connections.load(Ordering::Relaxed),
        1
    );
    assert_eq!(
        counters
            .unknown_protocol_connections
            .load(Ordering::Relaxed),
        0
    );
    assert_eq!(counters.http_desyncs.load(Ordering::Relaxed), 0);
}

/// Both ends traced on this host; the client's request is reported only after the
/// server answered (its library call returned late): the server span waits, then
/// becomes the client span's child.
#[test]
fn a_server_span_finished_before_its_tls_client_was_reported_becomes_its_child() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    serve_exchange(&mut t, &mut out);
    assert!(out.is_empty(), "the server span waits for its client");
    feed(
        &mut t,
        &client(plaintext(CLIENT_SOCK, Direction::Egress, 5, REQUEST)),
        &mut out,
    );
    feed(
        &mut t,
        &client(plaintext(CLIENT_SOCK, Direction::Ingress, 25, RESPONSE)),
        &mut out,
    );
    let find = |kind| -> &Span {
        out.iter()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} span in {out:?}"))
    };
    let (server, client) = (find(SpanKind::Server), find(SpanKind::Client));
    assert_eq!(server.parent_span_id, Some(client.span_id));
    assert_eq!(server.trace_id, client.trace_id);
    assert_eq!(
        attr(server, "sonde.parent.source"),
        &Value::Str("local_peer".into())
    );
}

#[test]
fn a_server_span_whose_client_never_comes_goes_out_unjoined() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    serve_exchange(&mut t, &mut out);
    t.tick(20 + 100_000_000);
    t.flush(&mut out);
    assert!(out.is_empty(), "still within the wait");
    t.tick(20 + 300_000_000);
    t.flush(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].parent_span_id, None);
    // A client request after that starts its own trace.
    feed(
        &mut t,
        &client(plaintext(
            CLIENT_SOCK,
            Direction::Egress,
            300_000_100,
            REQUEST,
        )),
        &mut out,
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn a_waiting_server_span_goes_out_when_the_agent_stops() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    serve_exchange(&mut t, &mut out);
    assert!(out.is_empty());
    t.builder.release_waiting();
    t.flush(&mut out);
    assert_eq!(out.len(), 1);
}

/// A PostgreSQL message: type byte, then its length (counting itself) and payload.
fn pg(ty: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// `sslmode=require` from the client's side: SSLRequest and the server's 'S' on the
/// socket, then the startup, authentication and a query in OpenSSL's plaintext. The
/// query is a PostgreSQL span marked as TLS; ciphertext reaching user space, before the
/// plaintext or after it, is never parsed.
#[test]
fn postgres_resumes_in_tls_plaintext_after_its_ssl_request() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    let tls = |dir, ts, bytes: &[u8]| client(plaintext(CLIENT_SOCK, dir, ts, bytes));
    let socket = |dir, ts, bytes: &[u8]| client(ev(CLIENT_SOCK, dir, ts, bytes));
    let startup = b"\x00\x00\x00\x25\x00\x03\x00\x00user\x00postgres\x00database\x00shop\x00\x00";
    let ready = pg(b'Z', b"I");
    let auth_ok = [pg(b'R', &[0, 0, 0, 0]), ready.clone()].concat();
    let query = pg(b'Q', b"SELECT name FROM users WHERE id = 1\x00");
    let answer = [pg(b'C', b"SELECT 1\x00"), ready].concat();
    for e in [
        socket(Direction::Egress, 1, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"),
        socket(Direction::Ingress, 2, b"S"),
        socket(Direction::Egress, 3, CLIENT_HELLO),
        tls(Direction::Egress, 4, startup),
        tls(Direction::Ingress, 5, &auth_ok),
        tls(Direction::Egress, 6, &query),
        // A type byte and a length, were it parsed: the answer would be lost in it.
        socket(Direction::Ingress, 7, b"\x17\x03\x03\x00\x20"),
        tls(Direction::Ingress, 8, &answer),
    ] {
        feed(&mut t, &e, &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    let s = &out[0];
    assert_eq!(
        (s.kind, s.name.as_str()),
        (SpanKind::Client, "SELECT users")
    );
    assert_eq!((s.start_unix_nano, s.end_unix_nano), (6, 8));
    for (key, value) in [
        ("db.system.name", "postgresql"),
        ("db.namespace", "shop"),
        ("db.query.text", "SELECT name FROM users WHERE id = ?"),
        ("sonde.tls.library", "openssl"),
    ] {
        assert_eq!(attr(s, key), &Value::Str(value.into()), "{key}");
    }
    assert_eq!(counters.db_tls_connections.load(Ordering::Relaxed), 1);
    assert_eq!(counters.db_desync_bytes.load(Ordering::Relaxed), 0);
    assert_eq!(counters.db_dropped_calls.load(Ordering::Relaxed), 0);
    t.on_sock_state(CLIENT_SOCK, tcp_state::CLOSE, 9, &mut out);
    assert_eq!(
        counters.tls_unreadable_connections.load(Ordering::Relaxed),
        0,
        "its plaintext was read"
    );
}

/// Redis over TLS from the first byte: the ClientHello reaching the socket hooks makes
/// the connection ciphertext until OpenSSL's plaintext comes, then it is Redis.
#[test]
fn redis_over_tls_is_detected_in_the_plaintext() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    for e in [
        ev(CLIENT_SOCK, Direction::Egress, 1, CLIENT_HELLO),
        plaintext(
            CLIENT_SOCK,
            Direction::Egress,
            2,
            b"*2\r\n$3\r\nGET\r\n$4\r\nuser\r\n",
        ),
        plaintext(CLIENT_SOCK, Direction::Ingress, 3, b"$3\r\nada\r\n"),
    ] {
        feed(&mut t, &client(e), &mut out);
    }
    assert_eq!(out.len(), 1, "{out:?}");
    let s = &out[0];
    assert_eq!((s.kind, s.name.as_str()), (SpanKind::Client, "GET"));
    assert_eq!(attr(s, "db.system.name"), &Value::Str("redis".into()));
    assert_eq!(attr(s, "sonde.tls.library"), &Value::Str("openssl".into()));
    t.on_sock_state(CLIENT_SOCK, tcp_state::CLOSE, 4, &mut out);
    for (name, counter) in [
        (
            "unknown_protocol_connections",
            &counters.unknown_protocol_connections,
        ),
        (
            "tls_unreadable_connections",
            &counters.tls_unreadable_connections,
        ),
        ("db_desync_bytes", &counters.db_desync_bytes),
    ] {
        assert_eq!(counter.load(Ordering::Relaxed), 0, "{name}");
    }
}

/// Redis over TLS with both ends traced, the server's side reported first (it read the
/// command and answered before the client's `SSL_write` returned): the server's span
/// waits for the client's call, then becomes its child.
#[test]
fn a_redis_server_span_finished_before_its_tls_client_was_seen_becomes_its_child() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let command: &[u8] = b"*2\r\n$3\r\nGET\r\n$4\r\nuser\r\n";
    let reply: &[u8] = b"$3\r\nada\r\n";
    feed(
        &mut t,
        &plaintext(SERVER_SOCK, Direction::Ingress, 10, command),
        &mut out,
    );
    feed(
        &mut t,
        &plaintext(SERVER_SOCK, Direction::Egress, 20, reply),
        &mut out,
    );
    assert!(out.is_empty(), "the server span waits for its client");
    for e in [
        plaintext(CLIENT_SOCK, Direction::Egress, 5, command),
        plaintext(CLIENT_SOCK, Direction::Ingress, 25, reply),
    ] {
        feed(&mut t, &client(e), &mut out);
    }
    let find = |kind| -> &Span {
        out.iter()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} span in {out:?}"))
    };
    let (server, client) = (find(SpanKind::Server), find(SpanKind::Client));
    assert_eq!((server.name.as_str(), client.name.as_str()), ("GET", "GET"));
    assert_eq!(server.parent_span_id, Some(client.span_id));
    assert_eq!(server.trace_id, client.trace_id);
    assert_eq!(
        attr(server, "sonde.parent.source"),
        &Value::Str("local_peer".into())
    );
}
