//! Trace context on the wire.
//!
//! Incoming context headers (W3C `traceparent`, B3 single and multi, Jaeger
//! `uber-trace-id`, AWS `X-Amzn-Trace-Id`) are decoded in the kernel, by
//! `ebpf-probes/trace_ctx/ctx_parse.h`, when a request crosses a socket: the header that
//! leaves with an outgoing call must carry the IDs synchronously. Userspace only receives
//! the decision (`parent_source`, `ctx_format`, `trace_flags` on the data event) and keeps
//! what the kernel does not need: the W3C `tracestate` that rides with a `traceparent`.
//! Outgoing requests get their `traceparent` from the sk_msg program
//! (`ebpf-probes/inject.bpf.c`), which `attach::inject` attaches and keeps idle keep-alive
//! connections enrolled in.
//!
//! Here: `tracestate`, and the host tests of the kernel's header parser
//! (`kernel_parser_tests`, the same C code the probes run).

pub mod tracestate;

#[cfg(test)]
mod kernel_parser_tests;
