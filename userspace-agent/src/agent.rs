//! The running agent: attach, read events, build spans, hand them to the sink, and
//! detach cleanly on Ctrl-C, SIGTERM, `--duration`, or the end of `sonde run`'s child.

use std::io::IsTerminal;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::abi::Event;
use crate::attach::probes::{ProbeOptions, Probes};
use crate::attach::targets::{self, Target};
use crate::capture::clock::WallClock;
use crate::cli::{OutputFormat, TraceOptions};
use crate::config::{Config, Signal};
use crate::metrics::Counters;
use crate::process::{ProcessFacts, ResourceCache, ResourceOverrides};
use crate::propagation::reenrol::Reenroller;
use crate::sinks::otlp::ExportOptions;
use crate::sinks::{FanoutSink, JsonLinesSink, OtlpSink, SpanSink, TreeSink};
use crate::span_metrics::export::{MetricsExporter, export_interval};
use crate::span_metrics::serve::PrometheusServer;
use crate::span_metrics::{SpanMetrics, SpanMetricsConfig, SpanMetricsSink, agent_resource};
use crate::spans::Span;
use crate::spans::tracker::{Limits, ReenrolRequest, Tracker};

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
/// A connection with an exchange open and nothing reported for this long gets its folded
/// egress read from the kernel (see `Loop::read_quiet_folded`).
const QUIET_CONNECTION: Duration = Duration::from_millis(20);
/// Kernel reads per tick for quiet connections (each is one map lookup syscall).
const MAX_QUIET_READS: usize = 1024;
/// How long `sonde run` waits for its command to exit after passing on a stop signal.
const CHILD_GRACE: Duration = Duration::from_secs(10);

/// A stop request: with a child (`sonde run`), pass `sig` on and keep going until it
/// exits (returns `None`); without one, stop now (returns `why`).
fn stop(
    child: &mut Option<&mut Child>,
    deadline: &mut Option<tokio::time::Instant>,
    sig: libc::c_int,
    why: Ended,
) -> Option<Ended> {
    match child {
        Some(c) => {
            forward_signal(c, sig);
            deadline.get_or_insert(tokio::time::Instant::now() + CHILD_GRACE);
            None
        }
        None => Some(why),
    }
}

fn forward_signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
        // not yet reaped, so it cannot have been reused.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed the child.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

pub async fn run(mode: Mode, opts: TraceOptions, config: Config) -> Result<Ended> {
    let counters = Arc::new(Counters::default());
    // Before attaching anything, so a bad OTLP or metrics setting fails fast.
    let span_metrics = SpanMetricsSetup::start(&opts, &config, &counters).await?;
    let mut sink = make_sink(&opts, &config, &counters, span_metrics.registry.as_ref())?;
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
        wakeup: crate::attach::probes::Wakeup {
            bytes: opts.wakeup_bytes.into(),
            gap_ns: u64::from(opts.wakeup_gap_us) * 1000,
        },
        inject: !opts.no_inject && !opts.empty_probes,
        hooks: opts.hooks,
        probe_log: opts.probe_log,
    })?;
    if probes.injecting() {
        report_fionread_hazard();
    }
    let ring = probes.take_events()?;

    let overrides = ResourceOverrides {
        service_name: opts.service_name.clone(),
        extra: Vec::new(),
    };
    let resources = Arc::new(ResourceCache::with_overrides(overrides));

    let mut child = None;
    match &mode {
        Mode::Attach(t) => {
            let resolved = targets::resolve(t)?;
            for pid in resolved.pids {
                trace(&mut probes, pid, &counters, &resources);
            }
        }
        Mode::Run(cmd) => child = Some(spawn_traced(cmd, &mut probes, &counters)?),
    }
    let tracker_resources = Arc::clone(&resources);
    let mut tracker = Tracker::new(
        Limits {
            request_timeout_ns: (opts.request_timeout.max(0.001) * 1e9) as u64,
            ..Limits::default()
        },
        Box::new(move |pid| tracker_resources.get_or_load(pid)),
        Arc::clone(&counters),
    )
    .with_db_options(opts.db_query_text.parse_options());
    let reenroller = match probes.take_injection_maps()? {
        Some(maps) => {
            tracker.enable_reenrol();
            Some(
                Reenroller::spawn(maps, Arc::clone(&counters))
                    .context("starting the re-enrolment thread")?,
            )
        }
        None => None,
    };

    eprintln!(
        "sonde: ready: {} hooks attached ({}), {} process(es) traced",
        probes.attached().len(),
        probes.hook_summary(),
        counters
            .processes_traced
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    if let Some(path) = &opts.ready_file {
        std::fs::write(path, "ready\n").with_context(|| format!("writing {}", path.display()))?;
    }

    let mut loop_state = Loop {
        probes,
        tracker,
        reenroller,
        reenrol_batch: Vec::new(),
        clock: WallClock::sample(),
        counters: Arc::clone(&counters),
        resources,
        exe_globs,
        spans: Vec::new(),
    };
    let ended = loop_state
        .run(ring, child.as_mut(), opts.duration, &mut *sink)
        .await;

    // Detach first so nothing more arrives, then flush what is buffered.
    loop_state.tracker.shutdown();
    if let Err(e) = sink.shutdown() {
        eprintln!("sonde: flushing spans: {e:#}");
    }
    loop_state.probes.sync_counters(&counters);
    drop(loop_state);
    // The metrics exporter sends its last export when dropped: count it before reporting.
    drop(span_metrics);
    eprint!("{}", counters.report());
    ended
}

