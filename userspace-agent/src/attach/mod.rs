//! Attaching: loading the probes into the kernel, and choosing the processes to trace.

pub mod hooks;
pub mod inject;
pub mod matrix;
pub mod probe_log;
pub mod probes;
pub mod targets;
