//! Database connections through the tracker: detection, parents from the kernel, the
//! same-host join of client and server spans. The real parsers are tested on their own;
//! here a toy line protocol (one line per request, one per response) stands in for
//! memcached so these tests exercise only the plumbing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Ev, Harness, feed, tcp_state};
use crate::abi::{CtxRole, Direction, KernelParentSource, RawTraceCtx};
use crate::metrics::Counters;
use crate::protocols::Segment;
use crate::protocols::db::{CallParser, DbCall, DbParser, DbSystem, ParserStats, Side};
use crate::protocols::registry::{self, Detection, KernelView, PROTOCOLS, Protocol, Sniff};
use crate::spans::{
    Limits, Resource, ResourceFn, Role, Span, SpanBuilder, SpanKind, Status, Value,
};

/// As `spans::builder`'s.
const DB_JOIN_WAIT_NS: u64 = 2_000_000_000;

/// Requests are lines starting `get `/`set `; each response line ends the oldest
/// request; a response `ERROR ...` is an error. Lines it cannot read are skipped.
#[derive(Default)]
struct ToyParser {
    waiting: VecDeque<(u64, String)>,
    stats: ParserStats,
}

impl DbParser for ToyParser {
    fn push(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        for line in seg.head.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line).trim_end().to_owned();
            match side {
                Side::Client if toy_sniff(Side::Client, line) => {
                    self.waiting.push_back((seg.ts_ns, text));
                }
                Side::Server if toy_sniff(Side::Server, line) => {
                    let Some((start_ns, request)) = self.waiting.pop_front() else {
                        continue;
                    };
                    let op = request.split(' ').next().unwrap_or_default().to_uppercase();
                    let error = text.strip_prefix("ERROR ").map(str::to_owned);
                    out.push(DbCall {
                        start_ns,
                        end_ns: seg.ts_ns,
                        summary: op.clone(),
                        operation: Some(op),
                        query_text: Some(request),
                        error_type: error.as_ref().map(|_| "ERROR".to_owned()),
                        error_message: error,
                        ..DbCall::default()
                    });
                }
                _ => self.stats.desync_bytes += line.len() as u64,
            }
        }
    }

    fn finish(&mut self, _out: &mut Vec<DbCall>) {
        self.stats.dropped_calls += self.waiting.len() as u64;
        self.waiting.clear();
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}

fn toy_sniff(side: Side, bytes: &[u8]) -> bool {
    match side {
        Side::Client => bytes.starts_with(b"get ") || bytes.starts_with(b"set "),
        Side::Server => bytes.starts_with(b"VALUE") || bytes.starts_with(b"ERROR "),
    }
}

fn toy_sniff_any(bytes: &[u8]) -> Sniff {
    [Side::Client, Side::Server]
        .into_iter()
        .find(|side| toy_sniff(*side, bytes))
        .map_or(Sniff::No, Sniff::SentBy)
}

/// A registry entry for the toy protocol, as `name` on `port`.
fn toy(name: &'static str, port: u16, system: DbSystem) -> Protocol {
    Protocol {
        name,
        usual_port: Some(port),
        kernel_view: KernelView::InSpan,
        db_system: Some(system),
        sniff: toy_sniff_any,
        parser: |_| CallParser::boxed(ToyParser::default()),
    }
}

/// HTTP/1 as in production, and the toy protocol standing in for memcached.
fn toy_protocols() -> &'static [Protocol] {
    let http = &PROTOCOLS[0];
    Box::leak(Box::new([
        Protocol {
            name: http.name,
            usual_port: http.usual_port,
            kernel_view: http.kernel_view,
            db_system: http.db_system,
            sniff: http.sniff,
            parser: http.parser,
        },
        toy("memcached", 11211, DbSystem::Memcached),
    ]))
}

fn tracker() -> (Harness, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let resources: ResourceFn = Box::new(|pid| {
        Arc::new(Resource {
            service_name: format!("svc{pid}"),
            attributes: Vec::new(),
        })
    });
    let b = SpanBuilder::new(Limits::default(), resources, Arc::clone(&counters))
        .with_protocols(toy_protocols());
    (Harness::new(b, Arc::clone(&counters)), counters)
}

const APP_SOCK: u64 = 1;
const DB_CLIENT_SOCK: u64 = 2;
const DB_SERVER_SOCK: u64 = 3;
const APP_PORT: u16 = 8080;
const CLIENT_PORT: u16 = 40001;
const DB_PORT: u16 = 11211;