/// Says at startup whether this kernel has the sockmap FIONREAD bug (as `sonde doctor`
/// does); the enrolment rule keeps applications safe in both cases.
fn report_fionread_hazard() {
    use crate::doctor::sockmap::{FionreadProbe, probe_fionread};
    match probe_fionread() {
        Ok(FionreadProbe::Correct) => log::info!("sockmap FIONREAD is correct on this kernel"),
        Ok(FionreadProbe::Broken { reported }) => log::info!(
            "sockmap FIONREAD hazard present (reported {reported} of {} bytes): client sockets \
             stay enrolled only until their request is sent",
            FionreadProbe::bytes()
        ),
        Err(e) => log::info!("could not probe sockmap FIONREAD behaviour: {e}"),
    }
}

/// The stdout sink for `--output`, plus the OTLP exporter when OTLP is enabled.
fn make_sink(
    opts: &TraceOptions,
    config: &Config,
    counters: &Arc<Counters>,
    span_metrics: Option<&Arc<SpanMetrics>>,
) -> Result<Box<dyn SpanSink>> {
    let mut sinks: Vec<Box<dyn SpanSink>> = Vec::new();
    if let Some(m) = span_metrics {
        sinks.push(Box::new(SpanMetricsSink::new(Arc::clone(m))));
    }
    if config.otlp.enabled.value {
        let otlp = OtlpSink::new(&config.otlp, ExportOptions::default(), Arc::clone(counters))
            .context("setting up OTLP export")?;
        eprintln!(
            "sonde: exporting spans over OTLP ({}) to {}",
            config.otlp.protocol.value,
            crate::config::display::mask_url(&config.otlp.endpoint.value)
        );
        sinks.push(Box::new(otlp));
    }
    if opts.output != OutputFormat::None || sinks.is_empty() {
        sinks.push(make_stdout_sink(opts));
    }
    Ok(match sinks.len() {
        1 => sinks.remove(0),
        _ => Box::new(FanoutSink::new(sinks)),
    })
}

/// Span metrics exist when someone reads them: a Prometheus scrape endpoint and/or
/// periodic OTLP metrics export (whenever OTLP export is on).
struct SpanMetricsSetup {
    registry: Option<Arc<SpanMetrics>>,
    /// Exports one last time when dropped (agent shutdown).
    _exporter: Option<MetricsExporter>,
}

