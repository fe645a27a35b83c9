//! HTTP/1 through capture, the span builder and the pipeline: pairing, folded bodies,
//! connections and their reuse, detection, timeouts, proxies, overflow. Trace context
//! (the kernel's identities, header parents, SDK suppression) is in `http1_context.rs`.

use super::*;

#[test]
fn keep_alive_server_requests_pair_in_order() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    for (i, path) in ["/a", "/b", "/c"].iter().enumerate() {
        let base = 1000 * (i as u64 + 1);
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: example:8080\r\nUser-Agent: curl/8\r\n\r\n");
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Ingress, base, req.as_bytes()),
            &mut out,
        );
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Egress,
                base + 10,
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            ),
            &mut out,
        );
    }
    assert_eq!(out.len(), 3);
    let names: Vec<_> = out.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["GET /a", "GET /b", "GET /c"]);
    let s = &out[1];
    assert_eq!(s.kind, SpanKind::Server);
    assert_eq!((s.start_unix_nano, s.end_unix_nano), (2000, 2010));
    assert_eq!(attr(s, "http.response.status_code"), &Value::Int(200));
    assert_eq!(attr(s, "http.response.body.size"), &Value::Int(5));
    assert_eq!(attr(s, "server.address"), &Value::Str("example".into()));
    assert_eq!(attr(s, "client.port"), &Value::Int(40000));
    assert_eq!(attr(s, "user_agent.original"), &Value::Str("curl/8".into()));
    assert_eq!(s.status, Status::Unset);
}

/// sendfile'd bodies reach the tracker as the socket's folded total: carried by the
/// next record, or read from the kernel for a quiet connection (only when the kernel's
/// entry still describes the same 4-tuple).
#[test]
fn folded_egress_completes_responses() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Ingress, 1000, req("/a").as_bytes()),
        &mut out,
    );
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 1010, head),
        &mut out,
    );
    assert!(out.is_empty(), "the body is still due");
    // The next request's record carries the first body, sent at 1500.
    let mut next = ev(SERVER_SOCK, Direction::Ingress, 2000, req("/b").as_bytes());
    next.folded = (5000, 1500);
    feed(&mut t, &next, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start_unix_nano, out[0].end_unix_nano), (1000, 1500));
    assert_eq!(attr(&out[0], "http.response.body.size"), &Value::Int(5000));
    assert_eq!(
        t.quiet_open_exchanges(2000 + 1000, 100, 10),
        Vec::<u64>::new(),
        "no response started: nothing can be folded into it"
    );

    let mut head_b = ev(SERVER_SOCK, Direction::Egress, 2010, head);
    head_b.folded = (5000, 1500);
    feed(&mut t, &head_b, &mut out);
    assert_eq!(out.len(), 1, "nothing new was folded");
    assert_eq!(
        t.quiet_open_exchanges(2010 + 50, 100, 10),
        Vec::<u64>::new()
    );
    assert_eq!(
        t.quiet_open_exchanges(2010 + 100, 100, 10),
        vec![SERVER_SOCK]
    );
    let mut info = RawSockInfo {
        sk: SERVER_SOCK,
        family: 2,
        local_port: 8080,
        remote_port: 40001, // another connection at this address: ignored
        folded_bytes: 10_000,
        folded_ts_ns: 2500,
        ..RawSockInfo::default()
    };
    info.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    info.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    t.on_sock_info(&info, &mut out);
    assert_eq!(out.len(), 1);
    info.remote_port = 40000;
    t.on_sock_info(&info, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].name, "GET /b");
    assert_eq!((out[1].start_unix_nano, out[1].end_unix_nano), (2000, 2500));
    assert_eq!(attr(&out[1], "http.response.body.size"), &Value::Int(5000));

    // A smaller total: the kernel's entry started again. Nothing is invented.
    let mut again = ev(SERVER_SOCK, Direction::Ingress, 3000, req("/c").as_bytes());
    again.folded = (100, 2900);
    feed(&mut t, &again, &mut out);
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Egress,
            3010,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 3);
    assert_eq!(attr(&out[2], "http.response.body.size"), &Value::Int(2));
}

#[test]
fn pipelined_requests_each_get_their_response() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let reqs = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n";
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Ingress, 10, reqs),
        &mut out,
    );
    let resps = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 20, resps),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].name, "GET /one");
    assert_eq!(attr(&out[0], "http.response.status_code"), &Value::Int(200));
    assert_eq!(out[1].name, "GET /two");
    assert_eq!(attr(&out[1], "http.response.status_code"), &Value::Int(404));
    // A 404 is not a server error.
    assert_eq!(out[1].status, Status::Unset);
    assert_ne!(out[0].span_id, out[1].span_id);
}

#[test]
fn close_mid_response_is_an_error_span() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        &mut out,
    );
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Egress,
            20,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial",
        ),
        &mut out,
    );
    assert!(out.is_empty());
    t.on_sock_state(SERVER_SOCK, tcp_state::CLOSE, 30, &mut out);
    assert_eq!(out.len(), 1);
    assert!(
        matches!(out[0].status, Status::Error { .. }),
        "{:?}",
        out[0].status
    );
    assert_eq!(
        attr(&out[0], "error.type"),
        &Value::Str("connection_closed".into())
    );
    assert_eq!(t.connections(), 0);
}

