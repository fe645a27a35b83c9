//! The kernel's trace-context parser (`ebpf-probes/trace_ctx/ctx_parse.h`), run on the host
//! through `ebpf-probes/host/ctx_parse_host.c` (built by build.rs): the same C code the probes
//! run, fed real request heads.
//!
//! The `*_HEAD` constants were captured from the wire: Python `requests` sending the
//! headers the OpenTelemetry Python SDK propagators inject (tracecontext, b3, b3multi,
//! jaeger, xray), read by a raw socket server. Other cases edit those heads, following
//! the W3C Trace Context specification (§3.2, and its test suite's cases) and the B3,
//! Jaeger and X-Ray header documentation.

use crate::abi::CtxFormat;

/// Mirrors `struct sonde_parsed_ctx`.
#[repr(C)]
#[derive(Default)]
struct RawParsed {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    format: u8,
    _pad: [u8; 6],
}

unsafe extern "C" {
    fn sonde_ctx_parse_host(data: *const u8, len: u32, stale: u8, out: *mut RawParsed) -> i32;
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Parsed {
    trace_id: String,
    span_id: String,
    sampled: bool,
    format: CtxFormat,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the kernel would decide for a request whose captured prefix is `head`, whatever
/// stale bytes follow it in the kernel's buffer: a line end, a blank or a hex digit there
/// must change nothing.
fn parse(head: &[u8]) -> Option<Parsed> {
    let results: Vec<Option<Parsed>> = [b'\n', b' ', b'\t', b'a', b'0']
        .into_iter()
        .map(|stale| parse_after(head, stale))
        .collect();
    for (stale, result) in results.iter().enumerate().skip(1) {
        assert_eq!(
            result, &results[0],
            "stale padding #{stale} changed the result"
        );
    }
    results.into_iter().next().flatten()
}

fn parse_after(head: &[u8], stale: u8) -> Option<Parsed> {
    let mut out = RawParsed::default();
    let len = u32::try_from(head.len()).expect("test heads are small");
    // SAFETY: `head` is valid for `len` bytes and `out` is a writable RawParsed, which
    // has the layout of `struct sonde_parsed_ctx`; the C code reads and writes nothing else.
    let found = unsafe { sonde_ctx_parse_host(head.as_ptr(), len, stale, &mut out) };
    assert!(found == 0 || found == 1, "ctx_parse_host returned {found}");
    let format = match out.format {
        0 => CtxFormat::None,
        1 => CtxFormat::W3c,
        2 => CtxFormat::B3,
        3 => CtxFormat::B3Multi,
        4 => CtxFormat::Jaeger,
        5 => CtxFormat::Xray,
        other => panic!("unknown format {other}"),
    };
    assert_eq!(
        found == 1,
        format != CtxFormat::None,
        "result and format agree"
    );
    assert!(out.flags <= 1, "only the sampled bit is kept");
    (found == 1).then(|| Parsed {
        trace_id: hex(&out.trace_id),
        span_id: hex(&out.span_id),
        sampled: out.flags == 1,
        format,
    })
}

fn ctx(trace_id: &str, span_id: &str, sampled: bool, format: CtxFormat) -> Option<Parsed> {
    Some(Parsed {
        trace_id: trace_id.to_owned(),
        span_id: span_id.to_owned(),
        sampled,
        format,
    })
}

const W3C_HEAD: &str = "GET /w3c HTTP/1.1\r\nHost: 127.0.0.1:46831\r\nUser-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\ntraceparent: 00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-03\r\ntracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE\r\n\r\n";
const W3C_VALUE: &str = "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-03";
const B3_HEAD: &str = "GET /b3 HTTP/1.1\r\nHost: 127.0.0.1:46831\r\nUser-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nb3: c27e576d4e73fe625e484872bbd8f2a7-b112849bdd53265c-1\r\n\r\n";
const B3_VALUE: &str = "c27e576d4e73fe625e484872bbd8f2a7-b112849bdd53265c-1";
const B3_MULTI_HEAD: &str = "GET /b3multi HTTP/1.1\r\nHost: 127.0.0.1:46831\r\nUser-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nx-b3-traceid: fe80eb08996d8ca0e74482fe4a6c4330\r\nx-b3-spanid: 8d3677c20a4f8417\r\nx-b3-sampled: 1\r\n\r\n";
const JAEGER_HEAD: &str = "GET /jaeger HTTP/1.1\r\nHost: 127.0.0.1:46831\r\nUser-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nuber-trace-id: 428dac937b5a0d4c3434dd9cc05cdff6:d26adcb29eee88a8:0000000000000000:03\r\n\r\n";
const JAEGER_VALUE: &str = "428dac937b5a0d4c3434dd9cc05cdff6:d26adcb29eee88a8:0000000000000000:03";
const XRAY_HEAD: &str = "GET /xray HTTP/1.1\r\nHost: 127.0.0.1:46831\r\nUser-Agent: python-requests/2.34.2\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nX-Amzn-Trace-Id: Root=1-66f94cf5-42174b8f113afeaeba08c3d2;Parent=17ca4a3ff19867b8;Sampled=1\r\n\r\n";
const XRAY_VALUE: &str =
    "Root=1-66f94cf5-42174b8f113afeaeba08c3d2;Parent=17ca4a3ff19867b8;Sampled=1";

/// The captured W3C head with its traceparent line replaced by `line` (all of it).
fn w3c_with(line: &str) -> String {
    W3C_HEAD.replace(&format!("traceparent: {W3C_VALUE}"), line)
}

fn w3c_value(value: &str) -> Option<Parsed> {
    parse(w3c_with(&format!("traceparent: {value}")).as_bytes())
}

const W3C_TRACE: &str = "26c7a43cb8c6814cddf18638103d76e9";
const W3C_SPAN: &str = "bd787f7536e1f99b";

#[test]
fn w3c_captured_request() {
    assert_eq!(
        parse(W3C_HEAD.as_bytes()),
        ctx(W3C_TRACE, W3C_SPAN, true, CtxFormat::W3c)
    );
    assert_eq!(
        w3c_value("00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-00"),
        ctx(W3C_TRACE, W3C_SPAN, false, CtxFormat::W3c),
        "flags 00: not sampled"
    );
}

#[test]
fn w3c_invalid_values_start_a_new_trace() {
    for value in [
        // upper-case hex
        "00-26C7A43CB8C6814CDDF18638103D76E9-bd787f7536e1f99b-01",
        "00-26c7a43cb8c6814cddf18638103d76e9-BD787F7536E1F99B-01",
        "0A-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-01",
        // wrong lengths
        "00-26c7a43cb8c6814cddf18638103d76e-bd787f7536e1f99b-01",
        "00-26c7a43cb8c6814cddf18638103d76e9a-bd787f7536e1f99b-01",
        "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99-01",
        "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-1",
        "0-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-01",
        // version 00 is exactly 55 characters
        "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-01-extra",
        "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-01x",
        // version ff is forbidden
        "ff-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-01",
        // all-zero IDs
        "00-00000000000000000000000000000000-bd787f7536e1f99b-01",
        "00-26c7a43cb8c6814cddf18638103d76e9-0000000000000000-01",
        // separators and characters
        "00_26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-01",
        "00-26c7a43cb8c6814cddf18638103d76e9_bd787f7536e1f99b-01",
        "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-0g",
        "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-.1",
        "00-26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b",
        "",
    ] {
        assert_eq!(w3c_value(value), None, "{value:?}");
    }
}

#[test]
fn w3c_later_versions_are_read_by_the_00_layout() {
    let expect = ctx(W3C_TRACE, W3C_SPAN, true, CtxFormat::W3c);
    let base = "26c7a43cb8c6814cddf18638103d76e9-bd787f7536e1f99b-01";
    assert_eq!(w3c_value(&format!("cc-{base}")), expect);
    assert_eq!(
        w3c_value(&format!("cc-{base}-what-the-future-holds")),
        expect
    );
    assert_eq!(w3c_value(&format!("01-{base}-")), expect);
    assert_eq!(
        w3c_value(&format!("cc-{base}.what")),
        None,
        "no '-' after the flags"
    );
}

#[test]
fn w3c_optional_whitespace_and_name_case() {
    let expect = ctx(W3C_TRACE, W3C_SPAN, true, CtxFormat::W3c);
    for line in [
        format!("traceparent:{W3C_VALUE}"),
        format!("traceparent: \t {W3C_VALUE} \t"),
        format!("TraceParent: {W3C_VALUE}"),
        format!("TRACEPARENT: {W3C_VALUE}"),
    ] {
        assert_eq!(parse(w3c_with(&line).as_bytes()), expect, "{line:?}");
    }
    // Whitespace before the colon is not a header name (RFC 9112 §5.1).
    assert_eq!(
        parse(w3c_with(&format!("traceparent : {W3C_VALUE}")).as_bytes()),
        None
    );
    // LF-only line ends are accepted like CRLF.
    assert_eq!(parse(W3C_HEAD.replace("\r\n", "\n").as_bytes()), expect);
}

/// The whitespace and hex scans read eight bytes at a time: runs that end exactly at, or
/// just past, a word boundary, and bytes that only differ from a digit by the high bit.
#[test]
fn word_at_a_time_edges() {
    let expect = ctx(W3C_TRACE, W3C_SPAN, true, CtxFormat::W3c);
    for blanks in 0..=8 {
        for pad in [" ", "\t"] {
            let ws = pad.repeat(blanks);
            for line in [
                format!("traceparent:{ws}{W3C_VALUE}"),
                format!("traceparent:{W3C_VALUE}{ws}"),
                format!("traceparent:{ws}{W3C_VALUE}{ws}"),
            ] {
                assert_eq!(parse(w3c_with(&line).as_bytes()), expect, "{line:?}");
            }
        }
    }
    // More than 8 blanks is not a value we decode, on either side.
    for line in [
        format!("traceparent:{}{W3C_VALUE}", " ".repeat(9)),
        format!("traceparent:{W3C_VALUE}{}", " ".repeat(9)),
        format!("traceparent:{}", " ".repeat(12)),
        "traceparent:".to_owned(),
    ] {
        assert_eq!(parse(w3c_with(&line).as_bytes()), None, "{line:?}");
    }

    // '0' | 0x80 and 'a' | 0x80 are not digits, wherever they sit in a word.
    for at in [3, 10, 11, 18, 34, 36, 51, 53, 54] {
        for high in [
            b'0' | 0x80,
            b'a' | 0x80,
            b'9' + 1,
            b'a' - 1,
            b'f' + 1,
            b'0' - 1,
        ] {
            let mut head = W3C_HEAD.as_bytes().to_vec();
            let value = W3C_HEAD.find(W3C_VALUE).expect("value in head");
            head[value + at] = high;
            assert_eq!(parse(&head), None, "byte {high:#x} at {at}");
        }
    }
    // Each format's value starting at each offset within a word.
    let (b3_trace, b3_span) = ("c27e576d4e73fe625e484872bbd8f2a7", "b112849bdd53265c");
    let b3_multi = format!("X-B3-TraceId: {b3_trace}\r\nX-B3-SpanId: {b3_span}");
    let cases = [
        (format!("traceparent: {W3C_VALUE}"), expect.clone()),
        (
            format!("b3: {b3_trace}-{b3_span}-1"),
            ctx(b3_trace, b3_span, true, CtxFormat::B3),
        ),
        (b3_multi, ctx(b3_trace, b3_span, true, CtxFormat::B3Multi)),
        (
            format!("uber-trace-id: {JAEGER_VALUE}"),
            parse(JAEGER_HEAD.as_bytes()),
        ),
        (
            format!("X-Amzn-Trace-Id: {XRAY_VALUE}"),
            parse(XRAY_HEAD.as_bytes()),
        ),
    ];
    for (line, want) in &cases {
        assert!(want.is_some(), "{line}");
        for shift in 0..8 {
            let head = format!(
                "GET / HTTP/1.1\r\nX-Pad: {}\r\n{line}\r\n\r\n",
                "p".repeat(shift)
            );
            assert_eq!(&parse(head.as_bytes()), want, "{head:?}");
        }
    }

    // Every digit value, in every position of a word.
    let trace = "0123456789abcdeffedcba9876543210";
    let span = "a0b1c2d3e4f56789";
    assert_eq!(
        w3c_value(&format!("00-{trace}-{span}-01")),
        ctx(trace, span, true, CtxFormat::W3c)
    );
}

#[test]
fn w3c_header_cut_by_the_capture_is_ignored() {
    let head = W3C_HEAD.as_bytes();
    let line_end = W3C_HEAD.find("\r\ntracestate").expect("captured head");
    // Cut anywhere inside the traceparent line, its CR included: the line is not complete.
    let line_start = W3C_HEAD.find("traceparent").expect("captured head");
    for cut in line_start..=line_end + 1 {
        assert_eq!(parse(&head[..cut]), None, "cut at {cut}");
    }
    // Once the line is complete the header block need not be.
    assert_eq!(
        parse(&head[..line_end + 2]),
        ctx(W3C_TRACE, W3C_SPAN, true, CtxFormat::W3c)
    );
}

#[test]
fn only_the_header_block_counts() {
    // In the body.
    let body = format!(
        "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 69\r\n\r\ntraceparent: {W3C_VALUE}\r\n\r\n"
    );
    assert_eq!(parse(body.as_bytes()), None);
    // In the request line, or inside another header's value.
    let target = format!("GET /traceparent: HTTP/1.1\r\nX-Note: traceparent: {W3C_VALUE}\r\n\r\n");
    assert_eq!(parse(target.as_bytes()), None);
    let first_line = format!("traceparent: {W3C_VALUE}\r\nHost: h\r\n\r\n");
    assert_eq!(
        parse(first_line.as_bytes()),
        None,
        "the request line is no header"
    );
    // A line continued by obs-fold cannot be trusted.
    let folded = w3c_with(&format!("traceparent: {W3C_VALUE}\r\n  -extra"));
    assert_eq!(parse(folded.as_bytes()), None);
}

#[test]
fn duplicate_traceparent_is_invalid() {
    let twice = w3c_with(&format!(
        "traceparent: {W3C_VALUE}\r\ntraceparent: {W3C_VALUE}"
    ));
    assert_eq!(parse(twice.as_bytes()), None);
    // Another valid header is then used.
    let with_b3 = w3c_with(&format!(
        "traceparent: {W3C_VALUE}\r\nb3: {B3_VALUE}\r\ntraceparent: {W3C_VALUE}"
    ));
    assert_eq!(
        parse(with_b3.as_bytes()).map(|p| p.format),
        Some(CtxFormat::B3)
    );
}

#[test]
fn heads_longer_than_the_capture_limit_are_refused() {
    let mut out = RawParsed::default();
    let big = vec![b'a'; crate::abi::MAX_CAPTURE + 1];
    // SAFETY: as in `parse`.
    let r = unsafe { sonde_ctx_parse_host(big.as_ptr(), big.len() as u32, b'\n', &mut out) };
    assert_eq!(r, -1);
    // A header right at the end of the largest capture is still found.
    let mut head = W3C_HEAD.replace("Accept: */*\r\n", "");
    let pad = crate::abi::MAX_CAPTURE - head.len();
    head = head.replacen(
        "\r\n",
        &format!("\r\nX-Pad: {}\r\n", "p".repeat(pad - 9)),
        1,
    );
    assert_eq!(head.len(), crate::abi::MAX_CAPTURE);
    assert_eq!(
        parse(head.as_bytes()),
        ctx(W3C_TRACE, W3C_SPAN, true, CtxFormat::W3c)
    );
}

fn b3_value(value: &str) -> Option<Parsed> {
    parse(B3_HEAD.replace(B3_VALUE, value).as_bytes())
}

#[test]
fn b3_single() {
    let (trace, span) = ("c27e576d4e73fe625e484872bbd8f2a7", "b112849bdd53265c");
    assert_eq!(
        parse(B3_HEAD.as_bytes()),
        ctx(trace, span, true, CtxFormat::B3)
    );
    let cases = [
        (format!("{trace}-{span}"), true),
        (format!("{trace}-{span}-0"), false),
        (format!("{trace}-{span}-d"), true),
        (format!("{trace}-{span}-1-05e3ac9a4f6e3b90"), true),
    ];
    for (value, sampled) in cases {
        assert_eq!(
            b3_value(&value),
            ctx(trace, span, sampled, CtxFormat::B3),
            "{value}"
        );
    }
    // A 64-bit trace ID is left-padded with zeros.
    assert_eq!(
        b3_value(&format!("e457b5a2e4d86bd1-{span}-1")),
        ctx(
            "0000000000000000e457b5a2e4d86bd1",
            span,
            true,
            CtxFormat::B3
        )
    );
    for value in [
        "0".to_owned(),
        "1".to_owned(),
        "d".to_owned(),
        format!("{trace}-{span}-x"),
        format!("{trace}-{span}-1-05e3ac9a4f6e3b9"),
        format!("{trace}-{span}-1-"),
        format!("{trace}-{span}-"),
        format!("{}-{span}", &trace[..20]),
        format!("{trace}-{}", &span[..15]),
        format!("{}-{span}", trace.to_uppercase()),
        format!("00000000000000000000000000000000-{span}"),
        format!("{trace}-0000000000000000"),
    ] {
        assert_eq!(b3_value(&value), None, "{value:?}");
    }
}

fn b3_multi_with(lines: &str) -> Option<Parsed> {
    let block = "x-b3-traceid: fe80eb08996d8ca0e74482fe4a6c4330\r\nx-b3-spanid: 8d3677c20a4f8417\r\nx-b3-sampled: 1";
    parse(B3_MULTI_HEAD.replace(block, lines).as_bytes())
}

#[test]
fn b3_multi() {
    let (trace, span) = ("fe80eb08996d8ca0e74482fe4a6c4330", "8d3677c20a4f8417");
    assert_eq!(
        parse(B3_MULTI_HEAD.as_bytes()),
        ctx(trace, span, true, CtxFormat::B3Multi)
    );
    let ids = format!("X-B3-TraceId: {trace}\r\nX-B3-SpanId: {span}");
    assert_eq!(
        b3_multi_with(&ids),
        ctx(trace, span, true, CtxFormat::B3Multi)
    );
    for (extra, sampled) in [
        ("X-B3-Sampled: 0", false),
        ("X-B3-Sampled: false", false),
        ("X-B3-Sampled: true", true),
        ("X-B3-Sampled: 0\r\nX-B3-Flags: 1", true),
    ] {
        assert_eq!(
            b3_multi_with(&format!("{ids}\r\n{extra}")),
            ctx(trace, span, sampled, CtxFormat::B3Multi),
            "{extra}"
        );
    }
    assert_eq!(
        b3_multi_with(&format!(
            "X-B3-TraceId: a2fb4a1d1a96d312\r\nX-B3-SpanId: {span}"
        )),
        ctx(
            "0000000000000000a2fb4a1d1a96d312",
            span,
            true,
            CtxFormat::B3Multi
        )
    );
    for lines in [
        format!("X-B3-TraceId: {trace}"),
        format!("X-B3-SpanId: {span}"),
        format!("{ids}\r\nX-B3-Sampled: yes"),
        format!("{ids}\r\nX-B3-Flags: 2"),
        format!("X-B3-TraceId: {trace}0\r\nX-B3-SpanId: {span}"),
        format!("X-B3-TraceId: {trace}\r\nX-B3-SpanId: {span}0"),
    ] {
        assert_eq!(b3_multi_with(&lines), None, "{lines:?}");
    }
}

fn jaeger_value(value: &str) -> Option<Parsed> {
    parse(JAEGER_HEAD.replace(JAEGER_VALUE, value).as_bytes())
}

#[test]
fn jaeger() {
    let (trace, span) = ("428dac937b5a0d4c3434dd9cc05cdff6", "d26adcb29eee88a8");
    assert_eq!(
        parse(JAEGER_HEAD.as_bytes()),
        ctx(trace, span, true, CtxFormat::Jaeger),
        "flags 03: sampled and debug"
    );
    let short = ctx(
        "00000000000000000000000000000abc",
        "000000000000001f",
        true,
        CtxFormat::Jaeger,
    );
    for value in [
        "abc:1f:0:1",
        "abc%3A1f%3A0%3A1",
        "abc%3a1f%3a0%3a1",
        "ABC:1F:0:1",
        "abc:1f:0:2",
    ] {
        assert_eq!(jaeger_value(value), short, "{value}");
    }
    assert_eq!(
        jaeger_value(&format!("{trace}:{span}:0:0")),
        ctx(trace, span, false, CtxFormat::Jaeger)
    );
    for value in [
        "0:1f:0:1",
        "abc:0:0:1",
        "abc:1f:0",
        "abc:1f:0:1:",
        "abc:1f:0:1:1",
        "abc::0:1",
        "abc:1f:0:100",
        "abc:1f0000000000000000:0:1",
        "abc%3B1f:0:1",
        "abc%3:1f:0:1",
        "abc:1g:0:1",
        &format!("{trace}0:{span}:0:1"),
    ] {
        assert_eq!(jaeger_value(value), None, "{value:?}");
    }
}

fn xray_value(value: &str) -> Option<Parsed> {
    parse(XRAY_HEAD.replace(XRAY_VALUE, value).as_bytes())
}

#[test]
fn xray() {
    let (trace, span) = ("66f94cf542174b8f113afeaeba08c3d2", "17ca4a3ff19867b8");
    let root = "Root=1-66f94cf5-42174b8f113afeaeba08c3d2";
    let parent = "Parent=17ca4a3ff19867b8";
    assert_eq!(
        parse(XRAY_HEAD.as_bytes()),
        ctx(trace, span, true, CtxFormat::Xray)
    );
    for (value, sampled) in [
        (format!("{parent};{root};Sampled=0"), false),
        (
            format!("Self=1-67891234-12456789abcdef012345678;{root};{parent};Sampled=1"),
            true,
        ),
        (format!("{root}; {parent}; Sampled=?"), true),
        (
            format!("Sampled=0;Lineage=a87bd80c:1|68fd508a:5;{root};{parent}"),
            false,
        ),
        (format!("{root};{parent}"), true),
    ] {
        assert_eq!(
            xray_value(&value),
            ctx(trace, span, sampled, CtxFormat::Xray),
            "{value}"
        );
    }
    for value in [
        root.to_owned(),
        parent.to_owned(),
        format!("Root=1-66f94cf5-42174b8f113afeaeba08c3d;{parent}"),
        format!("Root=1-66f94cf5-42174b8f113afeaeba08c3d2x;{parent}"),
        format!("Root=2-66f94cf5-42174b8f113afeaeba08c3d2;{parent}"),
        format!("{root};Parent=17ca4a3ff19867b"),
        format!("{root};Parent=17CA4A3FF19867B8"),
        format!("{root};XParent=17ca4a3ff19867b8"),
        format!("Root=1-00000000-000000000000000000000000;{parent}"),
    ] {
        assert_eq!(xray_value(&value), None, "{value:?}");
    }
}

#[test]
fn precedence_is_w3c_b3_b3multi_jaeger_xray() {
    let all = [
        format!("X-Amzn-Trace-Id: {XRAY_VALUE}"),
        format!("uber-trace-id: {JAEGER_VALUE}"),
        "X-B3-TraceId: fe80eb08996d8ca0e74482fe4a6c4330\r\nX-B3-SpanId: 8d3677c20a4f8417"
            .to_owned(),
        format!("b3: {B3_VALUE}"),
        format!("traceparent: {W3C_VALUE}"),
    ];
    let order = [
        CtxFormat::Xray,
        CtxFormat::Jaeger,
        CtxFormat::B3Multi,
        CtxFormat::B3,
        CtxFormat::W3c,
    ];
    // Headers listed lowest first: wire order must not matter.
    for n in 1..=all.len() {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n\r\n",
            all[..n].join("\r\n")
        );
        assert_eq!(parse(head.as_bytes()).map(|p| p.format), Some(order[n - 1]));
    }
    // An invalid higher-precedence header does not hide a valid lower one.
    let head = format!(
        "GET / HTTP/1.1\r\ntraceparent: ff-{}\r\nX-Amzn-Trace-Id: {XRAY_VALUE}\r\n\r\n",
        &W3C_VALUE[3..]
    );
    assert_eq!(
        parse(head.as_bytes()).map(|p| p.format),
        Some(CtxFormat::Xray)
    );
}

#[test]
fn requests_without_context() {
    for head in [
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\ntracestate: rojo=1\r\nX-B3-Sampled: 1\r\nb3: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nbaggage: a=b\r\nuber-ctx-x: y\r\n\r\n",
        "",
        "\r\n\r\n",
        "GET",
    ] {
        assert_eq!(parse(head.as_bytes()), None, "{head:?}");
    }
}