impl SpanMetricsSetup {
    async fn start(opts: &TraceOptions, config: &Config, counters: &Arc<Counters>) -> Result<Self> {
        if opts.prometheus_listen.is_none() && !config.otlp.enabled.value {
            return Ok(Self {
                registry: None,
                _exporter: None,
            });
        }
        let host = hostname::get().map_or_else(
            |_| "unknown".to_owned(),
            |h| h.to_string_lossy().into_owned(),
        );
        let registry = Arc::new(
            SpanMetrics::new(
                SpanMetricsConfig::default(),
                agent_resource(&host),
                now_unix(),
            )
            .with_counters(Arc::clone(counters)),
        );
        if let Some(addr) = opts.prometheus_listen {
            let server = PrometheusServer::bind(addr)
                .await
                .with_context(|| format!("serving Prometheus metrics on {addr}"))?;
            eprintln!(
                "sonde: Prometheus metrics at http://{}/metrics",
                server.local_addr()?
            );
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                if let Err(e) = server.serve(registry).await {
                    eprintln!("sonde: Prometheus endpoint stopped: {e:#}");
                }
            });
        }
        let exporter = if config.otlp.enabled.value {
            let metrics_config = config
                .otlp_for(Signal::Metrics)
                .context("OTLP metrics settings")?;
            let interval = export_interval(|k| std::env::var(k).ok());
            Some(MetricsExporter::start(
                &metrics_config,
                Arc::clone(&registry),
                interval,
                Arc::clone(counters),
            )?)
        } else {
            None
        };
        Ok(Self {
            registry: Some(registry),
            _exporter: exporter,
        })
    }
}

