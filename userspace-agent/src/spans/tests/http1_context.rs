//! HTTP/1 trace context through the span builder: the kernel's identities and parents,
//! header parents with their format and tracestate, heads split over reads, and the
//! spans of SDK-instrumented processes left to their SDK.

use super::*;

#[test]
fn kernel_ids_and_parent_are_used() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let mut e = decided(
        ev(
            CLIENT_SOCK,
            Direction::Egress,
            5,
            b"GET /x?token=abc HTTP/1.1\r\nHost: api:8080\r\n\r\n",
        ),
        CtxRole::ClientRequest,
        ([7; 16], [8; 8], [9; 8]),
    );
    e.source = KernelParentSource::Thread;
    feed(&mut t, &e, &mut out);
    feed(
        &mut t,
        &ev(
            CLIENT_SOCK,
            Direction::Ingress,
            9,
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let s = &out[0];
    assert_eq!(s.kind, SpanKind::Client);
    assert_eq!(s.trace_id.0, [7; 16]);
    assert_eq!(s.span_id.0, [8; 8]);
    assert_eq!(s.parent_span_id.map(|p| p.0), Some([9; 8]));
    assert_eq!(attr(s, "sonde.parent.source"), &Value::Str("thread".into()));
    assert_eq!(
        attr(s, "url.full"),
        &Value::Str("http://api:8080/x?token=REDACTED".into())
    );
    assert_eq!(attr(s, "url.query"), &Value::Str("token=REDACTED".into()));
    assert!(matches!(s.status, Status::Error { .. }));
}

/// The kernel took the server span's parent from the request's traceparent: the span
/// keeps the kernel's IDs, says where its parent came from, and keeps tracestate.
#[test]
fn a_parent_from_a_header_keeps_its_format_and_tracestate() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let header_trace = [0x4b; 16];
    let mut e = decided(
        ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /in HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-00f067aa0ba902b7-01\r\ntracestate: rojo=00f067aa0ba902b7\r\ntracestate: congo=t61rcWkgMzE\r\n\r\n",
        ),
        CtxRole::ServerRequest,
        (header_trace, [6; 8], [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]),
    );
    e.source = KernelParentSource::Header;
    e.format = CtxFormat::W3c;
    feed(&mut t, &e, &mut out);
    // The handler's call: the kernel already put it in the header's trace.
    let mut call = decided(
        ev(
            CLIENT_SOCK,
            Direction::Egress,
            20,
            b"GET /out HTTP/1.1\r\nHost: d\r\n\r\n",
        ),
        CtxRole::ClientRequest,
        (header_trace, [7; 8], [6; 8]),
    );
    call.source = KernelParentSource::Thread;
    feed(&mut t, &call, &mut out);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    feed(
        &mut t,
        &ev(CLIENT_SOCK, Direction::Ingress, 30, ok),
        &mut out,
    );
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 40, ok),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    let (client, server) = (&out[0], &out[1]);
    assert_eq!(server.trace_id.0, header_trace);
    assert_eq!(
        server.parent_span_id.map(|p| p.to_string()).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(
        attr(server, "sonde.parent.source"),
        &Value::Str("header".into())
    );
    assert_eq!(
        attr(server, "sonde.parent.format"),
        &Value::Str("tracecontext".into())
    );
    assert_eq!(
        server.trace_state.as_deref(),
        Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    );
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(client.parent_span_id, Some(server.span_id));
    assert!(client.attr("sonde.parent.format").is_none());
    assert_eq!(
        client.trace_state, None,
        "tracestate stays with the header's span"
    );
}

/// tracestate belongs to traceparent: a parent from another format does not take it.
#[test]
fn tracestate_needs_a_w3c_parent() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let mut e = decided(
        ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /in HTTP/1.1\r\nb3: 4b4b4b4b4b4b4b4b-00f067aa0ba902b7\r\ntracestate: rojo=1\r\n\r\n",
        ),
        CtxRole::ServerRequest,
        ([0x4b; 16], [6; 8], [1; 8]),
    );
    e.source = KernelParentSource::Header;
    e.format = CtxFormat::B3;
    feed(&mut t, &e, &mut out);
    let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 20, ok),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        attr(&out[0], "sonde.parent.format"),
        &Value::Str("b3".into())
    );
    assert_eq!(out[0].trace_state, None);
}

/// Userspace no longer adopts headers: what the kernel decided is what the span gets.
#[test]
fn a_header_the_kernel_did_not_take_is_not_adopted() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let e = decided(
        ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /in HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: rojo=1\r\n\r\n",
        ),
        CtxRole::ServerRequest,
        ([5; 16], [6; 8], [0; 8]),
    );
    feed(&mut t, &e, &mut out);
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Egress,
            20,
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trace_id.0, [5; 16]);
    assert_eq!(out[0].parent_span_id, None);
    assert!(out[0].attr("sonde.parent.source").is_none());
    assert_eq!(out[0].trace_state, None);
}

