//! The event loop: ring-buffer records through capture, the span builder and the
//! pipeline to the sink, with the timer, the signals and `sonde run`'s child.

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

use super::child::{CHILD_GRACE, exit_code, stop};
use super::outputs::now_unix;
use super::tls_scan::TlsScan;
use super::{Ended, trace};
use crate::attach::inject::reenrol::Reenroller;
use crate::attach::probes::Probes;
use crate::attach::targets;
use crate::capture::ring::RingReader;
use crate::capture::{Capture, IdleClient, ProcessRecord, WallClock};
use crate::metrics::Counters;
use crate::pipeline::Pipeline;
use crate::process::{ProcessFacts, ResourceCache};
use crate::sinks::SpanSink;
use crate::spans::{Session, SpanBuilder};

const TICK: Duration = Duration::from_millis(50);
/// A connection with an exchange open and nothing reported for this long gets its folded
/// egress read from the kernel (see `Loop::read_quiet_folded`).
const QUIET_CONNECTION: Duration = Duration::from_millis(20);
/// Kernel reads per tick for quiet connections (each is one map lookup syscall).
const MAX_QUIET_READS: usize = 1024;
/// The event loop's state: the stages from ring to sink.
pub(super) struct Loop {
    pub(super) probes: Probes,
    pub(super) capture: Capture<Session>,
    pub(super) builder: SpanBuilder,
    pub(super) pipeline: Pipeline,
    pub(super) reenroller: Option<Reenroller>,
    pub(super) idle_clients: Vec<IdleClient>,
    /// Scratch: processes with TLS ciphertext no library call claimed.
    pub(super) encrypted_processes: Vec<u32>,
    pub(super) counters: Arc<Counters>,
    pub(super) resources: Arc<ResourceCache>,
    pub(super) exe_globs: Vec<glob::Pattern>,
    pub(super) tls_scan: TlsScan,
}

impl Loop {
    pub(super) async fn run(
        &mut self,
        mut ring: RingReader,
        mut child: Option<&mut Child>,
        duration: Option<Duration>,
        sink: &mut dyn SpanSink,
    ) -> Result<Ended> {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigusr1 = signal(SignalKind::user_defined1())?;
        let mut tick = tokio::time::interval(TICK);
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let sleep_until = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_until);
        // `sonde run`: a stop request is passed on to the child, and the agent keeps
        // tracing until the child is gone (at most CHILD_GRACE), so nothing is orphaned.
        let mut child_stop_deadline: Option<tokio::time::Instant> = None;

