//! The pipeline: the stages every finished span passes between the span builder and the
//! sinks, in order. Stages keep, change or drop spans and count every drop by reason;
//! stateful ones also learn from the requests the span builder saw start (a span only
//! exists once its exchange ended, too late for some decisions).
//!
//! Today: SDK suppression ([`sdk`]) and redaction ([`redact`]). Sampling, filtering and
//! enrichment plug in here as further [`Stage`]s. Memory is bounded: the pipeline runs
//! on the batch the event loop just built (itself bounded by the records one drain
//! reads), and whatever it holds back beyond [`MAX_BATCH`] is dropped and counted.

pub mod redact;
pub mod sdk;

use std::sync::Arc;

use crate::metrics::Counters;
use crate::spans::{Batch, RequestSeen, Span};

/// Most spans handed on per run; the rest are dropped (`pipeline_dropped`).
pub const MAX_BATCH: usize = 65_536;

/// What a stage decides for one span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Dropped: the stage counted why.
    Drop,
}

/// One step of the pipeline.
pub trait Stage: Send {
    /// A request the span builder saw start (its span comes later, if at all).
    fn request(&mut self, _seen: &RequestSeen) {}

    /// One finished span of process `tgid`: keep it (possibly changed) or drop it.
    fn span(&mut self, tgid: u32, span: &mut Span) -> Verdict;

    /// A traced process exited: its pid may come back as another program.
    fn process_exited(&mut self, _tgid: u32) {}
}

/// The stages, in order.
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
    counters: Arc<Counters>,
}

impl Pipeline {
    pub fn new(stages: Vec<Box<dyn Stage>>, counters: Arc<Counters>) -> Self {
        Self { stages, counters }
    }

    /// What every agent runs: SDK suppression, then redaction.
    pub fn standard(counters: Arc<Counters>) -> Self {
        Self::new(
            vec![
                Box::new(sdk::SdkSuppression::new(Arc::clone(&counters))),
                Box::new(redact::Redact),
            ],
            counters,
        )
    }

    /// Runs a batch through every stage, in place and in order: each request is seen
    /// before the spans built after it. Dropped spans leave the batch; at most
    /// [`MAX_BATCH`] spans stay, the rest are dropped and counted.
    pub fn run(&mut self, batch: &mut Batch) {
        let Batch {
            spans,
            tgids,
            requests,
        } = batch;
        let Self { stages, counters } = self;
        let mut requests = requests.drain(..).peekable();
        let mut tgids = tgids.drain(..);
        let mut index = 0;
        spans.retain_mut(|span| {
            while let Some((_, seen)) = requests.next_if(|(before, _)| *before <= index) {
                stages.iter_mut().for_each(|stage| stage.request(&seen));
            }
            index += 1;
            let tgid = tgids.next().unwrap_or_default();
            let kept = stages
                .iter_mut()
                .all(|stage| stage.span(tgid, span) == Verdict::Keep);
            if kept {
                // Built: made by the span builder and kept by every stage.
                Counters::inc(&counters.spans_built);
                if crate::spans::semconv::parent_is_guess(span) {
                    Counters::inc(&counters.parent_guessed);
                }
            }
            kept
        });
        for (_, seen) in requests {
            stages.iter_mut().for_each(|stage| stage.request(&seen));
        }
        if spans.len() > MAX_BATCH {
            Counters::add(&counters.pipeline_dropped, (spans.len() - MAX_BATCH) as u64);
            spans.truncate(MAX_BATCH);
        }
    }

    pub fn process_exited(&mut self, tgid: u32) {
        for stage in &mut self.stages {
            stage.process_exited(tgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::spans::{SpanIdentity, SpanKind};

    /// Records what it sees; drops the spans of process 0.
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Stage for Recorder {
        fn request(&mut self, seen: &RequestSeen) {
            self.0
                .lock()
                .unwrap()
                .push(format!("request {}", seen.tgid));
        }

        fn span(&mut self, tgid: u32, span: &mut Span) -> Verdict {
            self.0
                .lock()
                .unwrap()
                .push(format!("span {tgid} {}", span.name));
            if tgid == 0 {
                Verdict::Drop
            } else {
                Verdict::Keep
            }
        }
    }

    fn span(name: &str) -> Span {
        use crate::sinks::test_support::{self as t, SpanExt};
        t::span(t::trace_id(1), t::span_id(1), None, "svc").named(name)
    }

    fn seen(tgid: u32) -> RequestSeen {
        RequestSeen {
            tgid,
            kind: SpanKind::Server,
            ident: SpanIdentity::new_root(),
            otlp_trace_export: false,
        }
    }

    #[test]
    fn requests_are_seen_before_the_spans_built_after_them_and_drops_leave() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let mut pipeline = Pipeline::new(
            vec![Box::new(Recorder(Arc::clone(&log)))],
            Arc::clone(&counters),
        );
        let mut batch = Batch::default();
        batch.push_request(seen(1));
        batch.push_span(1, span("a"));
        batch.push_span(0, span("dropped"));
        batch.push_request(seen(2));
        batch.push_span(2, span("b"));
        batch.push_request(seen(3));
        pipeline.run(&mut batch);
        assert_eq!(
            *log.lock().unwrap(),
            [
                "request 1",
                "span 1 a",
                "span 0 dropped",
                "request 2",
                "span 2 b",
                "request 3"
            ]
        );
        let names: Vec<_> = batch.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(batch.tgids.is_empty() && batch.requests.is_empty());
        assert_eq!(
            counters
                .spans_built
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn beyond_the_batch_limit_spans_are_dropped_and_counted() {
        let counters = Arc::new(Counters::default());
        let mut pipeline = Pipeline::new(Vec::new(), Arc::clone(&counters));
        let mut batch = Batch::default();
        for _ in 0..MAX_BATCH + 3 {
            batch.push_span(1, span("x"));
        }
        pipeline.run(&mut batch);
        assert_eq!(batch.spans.len(), MAX_BATCH);
        assert_eq!(
            counters
                .pipeline_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }
}
