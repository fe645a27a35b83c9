//! Attaching to the kernel and to target processes.

pub mod probes;
