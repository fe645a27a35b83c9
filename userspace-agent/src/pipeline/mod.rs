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
