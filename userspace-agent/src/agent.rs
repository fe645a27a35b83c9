//! The running agent: attach, read events, build spans, hand them to the sink, and
//! detach cleanly on Ctrl-C, SIGTERM, `--duration`, or the end of `sonde run`'s child.

use std::io::IsTerminal;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::abi::{self, Event};
use crate::attach::probes::{ProbeOptions, Probes};
use crate::attach::targets::{self, Target};
use crate::capture::clock::WallClock;
use crate::cli::{OutputFormat, TraceOptions};
use crate::metrics::Counters;
use crate::process::{ResourceCache, ResourceOverrides};
use crate::sinks::{JsonLinesSink, SpanSink, TreeSink};
use crate::spans::Span;
use crate::spans::tracker::{Limits, Tracker};

/// What to trace.
pub enum Mode {
    Attach(Vec<Target>),
    Run(Vec<String>),
}

/// How the agent ended, for the exit code.
pub enum Ended {
    Signal,
    Duration,
    /// `sonde run`: the child exited with this code.
    Child(i32),
}

const TICK: Duration = Duration::from_millis(50);

pub async fn run(mode: Mode, opts: TraceOptions) -> Result<Ended> {
    let counters = Arc::new(Counters::default());
    let tracefs = crate::doctor::ensure_tracefs().context("tracepoints need tracefs")?;
    log::debug!("tracefs at {}", tracefs.display());

    let exe_globs: Vec<glob::Pattern> = match &mode {
        Mode::Attach(t) => t
            .iter()
            .filter_map(|t| match t {
                Target::ExeGlob(p) => Some(p.clone()),
                _ => None,
            })
            .collect(),
        Mode::Run(_) => Vec::new(),
    };
    let ring_bytes = opts
        .ring_buffer_mib
        .checked_mul(1 << 20)
        .filter(|b| b.is_power_of_two())
        .context("--ring-buffer-mib must be a power of two, at most 2048")?;
    let mut probes = Probes::load_and_attach(&ProbeOptions {
        capture_bytes: opts.capture_bytes,
        watch_exec: !exe_globs.is_empty(),
        empty_probes: opts.empty_probes,
        ring_buffer_bytes: ring_bytes,
    })?;
    let ring = probes.take_events()?;

    let mut child = None;
    match &mode {
        Mode::Attach(t) => {
            let pids = targets::resolve(t)?;
            for pid in pids {
                trace(&mut probes, pid, &counters);
            }
        }
        Mode::Run(cmd) => child = Some(spawn_traced(cmd, &mut probes, &counters)?),
    }

    let overrides = ResourceOverrides {
        service_name: opts.service_name.clone(),
        extra: Vec::new(),
    };
    let resources = Arc::new(Mutex::new(ResourceCache::new(overrides)));
    let tracker_resources = Arc::clone(&resources);
    let mut tracker = Tracker::new(
        Limits {
            request_timeout_ns: (opts.request_timeout.max(0.001) * 1e9) as u64,
            ..Limits::default()
        },
        Box::new(move |pid| match tracker_resources.lock() {
            Ok(mut cache) => cache.get_or_load(pid),
            Err(poisoned) => poisoned.into_inner().get_or_load(pid),
        }),
        Arc::clone(&counters),
    );
    let mut sink = make_sink(&opts);

    eprintln!(
        "sonde: ready: {} hooks attached, {} process(es) traced",
        probes.attached().len(),
        counters.snapshot().iter().find(|(n, ..)| *n == "processes_traced").map_or(0, |c| c.1)
    );
    if let Some(path) = &opts.ready_file {
        std::fs::write(path, "ready\n").with_context(|| format!("writing {}", path.display()))?;
    }

    let mut loop_state = Loop {
        probes,
        tracker,
        clock: WallClock::sample(),
        counters: Arc::clone(&counters),
        resources,
        exe_globs,
        spans: Vec::new(),
    };
    let ended = loop_state.run(ring, child.as_mut(), opts.duration, &mut *sink).await;

    // Detach first so nothing more arrives, then flush what is buffered.
    loop_state.tracker.shutdown();
    if let Err(e) = sink.shutdown() {
        eprintln!("sonde: flushing spans: {e:#}");
    }
    let drops = loop_state.probes.drop_counts();
    Counters::set(&counters.ringbuf_drops, drops[abi::DROP_RINGBUF_FULL as usize]);
    Counters::set(&counters.read_faults, drops[abi::DROP_READ_FAULT as usize]);
    drop(loop_state);
    eprint!("{}", counters.report());
    ended
}

fn make_sink(opts: &TraceOptions) -> Box<dyn SpanSink> {
    let stdout = std::io::stdout();
    match opts.output {
        OutputFormat::Json => Box::new(JsonLinesSink::new(stdout)),
        OutputFormat::Tree => {
            let color = stdout.is_terminal();
            Box::new(TreeSink::new(stdout, Duration::from_millis(opts.quiet_ms), color))
        }
        OutputFormat::None => Box::new(NullSink),
    }
}

struct NullSink;

impl SpanSink for NullSink {
    fn export(&mut self, _spans: Vec<Span>, _now: u64) -> Result<()> {
        Ok(())
    }
    fn tick(&mut self, _now: u64) -> Result<()> {
        Ok(())
    }
    fn shutdown(&mut self) -> Result<()> {
        Ok(())
    }
}

