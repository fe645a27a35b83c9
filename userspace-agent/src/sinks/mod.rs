//! Where finished spans go: the terminal printer, JSON lines, and later OTLP and the store.
//!
//! Every sink implements [`SpanSink`], so the span builder only hands over batches and
//! never knows who consumes them (the same split as ripgrep's `Sink`). Time is always
//! passed in by the caller rather than read from a clock, which keeps sinks
//! deterministic and testable with synthetic timestamps.

pub mod json;
pub mod otlp_json;
pub mod tree;

#[cfg(test)]
mod test_support;

pub use json::JsonLinesSink;
pub use tree::TreeSink;

use crate::spans::Span;

/// A consumer of finished spans.
///
/// The driver calls `export` whenever spans are ready, `tick` about every 100 ms so
/// sinks that batch or wait (e.g. the tree printer waiting for a trace to go quiet)
/// can flush what is due, and `shutdown` once at exit.
pub trait SpanSink {
    /// Accepts a batch of finished spans. `now_unix_nano` is the driver's current time;
    /// it is expected not to go backwards between calls.
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> anyhow::Result<()>;

    /// Called periodically (about every 100 ms): flush whatever is due at `now_unix_nano`.
    fn tick(&mut self, now_unix_nano: u64) -> anyhow::Result<()>;

    /// Flushes everything still buffered; the sink is not used afterwards.
    fn shutdown(&mut self) -> anyhow::Result<()>;
}

/// Lets the driver hold a `Box<dyn SpanSink>` chosen at runtime (from the CLI).
impl<S: SpanSink + ?Sized> SpanSink for Box<S> {
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> anyhow::Result<()> {
        (**self).export(spans, now_unix_nano)
    }

    fn tick(&mut self, now_unix_nano: u64) -> anyhow::Result<()> {
        (**self).tick(now_unix_nano)
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        (**self).shutdown()
    }
}
