//! Where finished spans go, after the pipeline: the terminal printer (`tree`), JSON
//! lines (`json`), OTLP export (`otlp`), span metrics (`span_metrics`), and later the
//! embedded store.
//!
//! Every sink implements [`SpanSink`], so the agent only hands over batches and nothing
//! upstream knows who consumes them (the same split as ripgrep's `Sink`). Failures are
//! typed ([`SinkError`]). Time is always passed in by the caller rather than read from a
//! clock, which keeps sinks deterministic and testable with synthetic timestamps.

pub mod error;
pub mod fanout;
pub mod json;
pub mod null;
pub mod otlp;
pub mod otlp_json;
pub mod tree;

#[cfg(test)]
pub(crate) mod test_support;

pub use error::SinkError;
pub use fanout::FanoutSink;
pub use json::JsonLinesSink;
pub use null::NullSink;
pub use otlp::OtlpSink;
pub use tree::TreeSink;

use crate::spans::Span;

/// A consumer of finished spans.
///
/// The driver calls `export` whenever spans are ready, `tick` about every 50 ms so
/// sinks that batch or wait (e.g. the tree printer waiting for a trace to go quiet)
/// can flush what is due, and `shutdown` once at exit.
pub trait SpanSink {
    /// Accepts a batch of finished spans. `now_unix_nano` is the driver's current time;
    /// it is expected not to go backwards between calls.
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> Result<(), SinkError>;

    /// Called periodically (about every 50 ms): flush whatever is due at `now_unix_nano`.
    fn tick(&mut self, now_unix_nano: u64) -> Result<(), SinkError>;

    /// Flushes everything still buffered; the sink is not used afterwards.
    fn shutdown(&mut self) -> Result<(), SinkError>;
}

/// Lets the driver hold a `Box<dyn SpanSink>` chosen at runtime (from the CLI).
impl<S: SpanSink + ?Sized> SpanSink for Box<S> {
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> Result<(), SinkError> {
        (**self).export(spans, now_unix_nano)
    }

    fn tick(&mut self, now_unix_nano: u64) -> Result<(), SinkError> {
        (**self).tick(now_unix_nano)
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        (**self).shutdown()
    }
}
