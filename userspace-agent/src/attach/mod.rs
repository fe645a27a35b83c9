//! Attaching: choosing the hooks this kernel offers, loading Sonde's programs into the
//! kernel and attaching them, injecting `traceparent`, and choosing the processes to trace.
//!
//! It builds on [`crate::programs`] (the object, and the hook each program runs on) and
//! [`crate::sys`] (kernel feature probes and raw syscalls), as `sonde doctor` does; the
//! two never import each other.
//!
//! - `hooks`: what this kernel offers each family of socket-data hooks ([`hooks::KernelHooks`])
//! - `probes`: loading and attaching ([`probes::Probes`]), the fallback from one family to
//!   the next, the maps and kernel-side counters the agent reads
//! - `inject`: sock_ops + sk_msg injection, the iterator that arms sockets opened before
//!   the agent, and `reenrol`, which keeps idle keep-alive sockets enrolled
//! - `targets`: which processes to trace (pid, executable glob, listening port)
//! - `tls`: uprobes on TLS libraries; `go_runtime`: uprobes on Go programs' runtime
//!   (goroutine starts, net/http's client hand-off) and the registry of traced Go processes

pub mod binary;
pub mod go_runtime;
pub mod hooks;
pub mod inject;
pub mod probe_log;
pub mod probes;
pub mod targets;
pub mod tls;
