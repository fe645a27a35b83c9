//! Periodic OTLP export of the span metrics and the agent's own counters.
//!
//! Runs on its own thread and runtime, like the trace exporter, so a slow collector
//! never holds up the agent's event loop. Cumulative temporality: a failed export is
//! simply superseded by the next one, nothing is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use super::SpanMetrics;
use crate::config::OtlpConfig;
use crate::metrics::Counters;
use crate::sinks::otlp::OtlpClient;

/// The running exporter; dropping it exports one last time and stops the thread.
pub struct MetricsExporter {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl MetricsExporter {
    pub fn start(
        config: &OtlpConfig,
        metrics: Arc<SpanMetrics>,
        interval: Duration,
        counters: Arc<Counters>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the OTLP metrics runtime")?;
        let client = {
            let _guard = runtime.enter();
            OtlpClient::new(config)?
        };
        let timeout = config.timeout.value;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("sonde-otlp-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let step = Duration::from_millis(100);
                    let mut waited = Duration::ZERO;
                    loop {
                        let last = stopping.load(Ordering::Relaxed);
                        if last || waited >= interval {
                            waited = Duration::ZERO;
                            let request = metrics.export_request(unix_now());
                            match client.export_metrics(request, timeout).await {
                                Ok(_) => Counters::inc(&counters.metric_exports),
                                Err(e) => {
                                    Counters::inc(&counters.metric_export_failures);
                                    log::debug!("OTLP metrics export failed: {e:#}");
                                }
                            }
                            if last {
                                return;
                            }
                        }
                        tokio::time::sleep(step).await;
                        waited += step;
                    }
                });
            })
            .context("starting the OTLP metrics thread")?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for MetricsExporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
