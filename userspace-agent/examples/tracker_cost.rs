//! Userspace cost of the span pipeline (tracker + HTTP/1 parser + span building), per span,
//! without the kernel or a sink: `cargo run --release --example tracker_cost [N]`. For
//! repeatable figures on a busy machine, count instructions instead of time:
//! `valgrind --tool=callgrind target/release/examples/tracker_cost 20000`.
use std::sync::Arc;
use std::time::Instant;

use sonde::abi::{
    CtxFormat, CtxRole, DataEvent, Direction, InjectStatus, KernelParentSource, RawDataHeader,
    RawTraceCtx,
};
use sonde::metrics::Counters;
use sonde::spans::tracker::{Limits, Tracker};
use sonde::spans::{KeyValue, Resource};

fn header(dir: Direction, ts: u64, len: usize) -> RawDataHeader {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    RawDataHeader {
        kind: 1,
        direction: dir as u8,
        syscall: 1,
        family: 2,
        ctx_role: 0,
        parent_source: 0,
        tail_len: 0,
        tgid: 1,
        tid: 1,
        ts_ns: ts,
        sock_id: 7,
        total_len: len as u64,
        captured_len: len as u32,
        local_port: 80,
        remote_port: 5000,
        local_addr: addr,
        remote_addr: addr,
        ctx_format: 0,
        inject_status: 0,
        trace_flags: 1,
        _pad: 0,
        fd: 3,
        sent_bytes: 0,
        folded_bytes: 0,
        folded_ts_ns: 0,
        ctx: RawTraceCtx::default(),
        tail: [0; 8],
    }
}

fn main() {
    let res = Arc::new(Resource {
        service_name: "x".into(),
        attributes: vec![KeyValue::new("service.name", "x")],
    });
    let counters = Arc::new(Counters::default());
    let mut t = Tracker::new(
        Limits::default(),
        Box::new(move |_| Arc::clone(&res)),
        counters,
    );
    let req =
        b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 11:00:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\nLast-Modified: Fri, 27 Nov 2026 10:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"abc-400\"\r\nAccept-Ranges: bytes\r\n\r\n";
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let mut out = Vec::new();
    let mut spans = 0;
    let start = Instant::now();
    for i in 0..n {
        let ts = i * 100;
        let h = header(Direction::Ingress, ts, req.len());
        let ev = DataEvent {
            header: h,
            direction: Direction::Ingress,
            ctx_role: CtxRole::None,
            parent_source: KernelParentSource::None,
            ctx_format: CtxFormat::None,
            inject_status: InjectStatus::None,
            data: req,
            tail: &[],
        };
        t.on_data(&ev, &|x| x, &mut out);
        let h = header(Direction::Egress, ts + 10, resp.len());
        let ev = DataEvent {
            header: h,
            direction: Direction::Egress,
            ctx_role: CtxRole::None,
            parent_source: KernelParentSource::None,
            ctx_format: CtxFormat::None,
            inject_status: InjectStatus::None,
            data: resp,
            tail: &[],
        };
        t.on_data(&ev, &|x| x, &mut out);
        let h = header(Direction::Egress, ts + 20, 1024);
        let ev = DataEvent {
            header: h,
            direction: Direction::Egress,
            ctx_role: CtxRole::None,
            parent_source: KernelParentSource::None,
            ctx_format: CtxFormat::None,
            inject_status: InjectStatus::None,
            data: &[],
            tail: &[],
        };
        t.on_data(&ev, &|x| x, &mut out);
        spans += out.len();
        out.clear();
    }
    let el = start.elapsed();
    println!(
        "{spans} spans, {:.0} ns per span",
        el.as_nanos() as f64 / spans as f64
    );
}
