//! Every case in `cases()` is a byte stream cut into messages, each with the events it
//! must produce. `check_case` runs it as one segment, byte by byte, at random split
//! points and with limited capture (heads cut to N bytes, gap, 8-byte tail), and
//! compares events with timestamps mapped back to byte offsets, in the spirit of
//! ripgrep's `SearcherTester`.
//!
//! The same streams, mutated or replaced by noise, feed
//! `random_input_never_panics_and_stays_bounded` at the end.

use std::collections::BTreeSet;
use std::ops::Range;

use super::testutil::{
    TLS_HELLO, captured, curl_get, curl_post, head_len, nginx_200, nginx_head, node_chunked,
    pattern,
};
use super::{
    Http1Event, Incomplete, MAX_HEAD_BLOCK, MAX_TARGET, RequestStream, ResponseStream, Segment,
};

// ------------------------------------------------------------------ harness ----

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Req,
    Resp,
}

/// What one piece of the stream must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A complete message: Start at its first byte, End at its last.
    Message,
    /// A 1xx interim response: nothing.
    Interim,
    /// 101 or 2xx to CONNECT: Start, End with no body, then a tunnel.
    Upgrade,
    /// Tunnel payload: nothing.
    Opaque,
    /// Not HTTP: NotHttp at its first byte; the next message starts a segment.
    Garbage,
    /// Last message, body delimited by the close: End comes from `finish`.
    UntilClose,
    /// Last message, cut off: `finish` returns it as incomplete.
    CutOff,
}

struct Msg {
    bytes: Vec<u8>,
    kind: Kind,
}

struct Case {
    name: &'static str,
    dir: Dir,
    /// Request methods announced to a `ResponseStream` before feeding.
    methods: Vec<&'static str>,
    msgs: Vec<Msg>,
}

/// Events with what matters for comparison; `ts` is the start offset of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Req {
        ts: u64,
        method: String,
        target: String,
        version: &'static str,
        truncated: bool,
    },
    Resp {
        ts: u64,
        status: u16,
        version: &'static str,
        truncated: bool,
    },
    End {
        ts: u64,
        body: u64,
    },
    NotHttp {
        ts: u64,
    },
    Incomplete {
        ts: u64,
        body: u64,
    },
}

fn ev(event: &Http1Event) -> Ev {
    match event {
        Http1Event::RequestStart { ts_ns, head } => Ev::Req {
            ts: *ts_ns,
            method: head.method.to_string(),
            target: head.target.clone(),
            version: head.version.as_str(),
            truncated: head.truncated,
        },
        Http1Event::ResponseStart { ts_ns, head } => Ev::Resp {
            ts: *ts_ns,
            status: head.status,
            version: head.version.as_str(),
            truncated: head.truncated,
        },
        Http1Event::MessageEnd { ts_ns, body_bytes } => Ev::End {
            ts: *ts_ns,
            body: *body_bytes,
        },
        Http1Event::NotHttp { ts_ns } => Ev::NotHttp { ts: *ts_ns },
    }
}

enum AnyStream {
    Req(RequestStream),
    Resp(ResponseStream),
}

impl AnyStream {
    fn new(dir: Dir, methods: &[&str]) -> Self {
        match dir {
            Dir::Req => AnyStream::Req(RequestStream::new()),
            Dir::Resp => {
                let mut stream = ResponseStream::new();
                for method in methods {
                    stream.expect_response(method);
                }
                AnyStream::Resp(stream)
            }
        }
    }

    fn push(&mut self, seg: &Segment<'_>, out: &mut Vec<Http1Event>) {
        match self {
            AnyStream::Req(s) => s.push(seg, out),
            AnyStream::Resp(s) => s.push(seg, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<Http1Event>) -> Option<Incomplete> {
        match self {
            AnyStream::Req(s) => s.finish(out),
            AnyStream::Resp(s) => s.finish(out),
        }
    }

    fn retained_bytes(&self) -> usize {
        match self {
            AnyStream::Req(s) => s.core.retained_bytes(),
            AnyStream::Resp(s) => s.core.retained_bytes(),
        }
    }
}

fn is_chunked(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..head_len(bytes)]).to_ascii_lowercase();
    head.contains("transfer-encoding: chunked")
}

