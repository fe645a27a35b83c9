//! What the agent spends per HTTP exchange once the kernel has reported it: ring records
//! decoded and sorted by connection (capture), bytes parsed, request and response paired,
//! the span built (spans), run through the pipeline (SDK suppression, redaction) and
//! dropped, as `-o none` does. The traffic is what `cargo xtask bench` loads nginx with: wrk's
//! keep-alive GETs of a 1 KiB file that nginx answers with a header `writev` and a
//! `sendfile` (folded into the next record, docs/architecture.md). Run with
//! `cargo bench -p sonde --bench agent_path`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use sonde::abi::{CtxRole, EV_DATA, RawDataHeader, RawTraceCtx, TAIL_BYTES};
use sonde::capture::{Capture, TableLimits, WallClock};
use sonde::metrics::Counters;
use sonde::pipeline::Pipeline;
use sonde::process::ResourceCache;
use sonde::process::resource::ResourceOverrides;
use sonde::spans::{Limits, Session, SpanBuilder};

/// Exchanges per measured batch (each batch starts a new capture and span builder).
const BATCH: u64 = 256;

/// The system allocator, counting allocations: the bench reports them per exchange.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds GlobalAlloc's contract, which System shares.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUEST: &[u8] = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n";
const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Mon, 07 Dec 2026 04:30:00 GMT\r\nContent-Type: application/octet-stream\r\n\
Content-Length: 1024\r\nLast-Modified: Mon, 07 Dec 2026 04:29:00 GMT\r\n\
Connection: keep-alive\r\nETag: \"6754d0ac-400\"\r\nAccept-Ranges: bytes\r\n\r\n";
const BODY: u64 = 1024;

fn header(ts_ns: u64, egress: bool, total: usize, folded: u64, tgid: u32) -> RawDataHeader {
    let mut loopback = [0u8; 16];
    loopback[..4].copy_from_slice(&[127, 0, 0, 1]);
    RawDataHeader {
        kind: EV_DATA,
        direction: u8::from(egress),
        syscall: if egress { 4 } else { 5 }, // writev, recvfrom
        family: 2,
        ctx_role: CtxRole::None as u8,
        parent_source: 0,
        tail_len: 0,
        tgid,
        tid: tgid,
        ts_ns,
        sock_id: 0xffff_8880_1234_5678,
        total_len: total as u64,
        captured_len: 0,
        local_port: 18080,
        remote_port: 40123,
        local_addr: loopback,
        remote_addr: loopback,
        ctx_format: 0,
        inject_status: 0,
        trace_flags: 1,
        source: 0,
        fd: 7,
        tls_version: 0,
        _pad: [0; 6],
        sent_bytes: 0,
        folded_bytes: folded,
        folded_ts_ns: if folded == 0 { 0 } else { ts_ns - 2_000 },
        ctx: RawTraceCtx::default(),
        tail: [0; TAIL_BYTES],
    }
}

/// The ring records of `n` exchanges on one keep-alive connection, as the kernel makes
/// them: each request read starts a server span (IDs decided in the kernel) and carries
/// the body bytes sendfile folded so far, which complete the previous response.
fn records(n: u64, tgid: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..=n {
        let ts = 1_000_000 + i * 10_000;
        let mut request = header(ts, false, REQUEST.len(), i * BODY, tgid);
        request.ctx_role = CtxRole::ServerRequest as u8;
        request.ctx.trace_id = [0x11; 16];
        request.ctx.trace_id[..8].copy_from_slice(&(i + 1).to_be_bytes());
        request.ctx.span_id = (i + 1).to_be_bytes();
        out.push(request.record(REQUEST));
        if i < n {
            let head = header(ts + 5_000, true, RESPONSE_HEAD.len(), i * BODY, tgid);
            out.push(head.record(RESPONSE_HEAD));
        }
    }
    out
}

fn nginx_exchanges(c: &mut Criterion) {
    let tgid = std::process::id();
    let resources = Arc::new(ResourceCache::with_overrides(ResourceOverrides::default()));
    let batch = records(BATCH, tgid);
    let clock = WallClock::sample();
    let run = || {
        let cache = Arc::clone(&resources);
        let counters = Arc::new(Counters::default());
        let mut capture: Capture<Session> =
            Capture::new(TableLimits::default(), clock, Arc::clone(&counters));
        let mut builder = SpanBuilder::new(
            Limits::default(),
            Box::new(move |pid| cache.get_or_load(pid)),
            Arc::clone(&counters),
        );
        let mut pipeline = Pipeline::standard(counters);
        for record in &batch {
            capture.record(black_box(record), &mut builder);
        }
        pipeline.run(builder.batch());
        let spans = std::mem::take(&mut builder.batch().spans);
        assert_eq!(spans.len() as u64, BATCH, "one span per exchange");
        black_box(spans);
    };
    run();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "agent_path: {:.1} allocations per exchange (spans included)",
        allocations as f64 / BATCH as f64
    );

    let mut group = c.benchmark_group("agent_path");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("nginx_keep_alive_exchange", |b| b.iter(run));
    group.finish();
}

criterion_group!(benches, nginx_exchanges);
criterion_main!(benches);