/// An event on one of this file's connections (ports and process by socket).
fn ev(sock: u64, dir: Direction, ts: u64, bytes: &[u8]) -> Ev {
    let mut e = super::ev(sock, dir, ts, bytes);
    (e.local_port, e.remote_port) = match sock {
        APP_SOCK => (APP_PORT, 50000),
        DB_CLIENT_SOCK => (CLIENT_PORT, DB_PORT),
        _ => (DB_PORT, CLIENT_PORT),
    };
    if sock == DB_SERVER_SOCK {
        e.tgid = 7;
    }
    e
}

/// A query the application sends while serving the request with `server_span`.
fn query_in_span(ts: u64, bytes: &[u8], trace: [u8; 16], server_span: [u8; 8]) -> Ev {
    let mut e = ev(DB_CLIENT_SOCK, Direction::Egress, ts, bytes);
    e.role = CtxRole::InSpan;
    e.source = KernelParentSource::Thread;
    e.ctx = RawTraceCtx {
        trace_id: trace,
        span_id: [0; 8],
        parent_span_id: server_span,
    };
    e
}

fn str_attr(s: &Span, key: &str) -> Option<String> {
    s.attr(key).map(ToString::to_string)
}

#[test]
fn queries_made_while_serving_a_request_are_its_children() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    let (trace, server_span) = ([7u8; 16], [8u8; 8]);
    let mut req = ev(
        APP_SOCK,
        Direction::Ingress,
        10,
        b"GET /users HTTP/1.1\r\nHost: app\r\n\r\n",
    );
    req.role = CtxRole::ServerRequest;
    req.ctx = RawTraceCtx {
        trace_id: trace,
        span_id: server_span,
        parent_span_id: [0; 8],
    };
    feed(&mut t, &req, &mut out);
    for (i, q) in [&b"get a\r\n"[..], b"get b\r\n", b"set c 0 0 1\r\n"]
        .iter()
        .enumerate()
    {
        let ts = 20 + 10 * i as u64;
        feed(&mut t, &query_in_span(ts, q, trace, server_span), &mut out);
        let answer = ev(DB_CLIENT_SOCK, Direction::Ingress, ts + 5, b"VALUE x\r\n");
        feed(&mut t, &answer, &mut out);
    }
    feed(
        &mut t,
        &ev(
            APP_SOCK,
            Direction::Egress,
            90,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        &mut out,
    );
    let names: Vec<_> = out.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["GET", "GET", "SET", "GET /users"]);
    let server = &out[3];
    for call in &out[..3] {
        assert_eq!(call.kind, SpanKind::Client);
        assert_eq!(call.trace_id, server.trace_id);
        assert_eq!(call.parent_span_id, Some(server.span_id));
        assert_ne!(call.span_id, server.span_id);
        assert_eq!(
            str_attr(call, "sonde.parent.source").as_deref(),
            Some("thread")
        );
        assert_eq!(
            str_attr(call, "db.system.name").as_deref(),
            Some("memcached")
        );
        assert_eq!(str_attr(call, "server.port").as_deref(), Some("11211"));
    }
    assert_eq!((out[1].start_unix_nano, out[1].end_unix_nano), (30, 35));
    assert_ne!(out[0].span_id, out[1].span_id);
    assert_eq!(counters.db_calls.load(Ordering::Relaxed), 3);
}

#[test]
fn a_query_outside_any_request_is_a_root_and_errors_are_error_spans() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    feed(
        &mut t,
        &ev(DB_CLIENT_SOCK, Direction::Egress, 10, b"get k\r\n"),
        &mut out,
    );
    feed(
        &mut t,
        &ev(
            DB_CLIENT_SOCK,
            Direction::Ingress,
            20,
            b"ERROR no such key\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let s = &out[0];
    assert_eq!(s.parent_span_id, None);
    assert_eq!(s.attr("sonde.parent.source"), None);
    assert_eq!(
        s.status,
        Status::Error {
            message: "no such key".into()
        }
    );
    assert_eq!(s.attr("error.type"), Some(&Value::Str("ERROR".into())));
}

#[test]
fn a_pooled_connection_is_picked_up_at_its_next_response_or_request() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    // Attached mid-exchange: the first bytes seen are the end of an unknown answer.
    feed(
        &mut t,
        &ev(DB_CLIENT_SOCK, Direction::Ingress, 5, b"\x00\x01junk"),
        &mut out,
    );
    feed(
        &mut t,
        &ev(DB_CLIENT_SOCK, Direction::Egress, 10, b"get k\r\n"),
        &mut out,
    );
    feed(
        &mut t,
        &ev(DB_CLIENT_SOCK, Direction::Ingress, 20, b"VALUE k\r\n"),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, SpanKind::Client);
    assert_eq!(
        counters
            .unknown_protocol_connections
            .load(Ordering::Relaxed),
        1
    );
}

