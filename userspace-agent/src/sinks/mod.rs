//! Where finished spans go: the terminal printer, JSON lines, and later OTLP and the store.
//!
//! Every sink implements [`SpanSink`], so the span builder only hands over batches and
//! never knows who consumes them (the same split as ripgrep's `Sink`). Time is always
//! passed in by the caller rather than read from a clock, which keeps sinks
//! deterministic and testable with synthetic timestamps.

pub mod json;
pub mod otlp;
pub mod otlp_json;
pub mod tree;

#[cfg(test)]
pub(crate) mod test_support;

pub use json::JsonLinesSink;
pub use otlp::OtlpSink;
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

/// Hands every batch to several sinks (e.g. the terminal printer and the OTLP
/// exporter). Every sink gets every call even when an earlier one fails; the first
/// error is returned.
pub struct FanoutSink {
    sinks: Vec<Box<dyn SpanSink>>,
}

impl FanoutSink {
    pub fn new(sinks: Vec<Box<dyn SpanSink>>) -> Self {
        Self { sinks }
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut dyn SpanSink) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut first = None;
        for sink in &mut self.sinks {
            if let Err(e) = f(sink.as_mut()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl SpanSink for FanoutSink {
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> anyhow::Result<()> {
        // The last sink takes the batch itself; the others get copies.
        let Some((last, rest)) = self.sinks.split_last_mut() else {
            return Ok(());
        };
        let mut first = None;
        for sink in rest {
            if let Err(e) = sink.export(spans.clone(), now_unix_nano) {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = last.export(spans, now_unix_nano) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    fn tick(&mut self, now_unix_nano: u64) -> anyhow::Result<()> {
        self.each(|s| s.tick(now_unix_nano))
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        self.each(|s| s.shutdown())
    }
}

#[cfg(test)]
mod fanout_tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    struct Recorder(Rc<RefCell<Vec<String>>>, bool);

    impl SpanSink for Recorder {
        fn export(&mut self, spans: Vec<Span>, _now: u64) -> anyhow::Result<()> {
            self.0.borrow_mut().push(format!("export {}", spans.len()));
            if self.1 {
                anyhow::bail!("broken");
            }
            Ok(())
        }
        fn tick(&mut self, now: u64) -> anyhow::Result<()> {
            self.0.borrow_mut().push(format!("tick {now}"));
            Ok(())
        }
        fn shutdown(&mut self) -> anyhow::Result<()> {
            self.0.borrow_mut().push("shutdown".into());
            Ok(())
        }
    }

    #[test]
    fn every_sink_gets_every_call_even_after_a_failure() {
        let a = Rc::new(RefCell::new(Vec::new()));
        let b = Rc::new(RefCell::new(Vec::new()));
        let mut fan = FanoutSink::new(vec![
            Box::new(Recorder(Rc::clone(&a), true)),
            Box::new(Recorder(Rc::clone(&b), false)),
        ]);
        assert!(fan.export(Vec::new(), 1).is_err());
        fan.tick(5).unwrap();
        fan.shutdown().unwrap();
        for log in [a, b] {
            assert_eq!(*log.borrow(), ["export 0", "tick 5", "shutdown"]);
        }
    }
}
