//! Probe diagnostics (`--probe-log`): why a kernel program skipped an event, as aya-log
//! records read by aya-log's own `EbpfLogger` and written to the agent's log.
//!
//! The probes are C, and aya-log has no C side (aya issue 798): `ebpf-probes/common/log.h`
//! writes aya-log-common 0.2.0's record format into the `AYA_LOGS` ring buffer that aya-log
//! 0.3.0 reads. The level is a load-time constant of the object (`AYA_LOG_LEVEL`, aya-log's
//! own name for it): off by default, so a disabled diagnostic costs the probes one load and
//! one compare, and the verifier skips its body.
//!
//! Records carry the target [`TARGET`]. They go to stderr through an `env_logger` built like
//! the agent's own (`RUST_LOG`, default `warn`) with that target lifted to the chosen level,
//! so `--probe-log debug` shows them without `RUST_LOG`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use aya::Ebpf;
use aya_log::EbpfLogger;
use log::{LevelFilter, Log};

pub use crate::programs::{PROBE_LOG_MAP as MAP, ProbeLogLevel};

/// The target of every probe record (`LOG_TARGET` in common/log.h).
pub const TARGET: &str = "sonde::probe";

/// How long the reader waits for records before it checks whether to stop.
const POLL: Duration = Duration::from_millis(100);

impl ProbeLogLevel {
    fn filter(self) -> LevelFilter {
        match self {
            Self::Off => LevelFilter::Off,
            Self::Error => LevelFilter::Error,
            Self::Warn => LevelFilter::Warn,
            Self::Info => LevelFilter::Info,
            Self::Debug => LevelFilter::Debug,
            Self::Trace => LevelFilter::Trace,
        }
    }
}

/// A thread reading probe records into a logger, until dropped.
pub struct ProbeLog {
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl ProbeLog {
    /// Starts showing the records of `ebpf` (loaded with `level`) in the agent's log; None
    /// when `level` is off.
    pub fn start(ebpf: &mut Ebpf, level: ProbeLogLevel) -> Result<Option<Self>> {
        if level == ProbeLogLevel::Off {
            return Ok(None);
        }
        let logger =
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
                .filter_module(TARGET, level.filter())
                .build();
        Self::start_with(ebpf, logger).map(Some)
    }

    /// Starts reading the records of `ebpf` into `logger` (taking its `AYA_LOGS` map).
    pub fn start_with<T: Log + Send + 'static>(ebpf: &mut Ebpf, logger: T) -> Result<Self> {
        let reader = EbpfLogger::init_with_logger(ebpf, logger)
            .context("reading the probes' diagnostics (--probe-log)")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let reader = std::thread::Builder::new()
            .name("sonde-probe-log".to_owned())
            .spawn(move || read_until_stopped(reader, &stopping))
            .context("starting the probe log reader")?;
        Ok(Self {
            stop,
            reader: Some(reader),
        })
    }
}

impl Drop for ProbeLog {
    /// Stops the reader after a last read (at most [`POLL`] later).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take()
            && reader.join().is_err()
        {
            log::error!("the probe log reader panicked");
        }
    }
}

fn read_until_stopped<T: Log>(mut reader: EbpfLogger<T>, stop: &AtomicBool) {
    let fd = reader.as_raw_fd();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        // aya-log unwraps its parse of each record: a malformed one would panic here. The
        // C side cannot build one (ebpf-probes/common/log.h, attach/probe_log/tests.rs); if
        // it ever did, say so once and stop reading rather than take the agent down.
        let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.flush()));
        if flushed.is_err() {
            log::error!("a probe log record could not be read; probe diagnostics stop here");
            return;
        }
        if stopping {
            return;
        }
        wait_readable(fd, POLL);
    }
}

/// Waits until `fd` is readable or `timeout` passed (a signal ends the wait early; a
/// failing poll waits the whole timeout, so the reader never spins).
fn wait_readable(fd: RawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
        std::thread::sleep(timeout);
    }
}

#[cfg(test)]
mod tests;