        let ended = loop {
            tokio::select! {
                drained = ring.drain_when_readable(|record| self.record(record)) => {
                    drained?;
                    self.export(sink);
                }
                _ = tick.tick() => {
                    // Probes skip wakeups for small amounts of data: drain on a timer too.
                    let drain_started_ns = WallClock::mono_now();
                    if ring.drain(|record| self.record(record)) {
                        self.read_quiet_folded(drain_started_ns);
                    }
                    self.housekeeping(sink);
                    if let Some(c) = child.as_deref_mut()
                        && let Some(status) = c.try_wait().context("waiting for the child")?
                    {
                        // Let its last events arrive before leaving.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        ring.drain(|record| self.record(record));
                        self.export(sink);
                        break Ended::Child(exit_code(status));
                    }
                    if child_stop_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        eprintln!("sonde: the command did not exit within {CHILD_GRACE:?}; detaching");
                        break Ended::Signal;
                    }
                }
                _ = sigint.recv() => if let Some(e) = stop(&mut child, &mut child_stop_deadline, libc::SIGINT, Ended::Signal) { break e },
                _ = sigterm.recv() => if let Some(e) = stop(&mut child, &mut child_stop_deadline, libc::SIGTERM, Ended::Signal) { break e },
                _ = sigusr1.recv() => eprint!("{}", self.counters.report()),
                () = &mut sleep_until, if child_stop_deadline.is_none() => {
                    if let Some(e) = stop(&mut child, &mut child_stop_deadline, libc::SIGTERM, Ended::Duration) { break e }
                }
            }
        };
        ring.drain(|record| self.record(record));
        self.export(sink);
        Ok(ended)
    }

    /// The agent stops (the probes detached): what is still open or waiting is
    /// finished as it stands and goes to the sink.
    pub(super) fn finish(&mut self, sink: &mut dyn SpanSink) {
        self.capture.shutdown(&mut self.builder);
        self.builder.release_waiting();
        self.export(sink);
    }

    /// One ring-buffer record through capture (and the span builder behind it).
    fn record(&mut self, record: &[u8]) {
        match self.capture.record(record, &mut self.builder) {
            Some(ProcessRecord::Exec {
                tgid,
                ts_ns,
                snapshot,
            }) => {
                let facts = ProcessFacts::from_exec_snapshot(
                    tgid,
                    ts_ns,
                    snapshot.filename,
                    snapshot.args,
                    snapshot.env,
                );
                self.on_exec(&facts, snapshot.traced);
            }
            Some(ProcessRecord::Exit { tgid }) => {
                self.resources.remove(tgid);
                self.pipeline.process_exited(tgid);
                self.tls_scan.exited(tgid);
            }
            Some(ProcessRecord::Libraries { tgid }) => {
                self.tls_scan.started(&mut self.probes, tgid)
            }
            None => {}
        }
        if let Some(reenroller) = &self.reenroller {
            self.builder.take_idle_clients(&mut self.idle_clients);
            for idle in self.idle_clients.drain(..) {
                reenroller.submit(idle);
            }
        }
    }

    /// A connection that went quiet mid-exchange may have ended it with folded egress (a
    /// sendfile'd body) that no later record will carry: read the kernel's total. Only
    /// folds from before `drained_from_ns` are taken, when every record the connection
    /// made before them has been read (the ring was drained empty since then).
    fn read_quiet_folded(&mut self, drained_from_ns: u64) {
        let quiet = self.capture.quiet_awaiting_folded(
            self.capture.now_ns(),
            QUIET_CONNECTION.as_nanos() as u64,
            MAX_QUIET_READS,
        );
        for sock in quiet {
            if let Some(info) = self.probes.sock_info(sock) {
                self.capture
                    .folded_read(&info, drained_from_ns, &mut self.builder);
            }
        }
    }

    /// What the span builder built, through the pipeline, to the sink.
    fn export(&mut self, sink: &mut dyn SpanSink) {
        self.builder
            .take_encrypted_processes(&mut self.encrypted_processes);
        for pid in self.encrypted_processes.drain(..) {
            self.tls_scan
                .ciphertext_unclaimed(&mut self.probes, &self.resources, pid);
        }
        let batch = self.builder.batch();
        if batch.is_empty() {
            return;
        }
        self.pipeline.run(batch);
        if !batch.spans.is_empty() {
            let spans = std::mem::take(&mut batch.spans);
            let n = spans.len() as u64;
            if let Err(e) = sink.export(spans, now_unix()) {
                self.counters
                    .spans_dropped
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                log::warn!("sink failed: {e:#}");
            }
        }
    }

    /// A process exec'd: either a traced one (describe its new image) or, with `--exe`
    /// globs, any process (trace it if it matches).
    fn on_exec(&mut self, facts: &ProcessFacts, traced: bool) {
        let tgid = facts.pid;
        if traced {
            self.resources.refresh_after_exec(facts);
            self.probes.follow_goroutines(tgid);
            self.tls_scan.started(&mut self.probes, tgid);
        } else if !self.exe_globs.is_empty() && targets::exe_matches(tgid, &self.exe_globs) {
            trace(&mut self.probes, tgid, &self.counters, &self.resources);
            self.resources.refresh_after_exec(facts);
            self.probes.follow_goroutines(tgid);
            self.tls_scan.started(&mut self.probes, tgid);
        }
    }

    fn housekeeping(&mut self, sink: &mut dyn SpanSink) {
        let now = self.capture.now_ns();
        self.capture.tick(now, &mut self.builder);
        self.builder.tick(now);
        self.export(sink);
        if let Err(e) = sink.tick(now_unix()) {
            log::warn!("sink tick failed: {e:#}");
        }
        self.tls_scan.tick(&mut self.probes);
        self.probes.sync_counters(&self.counters);
    }
}