/// Ranges of a chunked body that carry framing (size lines, CRLFs, trailers): a
/// reference walker over complete bytes, independent of the parser.
fn chunk_framing(body: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut p = 0;
    while p < body.len() {
        let Some(lf) = body[p..].iter().position(|&b| b == b'\n') else {
            ranges.push(p..body.len());
            break;
        };
        let line = &body[p..p + lf];
        let hex: String = line
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .map(|&b| b as char)
            .collect();
        let size = usize::from_str_radix(&hex, 16).unwrap_or(0);
        ranges.push(p..p + lf + 1);
        p += lf + 1;
        if size == 0 {
            ranges.push(p..body.len());
            break;
        }
        p += size;
        let end_len = if body.get(p) == Some(&b'\r') { 2 } else { 1 };
        ranges.push(p.min(body.len())..(p + end_len).min(body.len()));
        p += end_len;
    }
    ranges
}

/// The first line's words, without the line end.
fn first_line_words(bytes: &[u8]) -> Vec<String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim_end_matches('\r')
        .splitn(3, ' ')
        .map(str::to_owned)
        .collect()
}

fn version_of(word: &str) -> &'static str {
    match word {
        "HTTP/1.0" => "1.0",
        _ => "1.1",
    }
}

fn start_ev(dir: Dir, bytes: &[u8], ts: u64) -> Ev {
    let words = first_line_words(bytes);
    let word = |i: usize| words.get(i).cloned().unwrap_or_default();
    match dir {
        Dir::Req => Ev::Req {
            ts,
            method: word(0),
            target: word(1),
            version: version_of(&word(2)),
            truncated: false,
        },
        Dir::Resp => Ev::Resp {
            ts,
            status: word(1).parse().unwrap_or(0),
            version: version_of(&word(0)),
            truncated: false,
        },
    }
}

impl Case {
    fn stream(&self) -> Vec<u8> {
        self.msgs
            .iter()
            .flat_map(|m| m.bytes.iter().copied())
            .collect()
    }

    /// (start offset, message) pairs.
    fn layout(&self) -> Vec<(usize, &Msg)> {
        let mut offset = 0;
        self.msgs
            .iter()
            .map(|m| {
                let start = offset;
                offset += m.bytes.len();
                (start, m)
            })
            .collect()
    }

    /// Cuts every segmentation must have, and ranges none may cut: after garbage,
    /// resync needs a segment that starts with the next start line.
    fn constraints(&self) -> (Vec<usize>, Vec<Range<usize>>) {
        let mut forced = Vec::new();
        let mut atomic = Vec::new();
        let layout = self.layout();
        for (i, (start, msg)) in layout.iter().enumerate() {
            if msg.kind == Kind::Garbage {
                let end = start + msg.bytes.len();
                forced.push(end);
                if let Some((next, next_msg)) = layout.get(i + 1) {
                    let line = next_msg
                        .bytes
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    atomic.push(*next..next + line);
                }
            }
        }
        (forced, atomic)
    }

    /// Byte ranges that must be captured for the events to be derivable.
    fn critical(&self) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        for (start, msg) in self.layout() {
            match msg.kind {
                Kind::Opaque => {}
                Kind::Garbage => ranges.push(start..start + msg.bytes.len()),
                _ => {
                    let head = head_len(&msg.bytes);
                    ranges.push(start..start + head);
                    if is_chunked(&msg.bytes) {
                        for r in chunk_framing(&msg.bytes[head..]) {
                            ranges.push(start + head + r.start..start + head + r.end);
                        }
                    }
                }
            }
        }
        ranges
    }

    fn expected(&self, segs: &[Range<usize>]) -> Vec<Ev> {
        let ts_of = |p: usize| {
            segs.iter()
                .find(|r| r.contains(&p))
                .map_or(u64::MAX, |r| r.start as u64)
        };
        let mut out = Vec::new();
        for (start, msg) in self.layout() {
            let last = start + msg.bytes.len() - 1;
            let body = (msg.bytes.len() - head_len(&msg.bytes)) as u64;
            match msg.kind {
                Kind::Message | Kind::UntilClose => {
                    out.push(start_ev(self.dir, &msg.bytes, ts_of(start)));
                    out.push(Ev::End {
                        ts: ts_of(last),
                        body,
                    });
                }
                Kind::Upgrade => {
                    out.push(start_ev(self.dir, &msg.bytes, ts_of(start)));
                    out.push(Ev::End {
                        ts: ts_of(last),
                        body: 0,
                    });
                }
                Kind::CutOff => {
                    out.push(start_ev(self.dir, &msg.bytes, ts_of(start)));
                    out.push(Ev::Incomplete {
                        ts: ts_of(last),
                        body,
                    });
                }
                Kind::Garbage => out.push(Ev::NotHttp { ts: ts_of(start) }),
                Kind::Interim | Kind::Opaque => {}
            }
        }
        out
    }
}

