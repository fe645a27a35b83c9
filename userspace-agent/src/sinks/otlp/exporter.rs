//! [`OtlpSink`]: the span sink that exports over OTLP.
//!
//! `export` only moves spans into a bounded queue (`try_send`: never waits; a full
//! queue drops the span and counts it in `export_queue_dropped`). A worker thread with
//! its own single-threaded tokio runtime batches the queue (up to `max_batch` spans or
//! `batch_timeout` after the first one), encodes each batch grouped by resource, and
//! sends it with retries: exponential backoff with jitter on transient errors, the
//! server's Retry-After / RetryInfo honoured, at most `max_attempts` tries and never
//! longer than the configured timeout per batch. While a batch is retried the queue
//! keeps filling and then drops, so memory stays bounded however long the collector is
//! down; the next batch tries again, so export resumes by itself when it is back.
//!
//! The worker runs on its own thread rather than as a task on the agent's runtime so
//! that `shutdown` (a synchronous call from inside that runtime) can wait for the final
//! flush without stalling the runtime the flush would need.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch};

use super::encode::encode_traces;
use super::transport::{ExportError, OtlpClient};
use crate::config::OtlpConfig;
use crate::metrics::Counters;
use crate::sinks::{SinkError, SpanSink};
use crate::spans::Span;

/// Queueing, batching and retry limits.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Spans waiting for export; beyond this new spans are dropped (and counted).
    pub queue_capacity: usize,
    /// Most spans in one export request.
    pub max_batch: usize,
    /// A batch is sent at the latest this long after its first span arrived.
    pub batch_timeout: Duration,
    /// Most tries per batch (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled (with jitter) for each further retry.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long `shutdown` waits for the final flush.
    pub shutdown_timeout: Duration,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 2048,
            max_batch: 512,
            batch_timeout: Duration::from_secs(1),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// Exports spans over OTLP (gRPC or HTTP) from a background thread.
pub struct OtlpSink {
    tx: Option<mpsc::Sender<Span>>,
    closing: watch::Sender<Option<Instant>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    capacity: usize,
    shutdown_timeout: Duration,
}

impl OtlpSink {
    /// Starts the exporter thread. Fails on a bad configuration (unreadable
    /// certificate, invalid header); never on an unreachable collector.
    pub fn new(
        config: &OtlpConfig,
        options: ExportOptions,
        counters: Arc<Counters>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the OTLP exporter runtime")?;
        let client = {
            let _guard = runtime.enter();
            OtlpClient::new(config)?
        };
        let capacity = options.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (closing, closing_rx) = watch::channel(None);
        let worker = Worker {
            client,
            rx,
            closing: closing_rx,
            counters: Arc::clone(&counters),
            options: options.clone(),
            failing: false,
            endpoint: config.endpoint.value.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("sonde-otlp".into())
            .spawn(move || runtime.block_on(worker.run()))
            .context("starting the OTLP exporter thread")?;
        Ok(Self {
            tx: Some(tx),
            closing,
            worker: Some(handle),
            counters,
            capacity,
            shutdown_timeout: options.shutdown_timeout,
        })
    }

    fn update_depth(&self) {
        if let Some(tx) = &self.tx {
            Counters::set(
                &self.counters.export_queue_depth,
                (self.capacity - tx.capacity()) as u64,
            );
        }
    }
}

impl SpanSink for OtlpSink {
    fn export(&mut self, spans: Vec<Span>, _now_unix_nano: u64) -> Result<(), SinkError> {
        let Some(tx) = &self.tx else {
            self.counters
                .export_queue_dropped
                .fetch_add(spans.len() as u64, Ordering::Relaxed);
            return Ok(());
        };
        for span in spans {
            if tx.try_send(span).is_err() {
                Counters::inc(&self.counters.export_queue_dropped);
            }
        }
        self.update_depth();
        Ok(())
    }