#[test]
fn unknown_protocol_is_counted_once_and_never_spans() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    for i in 0..3 {
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                i,
                b"\x16\x03\x01garbage bytes",
            ),
            &mut out,
        );
    }
    assert!(out.is_empty());
    assert_eq!(
        counters
            .unknown_protocol_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn request_arriving_a_few_bytes_at_a_time_is_detected() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    let req = b"GET /split/path HTTP/1.1\r\nHost: h\r\n\r\n";
    for (i, chunk) in req.chunks(3).enumerate() {
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Ingress, 100 + i as u64, chunk),
            &mut out,
        );
    }
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Egress,
            500,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].name, "GET /split/path");
    assert_eq!(out[0].start_unix_nano, 100);
    assert_eq!(
        counters
            .unknown_protocol_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn detection_is_three_way() {
    assert_eq!(detect(Direction::Ingress, b"GE"), Detection::NeedMore);
    assert_eq!(detect(Direction::Ingress, b"GET "), Detection::NeedMore);
    assert_eq!(
        detect(Direction::Ingress, b"GET /"),
        Detection::Http(Role::Server)
    );
    assert_eq!(
        detect(Direction::Egress, b"HTTP/1.1 2"),
        Detection::NeedMore
    );
    assert_eq!(
        detect(Direction::Egress, b"HTTP/1.1 200 OK"),
        Detection::Http(Role::Server)
    );
    assert_eq!(
        detect(Direction::Ingress, b"\x16\x03\x01"),
        Detection::NotHttp
    );
    assert_eq!(detect(Direction::Ingress, b"GETX"), Detection::NotHttp);
}

#[test]
fn a_reused_socket_with_another_tuple_is_a_new_connection() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /old HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        &mut out,
    );
    // The close of that connection was missed; the kernel reused the socket memory.
    let mut fresh = ev(
        SERVER_SOCK,
        Direction::Ingress,
        20,
        b"GET /new HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    fresh.remote_port = 40001;
    feed(&mut t, &fresh, &mut out);
    let mut resp = ev(
        SERVER_SOCK,
        Direction::Egress,
        30,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    resp.remote_port = 40001;
    feed(&mut t, &resp, &mut out);
    let names: Vec<_> = out
        .iter()
        .map(|s| (s.name.as_str(), s.status.otlp_code()))
        .collect();
    assert_eq!(names, [("GET /old", 2), ("GET /new", 0)], "{out:?}");
    assert_eq!(
        counters
            .stale_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_late_response_pairs_with_its_timed_out_request_not_the_next() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    let reqs = b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /fast HTTP/1.1\r\nHost: h\r\n\r\n";
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Ingress, 0, reqs),
        &mut out,
    );
    t.tick(Limits::default().request_timeout_ns + 1);
    assert_eq!(
        counters
            .requests_timed_out
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let resps = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslowHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast";
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 10, resps),
        &mut out,
    );
    assert!(out.is_empty(), "timed-out requests make no spans: {out:?}");
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Ingress,
            20,
            b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        &mut out,
    );
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Egress,
            30,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "GET /next");
    assert_eq!(attr(&out[0], "http.response.status_code"), &Value::Int(404));
}

#[test]
fn requests_through_an_http_proxy_name_the_real_server() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let req = b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    feed(
        &mut t,
        &ev(CLIENT_SOCK, Direction::Egress, 5, req),
        &mut out,
    );
    feed(
        &mut t,
        &ev(
            CLIENT_SOCK,
            Direction::Ingress,
            9,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let s = &out[0];
    assert_eq!(s.name, "GET /x");
    assert_eq!(attr(s, "url.path"), &Value::Str("/x".into()));
    assert_eq!(
        attr(s, "url.full"),
        &Value::Str("http://example.com/x?y=REDACTED".into())
    );
    assert_eq!(attr(s, "server.address"), &Value::Str("example.com".into()));
    assert_eq!(attr(s, "server.port"), &Value::Int(80));
    assert_eq!(
        attr(s, "network.peer.port"),
        &Value::Int(8080),
        "the proxy we talk to"
    );
}

#[test]
fn timed_out_requests_are_counted() {
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Ingress,
            0,
            b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        &mut out,
    );
    t.tick(Limits::default().request_timeout_ns + 1);
    assert_eq!(
        counters
            .requests_timed_out
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(out.is_empty());
}

/// Too many requests waiting on one connection: every one in flight is dropped (counted)
/// and pairing starts again at the request that overflowed, so its response pairs with it.
/// The requests come in one segment, so the restart happens in the middle of what the
/// parser reports: the response stream must still know the last request is a HEAD.
#[test]
fn an_overflowing_connection_restarts_pairing_at_the_newest_request() {
    let counters = Arc::new(Counters::default());
    let limits = Limits {
        max_pending: 2,
        ..Limits::default()
    };
    let b = SpanBuilder::new(limits, Box::new(resource), Arc::clone(&counters));
    let mut t = Harness::new(b, Arc::clone(&counters));
    let mut out = Vec::new();
    let reqs = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nHEAD /c HTTP/1.1\r\nHost: h\r\n\r\n";
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Ingress, 10, reqs),
        &mut out,
    );
    assert_eq!(
        counters
            .pending_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // The answer to HEAD has no body, whatever its Content-Length says.
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Egress,
            20,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].name, "HEAD /c");
    assert_eq!((out[0].start_unix_nano, out[0].end_unix_nano), (10, 20));
    assert_eq!(out[0].status, Status::Unset);
}
