//! The agent's own counters: what was read, built, dropped and why. Nothing is lost
//! silently: every drop path increments one of these, and `sonde` prints them on exit
//! and on SIGUSR1.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal,)+) => {
        /// Monotonic counters, shared by every stage.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(#[doc = $help] pub $name: AtomicU64,)+
        }

        impl Counters {
            /// `(name, value, help)` for every counter, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64, &'static str)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed), $help),)+]
            }
        }
    };
}

counters! {
    events_read: "ring-buffer records read",
    decode_errors: "ring-buffer records that could not be decoded",
    ringbuf_drops: "events the probes dropped because the ring buffer was full",
    read_faults: "payloads the probes could not read from process memory",
    socket_io_undecoded: "socket reads/writes by syscalls whose bytes Sonde cannot locate (io_uring, recvmmsg/sendmmsg)",
    tls_libraries_probed: "TLS library files (OpenSSL, BoringSSL, GnuTLS, Go programs) the probes are attached to",
    tls_library_failures: "TLS library files found but not probed (a Go release without known offsets, an attach error: see the log or sonde doctor --pid)",
    tls_ciphertext_records: "socket records of TLS ciphertext skipped (the library's probes report the plaintext)",
    tls_unmapped_calls: "TLS library calls whose connection was never seen (plaintext skipped)",
    tls_unreadable_connections: "TLS connections no probed library reported plaintext for (a TLS library Sonde cannot probe: stripped and static, Java, rustls)",
    go_processes: "Go processes whose goroutines give trace context (instead of threads)",
    go_runtime_failures: "Go programs whose goroutines cannot be followed (unknown release offsets, attach error: see the log); their threads are used, as for other programs",
    multiplexed_threads: "threads seen serving two requests at once (event loops): the calls they make get a guessed parent, marked sonde.parent.source=thread_last_read",
    parent_guessed: "spans whose parent is a guess (sonde.parent.source=thread_last_read)",
    connections_tracked: "TCP connections seen carrying data",
    connections_evicted: "connections forgotten because the connection table was full",
    stale_connections: "connections replaced because their socket was reused unseen (missed close)",
    unknown_protocol_connections: "connections whose bytes are not a protocol Sonde parses",
    http_desyncs: "HTTP/1 streams that lost message boundaries and resynchronised",
    unpaired_responses: "responses whose request was never seen (attached mid-exchange)",
    requests_timed_out: "requests that got no complete response within the request timeout",
    pending_dropped: "requests dropped because a connection had too many in flight",
    inject_sockets_enrolled: "client sockets enrolled for traceparent insertion",
    inject_enrol_failures: "client sockets the kernel would not enrol (sockhash full)",
    inject_done: "outgoing requests that got a traceparent inserted",
    inject_app_header: "outgoing requests left alone: they carried their own context header",
    inject_skipped: "outgoing requests left alone: header block split or too large to prove safe",
    inject_failed: "outgoing requests left alone: the kernel refused the insertion",
    tcp_option_sent: "TCP header options that carried a context to a peer's agent",
    tcp_option_received: "TCP header options with a context read from a peer's agent",
    inject_armed_late: "client sockets opened before the agent attached, armed for injection",
    reenrolled: "keep-alive client sockets put back for injection after a complete exchange",
    reenrol_skipped: "keep-alive sockets left out: busy, gone, or opened before the agent attached",
    reenrol_dropped: "re-enrolment requests dropped because the queue was full",
    reenrol_backoff: "keep-alive sockets not looked at: busy the last times (backoff)",
    db_calls: "database and cache calls that became spans",
    db_desync_bytes: "database and cache protocol bytes skipped while resynchronising",
    db_dropped_calls: "database and cache calls the parsers dropped without a span",
    db_tls_connections: "database connections that switched to TLS in their protocol (read on only through a probed TLS library)",
    db_unjoined_server_calls: "traced database server calls whose traced client span never came",
    spans_built: "spans built",
    spans_dropped: "spans dropped by a full or failing sink",
    spans_suppressed_sdk: "spans not emitted: their process is traced by its own OpenTelemetry SDK",
    pipeline_dropped: "spans dropped by the pipeline because too many waited for the sinks at once",
    processes_traced: "processes added to the traced set",
    attach_failures: "processes that could not be traced (gone, or not permitted)",
    spans_exported: "spans an OTLP collector accepted",
    spans_rejected: "spans an OTLP collector rejected (partial success)",
    export_failures: "OTLP export requests given up (permanent error, or retries exhausted)",
    export_failed_spans: "spans lost in OTLP export requests given up",
    export_retries: "OTLP export requests retried after a transient error",
    export_queue_dropped: "spans dropped because the OTLP export queue was full",
    export_queue_depth: "spans waiting in the OTLP export queue (gauge)",
    metric_exports: "OTLP metrics exports that succeeded",
    metric_export_failures: "OTLP metrics exports that failed (the next one carries the totals)",
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }

    /// A short human-readable report, non-zero counters first.
    pub fn report(&self) -> String {
        let mut out = String::from("sonde: counters\n");
        for (name, value, help) in self.snapshot() {
            let _ = writeln!(out, "  {name:<30} {value:>10}  {help}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_every_counter_with_its_value() {
        let c = Counters::default();
        Counters::inc(&c.spans_built);
        Counters::inc(&c.spans_built);
        let snap = c.snapshot();
        assert!(snap.iter().any(|(n, v, _)| *n == "spans_built" && *v == 2));
        assert!(snap.iter().all(|(_, _, help)| !help.is_empty()));
        assert!(c.report().contains("spans_built"));
    }
}