/// Both ends traced on this host, in either order of completion.
#[test]
fn a_traced_database_server_span_is_joined_under_the_client_span() {
    for server_finishes_first in [true, false] {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let q = b"get k\r\n";
        feed(
            &mut t,
            &ev(DB_CLIENT_SOCK, Direction::Egress, 10, q),
            &mut out,
        );
        feed(
            &mut t,
            &ev(DB_SERVER_SOCK, Direction::Ingress, 11, q),
            &mut out,
        );
        let answer = b"VALUE k\r\n";
        let server_done = ev(DB_SERVER_SOCK, Direction::Egress, 12, answer);
        let client_done = ev(DB_CLIENT_SOCK, Direction::Ingress, 13, answer);
        if server_finishes_first {
            feed(&mut t, &server_done, &mut out);
            assert!(out.is_empty(), "the server span waits for the client's");
            feed(&mut t, &client_done, &mut out);
        } else {
            feed(&mut t, &client_done, &mut out);
            feed(&mut t, &server_done, &mut out);
        }
        assert_eq!(out.len(), 2, "{out:?}");
        let client = out.iter().find(|s| s.kind == SpanKind::Client).unwrap();
        let server = out.iter().find(|s| s.kind == SpanKind::Server).unwrap();
        assert_eq!(server.trace_id, client.trace_id);
        assert_eq!(server.parent_span_id, Some(client.span_id));
        assert_eq!(
            str_attr(server, "sonde.parent.source").as_deref(),
            Some("local_peer")
        );
        assert_eq!(str_attr(server, "server.port").as_deref(), Some("11211"));
        assert_eq!(str_attr(server, "client.port").as_deref(), Some("40001"));
        assert_eq!(server.resource.service_name, "svc7");
    }
}

#[test]
fn a_server_span_whose_client_span_never_comes_is_reported_alone() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    feed(
        &mut t,
        &ev(DB_CLIENT_SOCK, Direction::Egress, 10, b"get k\r\n"),
        &mut out,
    );
    feed(
        &mut t,
        &ev(DB_SERVER_SOCK, Direction::Ingress, 11, b"get k\r\n"),
        &mut out,
    );
    feed(
        &mut t,
        &ev(DB_SERVER_SOCK, Direction::Egress, 12, b"VALUE k\r\n"),
        &mut out,
    );
    assert!(out.is_empty());
    t.tick(12 + DB_JOIN_WAIT_NS + 1);
    // Released spans leave with the next export.
    feed(
        &mut t,
        &ev(APP_SOCK, Direction::Ingress, 13, b"\x16\x03\x01tls"),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, SpanKind::Server);
    assert_eq!(out[0].parent_span_id, None);
    assert_eq!(counters.db_unjoined_server_calls.load(Ordering::Relaxed), 1);
}

#[test]
fn close_flushes_the_parser_and_counts_what_it_dropped() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    feed(
        &mut t,
        &ev(DB_CLIENT_SOCK, Direction::Egress, 10, b"get k\r\n?!\r\n"),
        &mut out,
    );
    t.on_sock_state(DB_CLIENT_SOCK, tcp_state::CLOSE, 20, &mut out);
    assert!(out.is_empty());
    assert_eq!(t.connections(), 0);
    assert_eq!(counters.db_dropped_calls.load(Ordering::Relaxed), 1);
    assert_eq!(counters.db_desync_bytes.load(Ordering::Relaxed), 3);
}

#[test]
fn the_port_breaks_ties_between_protocols_that_both_sniff() {
    // Four protocols that all recognise the same bytes, in the registry's order.
    let protocols: &'static [Protocol] = Box::leak(Box::new([
        toy("postgresql", 5432, DbSystem::Postgresql),
        toy("mysql", 3306, DbSystem::Mysql),
        toy("redis", 6379, DbSystem::Redis),
        toy("memcached", 11211, DbSystem::Memcached),
    ]));
    let detect_in = |bytes: &[u8], dir: Direction, local: u16, remote: u16| {
        let server_port = |sender| match Role::of_process(dir, sender) {
            Role::Client => remote,
            Role::Server => local,
        };
        match registry::detect(protocols, bytes, server_port, false) {
            Detection::Found { protocol, sender } => {
                Some((protocol.name, Role::of_process(dir, sender)))
            }
            _ => None,
        }
    };
    let detect = |dir, local, remote| detect_in(b"get k\r\n", dir, local, remote);
    assert_eq!(
        detect(Direction::Egress, 40000, 6379),
        Some(("redis", Role::Client))
    );
    assert_eq!(
        detect(Direction::Ingress, 11211, 40000),
        Some(("memcached", Role::Server))
    );
    // No port hint: the first protocol that sniffs.
    assert_eq!(
        detect(Direction::Egress, 40000, 9999),
        Some(("postgresql", Role::Client))
    );
    assert_eq!(detect_in(b"HELLO", Direction::Egress, 1, 2), None);
}
