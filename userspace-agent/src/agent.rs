//! The running agent: attach, read events, build spans, hand them to the sink, and
//! detach cleanly on Ctrl-C, SIGTERM, `--duration`, or the end of `sonde run`'s child.

use std::io::IsTerminal;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

use crate::attach::inject::reenrol::Reenroller;
use crate::attach::probes::Probes;
use crate::attach::targets::{self, Target};
use crate::capture::ring::RingReader;
use crate::capture::{Capture, IdleClient, ProcessRecord, TableLimits, WallClock};
use crate::config::{OutputFormat, Settings, Signal, TraceSettings};
use crate::metrics::Counters;
use crate::pipeline::Pipeline;
use crate::process::{ProcessFacts, ResourceCache, ResourceOverrides};
use crate::programs::ProbeOptions;
use crate::serve;
use crate::sinks::otlp::ExportOptions;
use crate::sinks::{FanoutSink, JsonLinesSink, NullSink, OtlpSink, SpanSink, TreeSink};
use crate::span_metrics::export::MetricsExporter;
use crate::span_metrics::{
    SpanMetrics, SpanMetricsConfig, SpanMetricsSink, agent_resource, scrape,
};
use crate::spans::{Limits, Session, SpanBuilder};

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

pub async fn run(mode: Mode, settings: Settings) -> Result<Ended> {
    let opts = &settings.trace;
    let counters = Arc::new(Counters::default());
    // Before attaching anything, so a bad OTLP or metrics setting fails fast.
    let span_metrics = SpanMetricsSetup::start(&settings, &counters).await?;
    let mut sink = make_sink(&settings, &counters, span_metrics.registry.as_ref())?;
    let tracefs = crate::sys::fs::ensure_tracefs().context("tracepoints need tracefs")?;
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
    let mut probes = Probes::load_and_attach(&ProbeOptions {
        capture_bytes: opts.capture_bytes,
        watch_exec: !exe_globs.is_empty(),
        empty_probes: opts.empty_probes,
        ring_buffer_bytes: opts.ring_buffer_bytes,
        wakeup: crate::programs::Wakeup {
            bytes: opts.wakeup.bytes.into(),
            gap_ns: u64::try_from(opts.wakeup.gap.as_nanos()).unwrap_or(u64::MAX),
        },
        inject: opts.inject && !opts.empty_probes,
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
    let builder_resources = Arc::clone(&resources);
    let mut builder = SpanBuilder::new(
        Limits {
            request_timeout_ns: u64::try_from(opts.request_timeout.as_nanos()).unwrap_or(u64::MAX),
            ..Limits::default()
        },
        Box::new(move |pid| builder_resources.get_or_load(pid)),
        Arc::clone(&counters),
    )
    .with_parse_options(opts.db_query_text.parse_options());
    let reenroller = match probes.take_injection_maps()? {
        Some(maps) => {
            builder.enable_idle_clients();
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
        capture: Capture::new(
            TableLimits::default(),
            WallClock::sample(),
            Arc::clone(&counters),
        ),
        builder,
        pipeline: Pipeline::standard(Arc::clone(&counters)),
        reenroller,
        idle_clients: Vec::new(),
        counters: Arc::clone(&counters),
        resources,
        exe_globs,
    };
    let ended = loop_state
        .run(
            RingReader::new(ring)?,
            child.as_mut(),
            opts.duration,
            &mut *sink,
        )
        .await;

    // Detach first so nothing more arrives, then flush what is buffered.
    loop_state.capture.shutdown(&mut loop_state.builder);
    if let Err(e) = sink.shutdown() {
        eprintln!("sonde: flushing spans: {e:#}");
    }
    loop_state.probes.sync_counters(&counters);
    drop(loop_state);
    // The metrics exporter sends its last export when dropped: count it before reporting.
    span_metrics.stop().await;
    eprint!("{}", counters.report());
    ended
}

/// Says at startup whether this kernel has the sockmap FIONREAD bug (as `sonde doctor`
/// does); the enrolment rule keeps applications safe in both cases.
fn report_fionread_hazard() {
    use crate::sys::sockmap::{FionreadProbe, probe_fionread};
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
    settings: &Settings,
    counters: &Arc<Counters>,
    span_metrics: Option<&Arc<SpanMetrics>>,
) -> Result<Box<dyn SpanSink>> {
    let mut sinks: Vec<Box<dyn SpanSink>> = Vec::new();
    if let Some(m) = span_metrics {
        sinks.push(Box::new(SpanMetricsSink::new(Arc::clone(m))));
    }
    let traces = &settings.otlp.traces;
    if traces.enabled.value {
        let otlp = OtlpSink::new(traces, ExportOptions::default(), Arc::clone(counters))
            .context("setting up OTLP export")?;
        eprintln!(
            "sonde: exporting spans over OTLP ({}) to {}",
            traces.protocol.value,
            crate::config::display::mask_url(&traces.endpoint.value)
        );
        sinks.push(Box::new(otlp));
    }
    if settings.trace.output != OutputFormat::None || sinks.is_empty() {
        sinks.push(make_stdout_sink(&settings.trace));
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
    /// `--prometheus-listen`.
    endpoint: Option<serve::Serving>,
}

impl SpanMetricsSetup {
    async fn start(settings: &Settings, counters: &Arc<Counters>) -> Result<Self> {
        if settings.trace.prometheus_listen.is_none() && !settings.otlp.traces.enabled.value {
            return Ok(Self {
                registry: None,
                _exporter: None,
                endpoint: None,
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
        let mut endpoint = None;
        if let Some(addr) = settings.trace.prometheus_listen {
            let server = serve::Server::bind(addr, serve::Limits::default())
                .await
                .with_context(|| format!("serving Prometheus metrics on {addr}"))?;
            eprintln!(
                "sonde: Prometheus metrics at http://{}{}",
                server.local_addr(),
                scrape::PATH
            );
            endpoint = Some(server.serve(scrape::routes(Arc::clone(&registry))));
        }
        let exporter = if settings.otlp.traces.enabled.value {
            let metrics_config = settings
                .otlp
                .for_signal(Signal::Metrics)
                .context("OTLP metrics settings")?;
            let interval = settings.otlp.metric_export_interval;
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
            endpoint,
        })
    }

    /// Lets scrapes under way finish, then exports one last time.
    async fn stop(mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            endpoint.shutdown().await;
        }
    }
}

fn make_stdout_sink(opts: &TraceSettings) -> Box<dyn SpanSink> {
    let stdout = std::io::stdout();
    match opts.output {
        OutputFormat::Json => Box::new(JsonLinesSink::new(stdout)),
        OutputFormat::Tree => {
            let color = stdout.is_terminal();
            Box::new(TreeSink::new(stdout, opts.tree_quiet, color))
        }
        OutputFormat::None => Box::new(NullSink),
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
    crate::sys::bpf::enroll_before_exec(&mut command, map_fd);
    let child = command
        .spawn()
        .with_context(|| format!("starting {program} traced"))?;
    Counters::inc(&counters.processes_traced);
    Ok(child)
}

/// The event loop's state: the stages from ring to sink.
struct Loop {
    probes: Probes,
    capture: Capture<Session>,
    builder: SpanBuilder,
    pipeline: Pipeline,
    reenroller: Option<Reenroller>,
    idle_clients: Vec<IdleClient>,
    counters: Arc<Counters>,
    resources: Arc<ResourceCache>,
    exe_globs: Vec<glob::Pattern>,
}

impl Loop {
    async fn run(
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
        } else if !self.exe_globs.is_empty() && targets::exe_matches(tgid, &self.exe_globs) {
            trace(&mut self.probes, tgid, &self.counters, &self.resources);
            self.resources.refresh_after_exec(facts);
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
        self.probes.sync_counters(&self.counters);
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
