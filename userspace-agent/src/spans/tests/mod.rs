//! The span builder fed as capture feeds it, through the pipeline as the agent runs it:
//! connections, pairing, identity and parents, end to end without the kernel.

mod db;
mod http1;
mod http1_context;
mod tls;

use std::sync::Arc;

use crate::abi::{
    CtxFormat, CtxRole, Direction, InjectStatus, KernelParentSource, RawDataHeader, RawSockInfo,
    RawSockStateEvent, RawTraceCtx, TAIL_BYTES,
};
use crate::capture::{Capture, DataEvent, Source, TableLimits, TlsSource, WallClock};
use crate::metrics::Counters;
use crate::pipeline::Pipeline;
use crate::protocols::registry::{self, Detection as Found, PROTOCOLS};
use crate::spans::{
    KeyValue, Limits, Resource, Role, Session, Span, SpanBuilder, SpanKind, Status, Value,
};

/// TCP states from include/net/tcp_states.h that matter here.
mod tcp_state {
    pub const CLOSE: u8 = 7;
}

/// Capture, the span builder and the pipeline, driven the way the agent drives them
/// (timestamps read back as given).
pub(super) struct Harness {
    capture: Capture<Session>,
    builder: SpanBuilder,
    pipeline: Pipeline,
}

impl Harness {
    pub(super) fn new(builder: SpanBuilder, counters: Arc<Counters>) -> Self {
        Self {
            capture: Capture::new(
                TableLimits::default(),
                WallClock::identity(),
                Arc::clone(&counters),
            ),
            builder,
            pipeline: Pipeline::standard(counters),
        }
    }

    fn flush(&mut self, out: &mut Vec<Span>) {
        let batch = self.builder.batch();
        self.pipeline.run(batch);
        out.append(&mut batch.spans);
    }

    pub(super) fn on_data(&mut self, ev: &DataEvent<'_>, out: &mut Vec<Span>) {
        self.capture.data(ev, &mut self.builder);
        self.flush(out);
    }

    fn on_sock_state(&mut self, sock: u64, new_state: u8, ts_ns: u64, out: &mut Vec<Span>) {
        let s = RawSockStateEvent {
            kind: crate::abi::EV_SOCK_STATE,
            old_state: 0,
            new_state,
            _pad: [0; 5],
            ts_ns,
            sock_id: sock,
            folded_bytes: 0,
            folded_ts_ns: 0,
        };
        self.capture.sock_state(&s, &mut self.builder);
        self.flush(out);
    }

    fn on_sock_info(&mut self, info: &RawSockInfo, out: &mut Vec<Span>) {
        self.capture.folded_read(info, u64::MAX, &mut self.builder);
        self.flush(out);
    }

    fn quiet_open_exchanges(&self, now_ns: u64, quiet_ns: u64, limit: usize) -> Vec<u64> {
        self.capture.quiet_awaiting_folded(now_ns, quiet_ns, limit)
    }

    pub(super) fn tick(&mut self, now_ns: u64) {
        self.capture.tick(now_ns, &mut self.builder);
        self.builder.tick(now_ns);
    }

    fn connections(&self) -> usize {
        self.capture.connections()
    }

    fn process_exited(&mut self, tgid: u32) {
        self.pipeline.process_exited(tgid);
    }
}

/// What the first bytes of a connection say, as the old tracker's detection put it: the
/// registry's answer, seen from the process that moved the bytes.
#[derive(Debug, PartialEq, Eq)]
enum Detection {
    Http(Role),
    NotHttp,
    NeedMore,
}

fn detect(dir: Direction, head: &[u8]) -> Detection {
    match registry::detect(&PROTOCOLS[..1], head, |_| 0, true) {
        Found::Found { sender, .. } => Detection::Http(Role::of_process(dir, sender)),
        Found::NeedMore => Detection::NeedMore,
        Found::Unknown => Detection::NotHttp,
    }
}

