//! Sonde: a zero-code distributed tracing agent built on eBPF.
//!
//! Data flows top to bottom through these modules: `attach` loads and attaches the
//! probes, `capture` turns ring-buffer records into ordered per-connection byte
//! streams, `protocols` parses them (pure functions, no I/O), `spans` pairs requests
//! with responses and builds spans, `pipeline` keeps, changes or drops them, `sinks`
//! print, export or store them. `agent` wires the stages together.

pub mod abi;
pub mod agent;
pub mod attach;
pub mod capture;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod metrics;
pub mod pipeline;
pub mod process;
pub mod programs;
pub mod propagation;
pub mod protocols;
pub mod serve;
pub mod sinks;
pub mod span_metrics;
pub mod spans;
pub mod sys;