fn make_stdout_sink(opts: &TraceOptions) -> Box<dyn SpanSink> {
    let stdout = std::io::stdout();
    match opts.output {
        OutputFormat::Json => Box::new(JsonLinesSink::new(stdout)),
        OutputFormat::Tree => {
            let color = stdout.is_terminal();
            Box::new(TreeSink::new(
                stdout,
                Duration::from_millis(opts.quiet_ms),
                color,
            ))
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

/// Adds a process to the traced set and reads its resource now, while it surely exists
/// (a short-lived client may be gone by the time its first span is built).
fn trace(probes: &mut Probes, pid: u32, counters: &Counters, resources: &ResourceCache) {
    // Tracing itself would turn the agent's own export traffic into more spans.
    if pid == std::process::id() {
        eprintln!("sonde: not tracing pid {pid}: that is this agent");
        return;
    }
    match probes.trace_pid(pid) {
        Ok(()) => {
            Counters::inc(&counters.processes_traced);
            resources.get_or_load(pid);
        }
        Err(e) => {
            Counters::inc(&counters.attach_failures);
            eprintln!("sonde: cannot trace pid {pid}: {e:#}");
        }
    }
}

/// Starts the command traced from its first instruction: between fork and exec the
/// child adds its own pid to the traced set (std's `spawn` only returns after exec,
/// so the parent could not do it in time).
fn spawn_traced(cmd: &[String], probes: &mut Probes, counters: &Counters) -> Result<Child> {
    let (program, args) = cmd.split_first().context("no command given")?;
    let map_fd = probes.traced_map_fd();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (getpid, bpf) with pointers to its own stack.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || enroll_self(map_fd));
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {program} traced"))?;
    Counters::inc(&counters.processes_traced);
    Ok(child)
}

/// `bpf(BPF_MAP_UPDATE_ELEM)` of (own pid -> 1) into the traced-pid map.
fn enroll_self(map_fd: std::os::fd::RawFd) -> std::io::Result<()> {
    /// The map-element member of `union bpf_attr` (include/uapi/linux/bpf.h).
    #[repr(C)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let value: u32 = 1;
    let attr = MapElemAttr {
        map_fd: map_fd as u32,
        _pad: 0,
        key: (&raw const pid) as u64,
        value: (&raw const value) as u64,
        flags: 0,
    };
    // SAFETY: attr and the key/value it points to live on this stack frame for the
    // duration of the call; the size passed matches the struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &raw const attr,
            size_of::<MapElemAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

struct Loop {
    probes: Probes,
    tracker: Tracker,
    reenroller: Option<Reenroller>,
    reenrol_batch: Vec<ReenrolRequest>,
    clock: WallClock,
    counters: Arc<Counters>,
    resources: Arc<ResourceCache>,
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
        // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
        // long as the RingBuf lives, and the RingBuf lives inside this AsyncFd.
        let mut ring =
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
                .context("polling the ring buffer")?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigusr1 = signal(SignalKind::user_defined1())?;
        let mut tick = tokio::time::interval(TICK);
        let deadline =
            duration.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
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
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("ring buffer poll")?;
                    self.drain(guard.get_inner_mut(), sink);
                    guard.clear_ready();
                }
                _ = tick.tick() => {
                    // Probes skip wakeups for small amounts of data: drain on a timer too.
                    let drain_started_ns = WallClock::mono_now();
                    if self.drain(ring.get_mut(), sink) {
                        self.read_quiet_folded(drain_started_ns, sink);
                    }
                    self.housekeeping(sink);
                    if let Some(c) = child.as_deref_mut()
                        && let Some(status) = c.try_wait().context("waiting for the child")?
                    {
                        // Let its last events arrive before leaving.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        self.drain(ring.get_mut(), sink);
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
        self.drain(ring.get_mut(), sink);
        Ok(ended)
    }

    /// Reads the ring until it is empty (true) or a bounded number of records were read,
    /// so the timer and signals stay responsive under load (false).
    fn drain(&mut self, ring: &mut RingBuf<MapData>, sink: &mut dyn SpanSink) -> bool {
        let clock = self.clock;
        let to_unix = move |ns| clock.to_unix_nanos(ns);
        let mut emptied = false;
        for _ in 0..65_536 {
            let Some(item) = ring.next() else {
                emptied = true;
                break;
            };
            Counters::inc(&self.counters.events_read);
            match Event::decode(&item) {
                Ok(Event::Data(ev)) => {
                    self.tracker.on_data(&ev, &to_unix, &mut self.spans);
                    if let Some(reenroller) = &self.reenroller {
                        self.tracker.take_reenrol_requests(&mut self.reenrol_batch);
                        for req in self.reenrol_batch.drain(..) {
                            reenroller.submit(req);
                        }
                    }
                }
                Ok(Event::SockState(s)) => {
                    // Egress folded before the change (a sendfile'd body) comes first.
                    self.tracker.catch_up_folded(
                        s.sock_id,
                        s.folded_bytes,
                        s.folded_ts_ns,
                        &to_unix,
                        &mut self.spans,
                    );
                    self.tracker.on_sock_state(
                        s.sock_id,
                        s.new_state,
                        s.ts_ns,
                        &to_unix,
                        &mut self.spans,
                    );
                }
                Ok(Event::Exec {
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
                Ok(Event::Exit { tgid, .. }) => {
                    self.resources.remove(tgid);
                    self.tracker.process_exited(tgid);
                }
                Err(e) => {
                    Counters::inc(&self.counters.decode_errors);
                    log::debug!("undecodable ring record: {e}");
                }
            }
        }
        self.export(sink);
        emptied
    }

    /// A connection that went quiet mid-exchange may have ended it with folded egress (a
    /// sendfile'd body) that no later record will carry: read the kernel's total. Only
    /// folds from before `drained_from_ns` are taken, when every record the connection
    /// made before them has been read (the ring was drained empty since then).
    fn read_quiet_folded(&mut self, drained_from_ns: u64, sink: &mut dyn SpanSink) {
        let clock = self.clock;
        let to_unix = move |ns| clock.to_unix_nanos(ns);
        let quiet = self.tracker.quiet_open_exchanges(
            drained_from_ns,
            QUIET_CONNECTION.as_nanos() as u64,
            MAX_QUIET_READS,
        );
        for sock in quiet {
            if let Some(info) = self.probes.sock_info(sock)
                && info.folded_ts_ns < drained_from_ns
            {
                self.tracker
                    .on_sock_info(sock, &info, &to_unix, &mut self.spans);
            }
        }
        self.export(sink);
    }

    fn export(&mut self, sink: &mut dyn SpanSink) {
        if !self.spans.is_empty() {
            let spans = std::mem::take(&mut self.spans);
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
        } else if !self.exe_globs.is_empty() && targets::exe_matches(tgid, &self.exe_globs) {
            trace(&mut self.probes, tgid, &self.counters, &self.resources);
            self.resources.refresh_after_exec(facts);
        }
    }

    fn housekeeping(&mut self, sink: &mut dyn SpanSink) {
        self.tracker.tick(WallClock::mono_now());
        if let Err(e) = sink.tick(now_unix()) {
            log::warn!("sink tick failed: {e:#}");
        }
        self.probes.sync_counters(&self.counters);
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