/// Turns cut points into contiguous segment ranges, honouring the case's constraints.
fn segmentation(case: &Case, cuts: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
    let total = case.stream().len();
    let (forced, atomic) = case.constraints();
    let cuts: BTreeSet<usize> = cuts
        .into_iter()
        .filter(|&c| c > 0 && c < total)
        .filter(|&c| !atomic.iter().any(|a| a.start < c && c < a.end))
        .chain(forced.into_iter().filter(|&c| c > 0 && c < total))
        .collect();
    let mut ranges = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([total]) {
        ranges.push(start..cut);
        start = cut;
    }
    ranges
}

/// Feeds `bytes` cut into `segs`, each segment's head limited to `capture` bytes.
/// Returns the events (finish included) and the most memory retained at any point.
fn run(case: &Case, bytes: &[u8], segs: &[Range<usize>], capture: usize) -> (Vec<Ev>, usize) {
    let mut stream = AnyStream::new(case.dir, &case.methods);
    let mut out = Vec::new();
    let mut retained = 0;
    for r in segs {
        let seg_bytes = &bytes[r.clone()];
        let head = &seg_bytes[..seg_bytes.len().min(capture)];
        let tail = if head.len() < seg_bytes.len() {
            &seg_bytes[seg_bytes.len().saturating_sub(8)..]
        } else {
            &[][..]
        };
        let seg = Segment {
            ts_ns: r.start as u64,
            len: seg_bytes.len() as u64,
            head,
            tail,
        };
        stream.push(&seg, &mut out);
        retained = retained.max(stream.retained_bytes());
    }
    let incomplete = stream.finish(&mut out);
    let mut evs: Vec<Ev> = out.iter().map(ev).collect();
    if let Some(inc) = incomplete {
        evs.push(Ev::Incomplete {
            ts: inc.ts_ns,
            body: inc.body_bytes,
        });
    }
    (evs, retained)
}

/// Events every run must satisfy, derivable or not: messages open and close in
/// turn, timestamps never go back, memory stays bounded.
fn check_well_formed(name: &str, evs: &[Ev], retained: usize) {
    let mut open = false;
    let mut last_ts = 0;
    for e in evs {
        let (ts, opens, closes) = match e {
            Ev::Req { ts, .. } | Ev::Resp { ts, .. } => (*ts, true, false),
            Ev::End { ts, .. } | Ev::Incomplete { ts, .. } => (*ts, false, true),
            Ev::NotHttp { ts } => (*ts, false, false),
        };
        assert!(ts >= last_ts, "{name}: time went back in {evs:?}");
        last_ts = ts;
        if opens {
            assert!(!open, "{name}: start inside a message in {evs:?}");
        } else if closes {
            assert!(open, "{name}: end outside a message in {evs:?}");
        } else {
            assert!(!open, "{name}: NotHttp inside a message in {evs:?}");
        }
        open = opens;
    }
    assert!(
        retained <= 2 * MAX_HEAD_BLOCK + MAX_TARGET,
        "{name}: retained {retained} bytes"
    );
}

fn assert_run(case: &Case, mode: &str, segs: &[Range<usize>]) {
    let bytes = case.stream();
    let (got, retained) = run(case, &bytes, segs, usize::MAX);
    check_well_formed(case.name, &got, retained);
    assert_eq!(got, case.expected(segs), "case {} mode {mode}", case.name);
}

/// Runs one case in every mode.
fn check_case(case: &Case) {
    let bytes = case.stream();
    let total = bytes.len();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ total as u64);

    assert_run(case, "one segment", &segmentation(case, []));
    assert_run(case, "byte by byte", &segmentation(case, 1..total));
    for i in 0..40 {
        let n = 1 + rng.below(if i % 4 == 0 { total } else { 12 });
        let cuts: Vec<usize> = (0..n).map(|_| rng.below(total)).collect();
        assert_run(case, &format!("random #{i}"), &segmentation(case, cuts));
    }

    // Limited capture: realistic writes (one per head and one per body) and random cuts.
    let mut writes = Vec::new();
    for (start, msg) in case.layout() {
        writes.push(start);
        if msg.kind != Kind::Opaque && msg.kind != Kind::Garbage {
            writes.push(start + head_len(&msg.bytes));
        }
    }
    let critical = case.critical();
    let mut compared = 0;
    for capture in [16, 64, 300, 2048] {
        let mut segmentations = vec![segmentation(case, writes.clone())];
        for _ in 0..10 {
            let n = 1 + rng.below(8);
            segmentations.push(segmentation(case, (0..n).map(|_| rng.below(total))));
        }
        for segs in segmentations {
            let (got, retained) = run(case, &bytes, &segs, capture);
            check_well_formed(case.name, &got, retained);
            let known = |p: usize| {
                segs.iter()
                    .any(|r| r.contains(&p) && (p < r.start + capture || p + 8 >= r.end))
            };
            if critical.iter().all(|r| r.clone().all(known)) {
                compared += 1;
                assert_eq!(
                    got,
                    case.expected(&segs),
                    "case {} capture {capture} {segs:?}",
                    case.name
                );
            }
        }
    }
    assert!(
        compared > 0,
        "case {}: no limited-capture run was derivable",
        case.name
    );
}

