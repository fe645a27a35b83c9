//! Where spans and metrics go: the sinks chosen by the settings (terminal, JSON, OTLP,
//! span metrics) and the span-metrics setup (Prometheus endpoint, OTLP metrics export).

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::{OutputFormat, Settings, Signal, TraceSettings};
use crate::metrics::Counters;
use crate::serve;
use crate::sinks::otlp::ExportOptions;
use crate::sinks::{FanoutSink, JsonLinesSink, NullSink, OtlpSink, SpanSink, TreeSink};
use crate::span_metrics::export::MetricsExporter;
use crate::span_metrics::{
    SpanMetrics, SpanMetricsConfig, SpanMetricsSink, agent_resource, scrape,
};

/// The stdout sink for `--output`, plus the OTLP exporter when OTLP is enabled.
pub(super) fn make_sink(
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
pub(super) struct SpanMetricsSetup {
    pub(super) registry: Option<Arc<SpanMetrics>>,
    /// Exports one last time when dropped (agent shutdown).
    _exporter: Option<MetricsExporter>,
    /// `--prometheus-listen`.
    endpoint: Option<serve::Serving>,
}

impl SpanMetricsSetup {
    pub(super) async fn start(settings: &Settings, counters: &Arc<Counters>) -> Result<Self> {
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
    pub(super) async fn stop(mut self) {
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

pub(super) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