const SERVER_SOCK: u64 = 0xaaaa;
const CLIENT_SOCK: u64 = 0xbbbb;

fn resource(pid: u32) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: format!("svc{pid}"),
        attributes: vec![KeyValue::new("process.pid", i64::from(pid))],
    })
}

fn tracker() -> (Harness, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let b = SpanBuilder::new(Limits::default(), Box::new(resource), Arc::clone(&counters));
    (Harness::new(b, Arc::clone(&counters)), counters)
}

pub(super) struct Ev {
    pub sock: u64,
    pub dir: Direction,
    pub ts: u64,
    pub bytes: Vec<u8>,
    pub total: u64,
    pub role: CtxRole,
    pub ctx: RawTraceCtx,
    pub source: KernelParentSource,
    pub format: CtxFormat,
    pub local_port: u16,
    pub remote_port: u16,
    pub tgid: u32,
    /// The socket's folded egress total and its time (`RawSockInfo`).
    pub folded: (u64, u64),
    /// Where the bytes were read (the socket, or a TLS library's plaintext).
    pub from: Source,
}

pub(super) fn ev(sock: u64, dir: Direction, ts: u64, bytes: &[u8]) -> Ev {
    Ev {
        sock,
        dir,
        ts,
        bytes: bytes.to_vec(),
        total: bytes.len() as u64,
        role: CtxRole::None,
        ctx: RawTraceCtx::default(),
        source: KernelParentSource::None,
        format: CtxFormat::None,
        local_port: if sock == SERVER_SOCK { 8080 } else { 40000 },
        remote_port: if sock == SERVER_SOCK { 40000 } else { 8080 },
        tgid: 42,
        folded: (0, 0),
        from: Source::Socket,
    }
}

/// `e` as the kernel decided it: its role, and its (trace, span, parent span) IDs.
pub(super) fn decided(mut e: Ev, role: CtxRole, ids: ([u8; 16], [u8; 8], [u8; 8])) -> Ev {
    e.role = role;
    e.ctx = RawTraceCtx {
        trace_id: ids.0,
        span_id: ids.1,
        parent_span_id: ids.2,
    };
    e
}

pub(super) fn feed(t: &mut Harness, e: &Ev, out: &mut Vec<Span>) {
    let mut local_addr = [0u8; 16];
    local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    let header = RawDataHeader {
        kind: crate::abi::EV_DATA,
        direction: e.dir as u8,
        syscall: 1,
        family: 2,
        ctx_role: e.role as u8,
        parent_source: e.source as u8,
        tail_len: 0,
        tgid: e.tgid,
        tid: e.tgid,
        ts_ns: e.ts,
        sock_id: e.sock,
        total_len: e.total,
        captured_len: e.bytes.len() as u32,
        local_port: e.local_port,
        remote_port: e.remote_port,
        local_addr,
        remote_addr: local_addr,
        ctx_format: e.format as u8,
        inject_status: 0,
        trace_flags: 1,
        source: match e.from {
            Source::Socket => crate::abi::SRC_SOCKET,
            Source::Tls(_) => crate::abi::SRC_OPENSSL,
        },
        fd: 3,
        tls_version: match e.from {
            Source::Tls(TlsSource {
                version: Some(_), ..
            }) => 0x0304,
            _ => 0,
        },
        _pad: [0; 6],
        sent_bytes: 0,
        folded_bytes: e.folded.0,
        folded_ts_ns: e.folded.1,
        ctx: e.ctx,
        tail: [0; TAIL_BYTES],
    };
    let data = DataEvent {
        header,
        direction: e.dir,
        ctx_role: e.role,
        parent_source: e.source,
        ctx_format: e.format,
        inject_status: InjectStatus::None,
        source: e.from,
        data: &e.bytes,
        tail: &[],
    };
    t.on_data(&data, out);
}

fn attr<'a>(s: &'a Span, k: &str) -> &'a Value {
    s.attr(k).unwrap_or_else(|| panic!("missing {k} in {s:?}"))
}