    fn tick(&mut self, _now_unix_nano: u64) -> Result<(), SinkError> {
        self.update_depth();
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        // Closing the queue makes the worker send what is left and stop.
        self.tx = None;
        let deadline = Instant::now() + self.shutdown_timeout;
        let _ = self.closing.send(Some(deadline));
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        while !worker.is_finished() {
            if Instant::now() >= deadline {
                return Err(SinkError::FlushTimeout(self.shutdown_timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if worker.join().is_err() {
            return Err(SinkError::WorkerPanicked);
        }
        Ok(())
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        // Without shutdown: close the queue and let the thread finish on its own.
        self.tx = None;
        let _ = self
            .closing
            .send(Some(Instant::now() + self.shutdown_timeout));
    }
}

struct Worker {
    client: OtlpClient,
    rx: mpsc::Receiver<Span>,
    closing: watch::Receiver<Option<Instant>>,
    counters: Arc<Counters>,
    options: ExportOptions,
    /// The last batch failed (log state changes only, not every failure).
    failing: bool,
    endpoint: String,
}

impl Worker {
    async fn run(mut self) {
        let max_batch = self.options.max_batch.max(1);
        while let Some(first) = self.rx.recv().await {
            let mut batch = Vec::with_capacity(max_batch.min(self.options.queue_capacity));
            batch.push(first);
            let send_at = tokio::time::Instant::now() + self.options.batch_timeout;
            while batch.len() < max_batch {
                tokio::select! {
                    span = self.rx.recv() => match span {
                        Some(span) => batch.push(span),
                        None => break,
                    },
                    () = tokio::time::sleep_until(send_at) => break,
                }
            }
            Counters::set(&self.counters.export_queue_depth, self.rx.len() as u64);
            self.send(batch).await;
        }
        Counters::set(&self.counters.export_queue_depth, 0);
    }

    /// The shutdown deadline, once `shutdown` has been called.
    fn deadline(&self) -> Option<Instant> {
        *self.closing.borrow()
    }

    async fn send(&mut self, batch: Vec<Span>) {
        let n = batch.len() as u64;
        let request = encode_traces(&batch);
        drop(batch);
        let started = Instant::now();
        let budget = self.client.timeout();
        let mut backoff = self.options.initial_backoff;
        let mut attempt = 0;
        let error = loop {
            attempt += 1;
            let mut remaining = budget.saturating_sub(started.elapsed());
            if let Some(deadline) = self.deadline() {
                remaining = remaining.min(deadline.saturating_duration_since(Instant::now()));
            }
            if remaining.is_zero() {
                break "out of time".to_owned();
            }
            let result = self.client.export_traces(request.clone(), remaining).await;
            let (message, retry_after) = match result {
                Ok(outcome) => {
                    let rejected = outcome.rejected.clamp(0, n as i64) as u64;
                    self.counters
                        .spans_exported
                        .fetch_add(n - rejected, Ordering::Relaxed);
                    if rejected > 0 || !outcome.message.is_empty() {
                        self.counters
                            .spans_rejected
                            .fetch_add(rejected, Ordering::Relaxed);
                        log::warn!(
                            "OTLP collector rejected {rejected} of {n} spans: {}",
                            outcome.message
                        );
                    }
                    if self.failing {
                        self.failing = false;
                        log::warn!("OTLP export to {} works again", self.endpoint);
                    }
                    return;
                }
                Err(ExportError::Permanent(message)) => break message,
                Err(ExportError::Transient {
                    message,
                    retry_after,
                }) => (message, retry_after),
            };
            if attempt >= self.options.max_attempts {
                break message;
            }
            let delay = retry_after.unwrap_or_else(|| jitter(backoff));
            backoff = (backoff * 2).min(self.options.max_backoff);
            let budget_left = budget.saturating_sub(started.elapsed());
            let shutdown_left = self
                .deadline()
                .map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if let Some(why) = retry_refused(delay, budget_left, shutdown_left) {
                break format!("{message} ({why})");
            }
            log::debug!("OTLP export attempt {attempt} failed: {message}; retrying in {delay:?}");
            Counters::inc(&self.counters.export_retries);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.closing.changed() => {}
            }
        };
        Counters::inc(&self.counters.export_failures);
        self.counters
            .export_failed_spans
            .fetch_add(n, Ordering::Relaxed);
        if self.failing {
            log::debug!("OTLP export of {n} spans failed: {error}");
        } else {
            self.failing = true;
            log::warn!(
                "OTLP export to {} failing, spans are dropped (see export_* counters): {error}",
                self.endpoint
            );
        }
    }
}

/// Why a retry after `delay` will not happen, if it will not: it would end past the
/// batch's time budget, or past the shutdown deadline. Comparing what is left rather
/// than adding `delay` to a clock keeps any delay, however large, from overflowing.
fn retry_refused(
    delay: Duration,
    budget_left: Duration,
    shutdown_left: Option<Duration>,
) -> Option<&'static str> {
    if delay >= budget_left {
        Some("no time left to retry")
    } else if shutdown_left.is_some_and(|left| delay >= left) {
        Some("shutting down")
    } else {
        None
    }
}

/// Between half and all of `d` ("equal jitter"), so retrying agents spread out.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(500) && j <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn a_huge_server_delay_gives_up_without_overflow() {
        let forever = Duration::from_secs(u64::MAX);
        let ten = Duration::from_secs(10);
        assert_eq!(
            retry_refused(forever, ten, None),
            Some("no time left to retry")
        );
        assert_eq!(
            retry_refused(forever, Duration::MAX, Some(ten)),
            Some("shutting down")
        );
        assert_eq!(retry_refused(Duration::from_secs(1), ten, Some(ten)), None);
        assert_eq!(retry_refused(ten, ten, None), Some("no time left to retry"));
    }
}
