//! The object itself: the ELF build.rs compiles from `ebpf-probes/sonde.bpf.c`, embedded
//! in the binary, and the settings baked into its globals when its maps are created.

use anyhow::{Context, Result, bail};
use aya::{Ebpf, EbpfLoader};

use super::hooks::HookChoice;
use crate::abi;

static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sonde.bpf.o"));

/// Settings baked into the programs at load time, and the hooks to attach them on.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Payload prefix copied per syscall (clamped to [`abi::MAX_CAPTURE`]).
    pub capture_bytes: u32,
    /// Report every exec on the host (for `--exe` globs).
    pub watch_exec: bool,
    /// Benchmark floor: attach everything, but every program returns at once.
    pub empty_probes: bool,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// When a record wakes the agent: unread bytes, and least time between wakeups.
    pub wakeup: Wakeup,
    /// Insert `traceparent` into outgoing HTTP/1 requests (sock_ops + sk_msg).
    pub inject: bool,
    /// Which hooks carry socket data.
    pub hooks: HookChoice,
    /// Probe diagnostics shown (`--probe-log`).
    pub probe_log: ProbeLogLevel,
    /// Probe TLS libraries (the socket hooks then skip ciphertext).
    pub tls: bool,
    /// Follow goroutines in Go programs (`attach/go_runtime.rs`).
    pub go_runtime: bool,
}

/// Default `--wakeup-bytes`: about 25 HTTP exchanges of records, some 30 µs of agent work.
pub const DEFAULT_WAKEUP_BYTES: u32 = 16 * 1024;
/// Default `--wakeup-gap-us`.
pub const DEFAULT_WAKEUP_GAP_US: u32 = 50;

/// When a record wakes the agent (`--wakeup-bytes`, `--wakeup-gap-us`): once `bytes` of
/// records wait unread, at most once per `gap_ns`. Below the threshold the agent reads
/// the ring on its 50 ms timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wakeup {
    pub bytes: u64,
    pub gap_ns: u64,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self {
            bytes: DEFAULT_WAKEUP_BYTES.into(),
            gap_ns: u64::from(DEFAULT_WAKEUP_GAP_US) * 1000,
        }
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            capture_bytes: 2048,
            watch_exec: false,
            empty_probes: false,
            ring_buffer_bytes: 8 << 20,
            wakeup: Wakeup::default(),
            inject: true,
            hooks: HookChoice::Auto,
            probe_log: ProbeLogLevel::Off,
            tls: true,
            go_runtime: true,
        }
    }
}

/// Creates the object's maps with `opts` baked into its globals. No program is loaded
/// yet: each is loaded (verified) on its own, by its attach step or the verifier matrix.
pub(crate) fn load_object(opts: &ProbeOptions) -> Result<Ebpf> {
    if !opts.ring_buffer_bytes.is_power_of_two() || opts.ring_buffer_bytes < 4096 {
        bail!(
            "ring buffer size must be a power of two of at least 4096 bytes, got {}",
            opts.ring_buffer_bytes
        );
    }
    let capture = opts.capture_bytes.min(abi::MAX_CAPTURE as u32);
    let watch_exec = u8::from(opts.watch_exec);
    let empty = u8::from(opts.empty_probes);
    let inject = u8::from(opts.inject);
    let log_level = opts.probe_log.kernel_level();
    let tls = u8::from(opts.tls);
    if opts.wakeup.bytes > u64::from(opts.ring_buffer_bytes) / 2 {
        bail!(
            "--wakeup-bytes {} must be at most half the ring buffer ({} bytes)",
            opts.wakeup.bytes,
            opts.ring_buffer_bytes
        );
    }
    EbpfLoader::new()
        .override_global("wakeup_bytes", &opts.wakeup.bytes, true)
        .override_global("wakeup_gap_ns", &opts.wakeup.gap_ns, true)
        .override_global("capture_bytes", &capture, true)
        .override_global("watch_exec", &watch_exec, true)
        .override_global("empty_probes", &empty, true)
        .override_global("inject_enabled", &inject, true)
        .override_global("tls_enabled", &tls, true)
        .override_global(aya_log::LEVEL, &log_level, true)
        .map_max_entries("events", opts.ring_buffer_bytes)
        .map_max_entries(PROBE_LOG_MAP, opts.probe_log.ring_bytes())
        .load(PROBE_OBJECT)
        .context("loading the eBPF probes (is this root, with BTF at /sys/kernel/btf/vmlinux? `sonde doctor` tells)")
}

/// aya puts the verifier log inside the error; keep all of it in the message.
pub(crate) fn verifier_context(err: aya::programs::ProgramError) -> anyhow::Error {
    match err {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            anyhow::anyhow!("the kernel verifier rejected the program: {io_error}\n{verifier_log}")
        }
        other => other.into(),
    }
}

/// The ring buffer aya-log reads (`maps/aya_logs.h`).
pub const PROBE_LOG_MAP: &str = "AYA_LOGS";

/// Its size while logging is off: one page, the least a ring buffer can have.
const OFF_RING_BYTES: u32 = 4096;

/// Its size while logging is on, as `maps/aya_logs.h` and aya-log-ebpf have it.
const ON_RING_BYTES: u32 = 128 << 10;

/// `--probe-log`: the most verbose level of probe diagnostics to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ProbeLogLevel {
    /// None (the probes skip every diagnostic).
    #[default]
    Off,
    Error,
    Warn,
    Info,
    /// Why events are skipped: unreadable payloads, a full ring, undecodable syscalls,
    /// requests left without an injected header.
    Debug,
    Trace,
}

impl ProbeLogLevel {
    /// The value of the object's `AYA_LOG_LEVEL` (aya_log_common::Level; 0 lets nothing
    /// through).
    pub fn kernel_level(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::Error => 1,
            Self::Warn => 2,
            Self::Info => 3,
            Self::Debug => 4,
            Self::Trace => 5,
        }
    }

    /// `AYA_LOGS`' size for this level.
    pub fn ring_bytes(self) -> u32 {
        if self == Self::Off {
            OFF_RING_BYTES
        } else {
            ON_RING_BYTES
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked before anything reaches the kernel: no privileges needed.
    #[test]
    fn a_wakeup_threshold_the_ring_cannot_reach_is_refused() {
        let opts = ProbeOptions {
            ring_buffer_bytes: 1 << 20,
            wakeup: Wakeup {
                bytes: 1 << 20,
                gap_ns: 0,
            },
            ..ProbeOptions::default()
        };
        let err = load_object(&opts).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("--wakeup-bytes 1048576 must be at most half")),
            "{err:?}"
        );
    }
}
