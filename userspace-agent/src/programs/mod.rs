//! Sonde's eBPF object: its programs, the hook each runs on, the hook families, and
//! loading them for the verifier.
//!
//! This is the description both the agent and `sonde doctor` work from: `object` embeds
//! the ELF build.rs compiles from `ebpf-probes/sonde.bpf.c` and creates its maps with the
//! load-time settings ([`ProbeOptions`]); `hooks` says which kernel hook runs each program
//! ([`LIFECYCLE`], the socket-data families [`DataHooks`], `--hooks` as [`HookChoice`]);
//! `matrix` loads every program, attaching none, and says which ones this kernel's
//! verifier accepts (`sonde doctor --verifier-matrix`, the doctor's `probe_programs`).
//! Probing the kernel lives in [`crate::sys`]; attaching, in [`crate::attach`].

mod hooks;
mod matrix;
mod object;

pub use hooks::{DataHooks, Hook, HookChoice, LIFECYCLE, ProgramHook, hook_of};
pub use matrix::{
    LoadState, Matrix, ProgramLoad, VERIFIER_BUDGET, load_every_program, load_every_program_at,
    load_every_program_with, print_matrix,
};
pub use object::{
    DEFAULT_WAKEUP_BYTES, DEFAULT_WAKEUP_GAP_US, PROBE_LOG_MAP, ProbeLogLevel, ProbeOptions, Wakeup,
};
pub(crate) use object::{load_object, verifier_context};