fn trace(probes: &mut Probes, pid: u32, counters: &Counters) {
    match probes.trace_pid(pid) {
        Ok(()) => Counters::inc(&counters.processes_traced),
        Err(e) => {
            Counters::inc(&counters.attach_failures);
            eprintln!("sonde: cannot trace pid {pid}: {e:#}");
        }
    }
}

/// Starts the command held at a barrier, traces its pid, then lets it run: nothing it
/// does escapes the probes, not even its first syscall.
fn spawn_traced(cmd: &[String], probes: &mut Probes, counters: &Counters) -> Result<Child> {
    let (program, args) = cmd.split_first().context("no command given")?;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the start barrier pipe");
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (rfd, wfd) = (read_end.as_raw_fd(), write_end.as_raw_fd());

    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (close, read) on fds it owns in the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            libc::close(wfd);
            let mut b = 0u8;
            // Returns 1 when released, 0 if the agent died: either way, run.
            libc::read(rfd, (&raw mut b).cast(), 1);
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| format!("starting {program}"))?;
    drop(read_end);
    trace(probes, child.id(), counters);
    // SAFETY: write_end is open; writing one byte from a valid local.
    let released = unsafe { libc::write(write_end.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    if released != 1 {
        bail!("could not release {program} from the start barrier");
    }
    Ok(child)
}

struct Loop {
    probes: Probes,
    tracker: Tracker,
    clock: WallClock,
    counters: Arc<Counters>,
    resources: Arc<Mutex<ResourceCache>>,
    exe_globs: Vec<glob::Pattern>,
    spans: Vec<Span>,
}

impl Loop {
    async fn run(
        &mut self,
        ring: RingBuf<MapData>,
        mut child: Option<&mut Child>,
        duration: Option<f64>,
        sink: &mut dyn SpanSink,
    ) -> Result<Ended> {
        let mut ring = AsyncFd::new(ring).context("polling the ring buffer")?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigusr1 = signal(SignalKind::user_defined1())?;
        let mut tick = tokio::time::interval(TICK);
        let deadline = duration.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        let sleep_until = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_until);

        let ended = loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("ring buffer poll")?;
                    self.drain(guard.get_inner_mut(), sink);
                    guard.clear_ready();
                }
                _ = tick.tick() => {
                    // Probes skip wakeups for small amounts of data: drain on a timer too.
                    self.drain(ring.get_mut(), sink);
                    self.housekeeping(sink);
                    if let Some(c) = child.as_deref_mut() {
                        if let Some(status) = c.try_wait().context("waiting for the child")? {
                            // Let its last events arrive before leaving.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            self.drain(ring.get_mut(), sink);
                            break Ended::Child(status.code().unwrap_or(128));
                        }
                    }
                }
                _ = sigint.recv() => break Ended::Signal,
                _ = sigterm.recv() => break Ended::Signal,
                _ = sigusr1.recv() => eprint!("{}", self.counters.report()),
                () = &mut sleep_until => break Ended::Duration,
            }
        };
        self.drain(ring.get_mut(), sink);
        Ok(ended)
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>, sink: &mut dyn SpanSink) {
        let clock = self.clock;
        let to_unix = move |ns| clock.to_unix_nanos(ns);
        // Bounded per call so the timer and signals stay responsive under load.
        for _ in 0..65_536 {
            let Some(item) = ring.next() else { break };
            Counters::inc(&self.counters.events_read);
            match Event::decode(&item) {
                Ok(Event::Data(ev)) => self.tracker.on_data(&ev, &to_unix, &mut self.spans),
                Ok(Event::SockState(s)) => self.tracker.on_sock_state(
                    s.sock_id,
                    s.old_state,
                    s.new_state,
                    s.ts_ns,
                    &to_unix,
                    &mut self.spans,
                ),
                Ok(Event::Exec { tgid, .. }) => self.on_exec(tgid),
                Ok(Event::Exit { tgid, .. }) => {
                    if let Ok(mut cache) = self.resources.lock() {
                        cache.remove(tgid);
                    }
                }
                Err(e) => {
                    Counters::inc(&self.counters.decode_errors);
                    log::debug!("undecodable ring record: {e}");
                }
            }
        }
        if !self.spans.is_empty() {
            let spans = std::mem::take(&mut self.spans);
            let n = spans.len() as u64;
            if let Err(e) = sink.export(spans, now_unix()) {
                self.counters.spans_dropped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                log::warn!("sink failed: {e:#}");
            }
        }
    }

    fn on_exec(&mut self, tgid: u32) {
        if let Ok(mut cache) = self.resources.lock() {
            cache.invalidate(tgid);
        }
        if !self.exe_globs.is_empty() && targets::exe_matches(tgid, &self.exe_globs) {
            trace(&mut self.probes, tgid, &self.counters);
        }
    }

    fn housekeeping(&mut self, sink: &mut dyn SpanSink) {
        self.tracker.tick(WallClock::mono_now());
        if let Err(e) = sink.tick(now_unix()) {
            log::warn!("sink tick failed: {e:#}");
        }
        let drops = self.probes.drop_counts();
        Counters::set(&self.counters.ringbuf_drops, drops[abi::DROP_RINGBUF_FULL as usize]);
        Counters::set(&self.counters.read_faults, drops[abi::DROP_READ_FAULT as usize]);
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