#[test]
fn kernel_ids_survive_a_request_head_split_over_reads() {
    let (mut t, _) = tracker();
    let mut out = Vec::new();
    let first = decided(
        ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /big HTTP/1.1\r\nCookie: aaaa",
        ),
        CtxRole::ServerRequest,
        ([3; 16], [4; 8], [0; 8]),
    );
    feed(&mut t, &first, &mut out);
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Ingress,
            11,
            b"aaaa\r\nHost: h\r\n\r\n",
        ),
        &mut out,
    );
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Egress,
            20,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].span_id.0, [4; 8]);
    assert_eq!(out[0].trace_id.0, [3; 16]);
}

/// The kernel's identity for a request carrying `traceparent` (trace and parent
/// from the header; ctx_parse.h), as the event reports it.
fn with_traceparent(mut e: Ev, role: CtxRole, span: u8) -> Ev {
    let text = String::from_utf8_lossy(&e.bytes).into_owned();
    let value = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .expect("a traceparent");
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, out: &mut [u8]| {
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
    };
    hex(parts[1], &mut e.ctx.trace_id);
    hex(parts[2], &mut e.ctx.parent_span_id);
    e.ctx.span_id = [span; 8];
    e.role = role;
    e.source = KernelParentSource::Header;
    e.format = CtxFormat::W3c;
    e
}

/// A process that sends a context header it made (the OpenTelemetry SDK's, captured)
/// has its spans left to its SDK, from the request that gives it away on: the SERVER
/// span still open then and the CLIENT span are both dropped and counted; a span
/// finished before is not recalled.
#[test]
fn sdk_instrumented_process_spans_are_suppressed() {
    use std::sync::atomic::Ordering;
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    // Before it is recognised: an ordinary span.
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Ingress,
            1,
            b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        &mut out,
    );
    feed(&mut t, &ev(SERVER_SOCK, Direction::Egress, 2, ok), &mut out);
    assert_eq!(out.len(), 1);

    let served = ev(
        SERVER_SOCK,
        Direction::Ingress,
        10,
        include_bytes!("../../pipeline/testdata/curl_traceparent_in.http"),
    );
    feed(
        &mut t,
        &with_traceparent(served, CtxRole::ServerRequest, 1),
        &mut out,
    );
    let sent = ev(
        CLIENT_SOCK,
        Direction::Egress,
        11,
        include_bytes!("../../pipeline/testdata/sdk_urllib_out.http"),
    );
    feed(
        &mut t,
        &with_traceparent(sent, CtxRole::ClientRequest, 2),
        &mut out,
    );
    feed(
        &mut t,
        &ev(CLIENT_SOCK, Direction::Ingress, 12, ok),
        &mut out,
    );
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 13, ok),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(counters.spans_suppressed_sdk.load(Ordering::Relaxed), 2);
    assert_eq!(counters.spans_built.load(Ordering::Relaxed), 1);

    // Once it has exited, its pid is someone else's.
    t.process_exited(42);
    feed(
        &mut t,
        &ev(
            SERVER_SOCK,
            Direction::Ingress,
            20,
            b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        &mut out,
    );
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 21, ok),
        &mut out,
    );
    assert_eq!(out.len(), 2);
}

/// A proxy passing the received header on (nginx, captured) is not an SDK.
#[test]
fn forwarding_proxy_spans_are_kept() {
    use std::sync::atomic::Ordering;
    let (mut t, counters) = tracker();
    let mut out = Vec::new();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let served = ev(
        SERVER_SOCK,
        Direction::Ingress,
        10,
        include_bytes!("../../pipeline/testdata/curl_traceparent_in.http"),
    );
    feed(
        &mut t,
        &with_traceparent(served, CtxRole::ServerRequest, 1),
        &mut out,
    );
    let sent = ev(
        CLIENT_SOCK,
        Direction::Egress,
        11,
        include_bytes!("../../pipeline/testdata/nginx_forward_out.http"),
    );
    feed(
        &mut t,
        &with_traceparent(sent, CtxRole::ClientRequest, 2),
        &mut out,
    );
    feed(
        &mut t,
        &ev(CLIENT_SOCK, Direction::Ingress, 12, ok),
        &mut out,
    );
    feed(
        &mut t,
        &ev(SERVER_SOCK, Direction::Egress, 13, ok),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(counters.spans_suppressed_sdk.load(Ordering::Relaxed), 0);
    // The forwarded header names the same parent as the incoming one.
    assert_eq!(out[0].parent_span_id, out[1].parent_span_id);
}
