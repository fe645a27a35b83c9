//! The running agent: set up the sinks, attach the probes, run the event loop, and
//! detach cleanly on Ctrl-C, SIGTERM, `--duration`, or the end of `sonde run`'s child.
//!
//! The agent wires the stages together and owns nothing of theirs: `event_loop` drives
//! records from the ring through capture, spans and the pipeline to the sinks that
//! `outputs` built; `child` is `sonde run`'s command.

mod child;
mod event_loop;
mod outputs;
mod tls_scan;

use std::sync::Arc;

use anyhow::{Context, Result};

use self::child::spawn_traced;
use self::event_loop::Loop;
use self::outputs::{SpanMetricsSetup, make_sink};
use self::tls_scan::TlsScan;
use crate::attach::inject::reenrol::Reenroller;
use crate::attach::probes::Probes;
use crate::attach::targets::{self, Target};
use crate::capture::ring::RingReader;
use crate::capture::{Capture, TableLimits, WallClock};
use crate::config::Settings;
use crate::metrics::Counters;
use crate::pipeline::Pipeline;
use crate::process::{ResourceCache, ResourceOverrides};
use crate::programs::ProbeOptions;
use crate::spans::{Limits, SpanBuilder};

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
        tls: opts.tls,
        go_runtime: opts.go_runtime,
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
    let mut tls_scan = TlsScan::default();
    // Processes that start later may load a TLS library and use it at once.
    if matches!(mode, Mode::Run(_)) || !exe_globs.is_empty() {
        probes.probe_system_tls();
    }
    match &mode {
        Mode::Attach(t) => {
            let resolved = targets::resolve(t)?;
            for pid in resolved.pids {
                trace(&mut probes, pid, &counters, &resources);
                probes.follow_goroutines(pid);
                tls_scan.started(&mut probes, pid);
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
        encrypted_processes: Vec::new(),
        counters: Arc::clone(&counters),
        resources,
        exe_globs,
        tls_scan,
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
    loop_state.finish(&mut *sink);
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