// ------------------------------------------------------------------- cases ----

fn msg(kind: Kind, bytes: impl AsRef<[u8]>) -> Msg {
    Msg {
        bytes: bytes.as_ref().to_vec(),
        kind,
    }
}

fn cases() -> Vec<Case> {
    let chunked_upload = {
        let mut b = b"POST /upload HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
            Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
            .to_vec();
        b.extend_from_slice(b"1000\r\n");
        b.extend(pattern(4096));
        b.extend_from_slice(b"\r\n5;name=value\r\nhello\r\n1A; quoted=\"a;b\"\r\n");
        b.extend(pattern(26));
        b.extend_from_slice(b"\r\n0\r\nX-Checksum: 5d41402a\r\nX-Other: 1\r\n\r\n");
        b
    };
    let python_until_close = {
        let mut b = b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6 Python/3.12.3\r\n\
            Date: Tue, 02 Jan 2024 10:00:00 GMT\r\nContent-Type: text/plain\r\n\r\n"
            .to_vec();
        b.extend(pattern(3000));
        b
    };
    let mut cut_nginx = nginx_200(5000);
    cut_nginx.truncate(cut_nginx.len() - 3766);
    let mut cut_chunked = node_chunked(&[&pattern(3000), b"{}"]);
    cut_chunked.truncate(cut_chunked.len() - 12);

    vec![
        Case {
            name: "get keep-alive",
            dir: Dir::Req,
            methods: vec![],
            msgs: (0..20)
                .map(|i| msg(Kind::Message, curl_get(&format!("/api/items/{i}?page={i}&sort=desc"))))
                .collect(),
        },
        Case {
            name: "pipelined requests",
            dir: Dir::Req,
            methods: vec![],
            msgs: vec![
                msg(Kind::Message, curl_get("/a")),
                msg(Kind::Message, b"HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"),
                msg(Kind::Message, curl_post("/c", 11)),
                msg(Kind::Message, b"DELETE /d/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
                msg(Kind::Message, b"PROPFIND /dav/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\n\r\n"),
            ],
        },
        Case {
            name: "post large body",
            dir: Dir::Req,
            methods: vec![],
            msgs: vec![
                msg(Kind::Message, curl_post("/upload", 20_000)),
                msg(Kind::Message, curl_get("/after")),
            ],
        },
        Case {
            name: "chunked request",
            dir: Dir::Req,
            methods: vec![],
            msgs: vec![msg(Kind::Message, chunked_upload), msg(Kind::Message, curl_get("/next"))],
        },
        Case {
            name: "chunked responses",
            dir: Dir::Resp,
            methods: vec!["GET", "GET", "GET"],
            msgs: vec![
                msg(Kind::Message, node_chunked(&[b"{\"id\":1,\"name\":\"widget\"}"])),
                msg(Kind::Message, node_chunked(&[&pattern(5000), &pattern(17), b"]"])),
                msg(Kind::Message, nginx_200(615)),
            ],
        },
        Case {
            name: "bodiless responses",
            dir: Dir::Resp,
            methods: vec!["HEAD", "DELETE", "GET", "GET", "GET"],
            msgs: vec![
                msg(Kind::Message, nginx_head(615)),
                msg(Kind::Message, b"HTTP/1.1 204 No Content\r\nServer: nginx\r\nContent-Length: 12\r\n\r\n"),
                msg(Kind::Message, b"HTTP/1.1 304 Not Modified\r\nServer: nginx/1.24.0\r\nETag: \"65928f10-267\"\r\nContent-Length: 615\r\n\r\n"),
                msg(Kind::Message, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                msg(Kind::Message, nginx_200(100)),
            ],
        },
        Case {
            name: "100 continue",
            dir: Dir::Resp,
            methods: vec!["POST", "GET"],
            msgs: vec![
                msg(Kind::Interim, b"HTTP/1.1 100 Continue\r\n\r\n"),
                msg(Kind::Interim, b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"),
                msg(Kind::Message, b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"id\":7}\n"),
                msg(Kind::Message, nginx_200(10)),
            ],
        },
        Case {
            name: "101 upgrade",
            dir: Dir::Resp,
            methods: vec!["GET"],
            msgs: vec![
                msg(Kind::Upgrade, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
                msg(Kind::Opaque, b"\x81\x05hello\x81\x1dHTTP/1.1 200 OK\r\nX: y\r\n\r\n\x88\x02\x03\xe8"),
            ],
        },
        Case {
            name: "connect tunnel",
            dir: Dir::Resp,
            methods: vec!["CONNECT"],
            msgs: vec![
                msg(Kind::Upgrade, b"HTTP/1.1 200 Connection established\r\n\r\n"),
                msg(Kind::Opaque, TLS_HELLO),
            ],
        },
        Case {
            name: "http/1.0 until close",
            dir: Dir::Resp,
            methods: vec!["GET"],
            msgs: vec![msg(Kind::UntilClose, python_until_close)],
        },
        Case {
            name: "response cut off",
            dir: Dir::Resp,
            methods: vec![],
            msgs: vec![msg(Kind::Message, nginx_200(3)), msg(Kind::CutOff, cut_nginx)],
        },
        Case {
            name: "chunked response cut off",
            dir: Dir::Resp,
            methods: vec![],
            msgs: vec![msg(Kind::CutOff, cut_chunked)],
        },
        Case {
            name: "request garbage then resync",
            dir: Dir::Req,
            methods: vec![],
            msgs: vec![
                msg(Kind::Message, curl_get("/first")),
                msg(Kind::Garbage, TLS_HELLO),
                msg(Kind::Message, curl_get("/again")),
                msg(Kind::Garbage, b"get /lowercase HTTP/1.1\r\n\r\n"),
                msg(Kind::Message, curl_post("/last", 100)),
            ],
        },
        Case {
            name: "response garbage then resync",
            dir: Dir::Resp,
            methods: vec![],
            msgs: vec![
                msg(Kind::Garbage, b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"),
                msg(Kind::Message, nginx_200(50)),
                msg(Kind::Garbage, b"HTTP/2.0 200 OK\r\n\r\n"),
                msg(Kind::Message, nginx_200(0)),
            ],
        },
        Case {
            name: "bare LF",
            dir: Dir::Req,
            methods: vec![],
            msgs: vec![
                msg(Kind::Message, b"GET /lf HTTP/1.1\nHost: x\n\n"),
                msg(Kind::Message, b"POST /lf HTTP/1.0\nContent-Length: 3\n\nabc"),
                msg(Kind::Message, b"POST /lf/chunked HTTP/1.1\nTransfer-Encoding: chunked\n\n5\nhello\n3;x=1\nabc\n0\nTrailer: t\n\n"),
                msg(Kind::Message, b"GET /mixed HTTP/1.1\r\nHost: x\n\r\n"),
            ],
        },
        Case {
            name: "bare LF responses",
            dir: Dir::Resp,
            methods: vec![],
            msgs: vec![
                msg(Kind::Message, b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"),
                msg(Kind::Message, b"HTTP/1.1 200\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n"),
            ],
        },
    ]
}

// ------------------------------------------------------------ harness tests ----

#[test]
fn all_cases_in_every_mode() {
    for case in cases() {
        check_case(&case);
    }
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    let valid: Vec<Vec<u8>> = cases().into_iter().map(|c| c.stream()).collect();
    for round in 0..300 {
        // Mutated valid streams and plain noise biased towards HTTP-ish bytes.
        let mut bytes = valid[round % valid.len()].clone();
        if round % 3 == 0 {
            let alphabet = b"GET /HTTP1.0 200\r\n:chunked0123456789abcdef;\x00\xff";
            bytes = (0..rng.below(5000))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
        } else {
            for _ in 0..1 + rng.below(20) {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
            }
        }
        let mut req = RequestStream::new();
        let mut resp = ResponseStream::new();
        resp.expect_response(["GET", "HEAD", "CONNECT"][round % 3]);
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = 1 + rng.below(3000.min(bytes.len() - at));
            let chunk = &bytes[at..at + len];
            let capture = [1, 8, 100, 2048, usize::MAX][rng.below(5)];
            let seg = captured(at as u64, chunk, capture);
            req.push(&seg, &mut out);
            resp.push(&seg, &mut out);
            if rng.below(20) == 0 {
                req.end_at_peer_turn(&mut out);
                resp.end_at_peer_turn(&mut out);
            }
            assert!(req.core.retained_bytes() <= MAX_HEAD_BLOCK + MAX_TARGET + 64);
            assert!(resp.core.retained_bytes() <= MAX_HEAD_BLOCK + 4096);
            at += len;
        }
        let _ = req.finish(&mut out);
        let _ = resp.finish(&mut out);
    }
}
