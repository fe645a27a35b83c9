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
use crate::spans::{Emitted, RequestSeen, Span};

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

    /// Runs what the span builder emitted, in order, through every stage; the spans that
    /// survive are appended to `out`.
    pub fn run(&mut self, emitted: impl IntoIterator<Item = Emitted>, out: &mut Vec<Span>) {
        'items: for item in emitted {
            match item {
                Emitted::Request(seen) => {
                    for stage in &mut self.stages {
                        stage.request(&seen);
                    }
                }
                Emitted::Span { tgid, mut span } => {
                    for stage in &mut self.stages {
                        if stage.span(tgid, &mut span) == Verdict::Drop {
                            continue 'items;
                        }
                    }
                    // Built: made by the span builder and kept by every stage.
                    Counters::inc(&self.counters.spans_built);
                    if out.len() >= MAX_BATCH {
                        Counters::inc(&self.counters.pipeline_dropped);
                        continue;
                    }
                    out.push(span);
                }
            }
        }
    }

    pub fn process_exited(&mut self, tgid: u32) {
        for stage in &mut self.stages {
            stage.process_exited(tgid);
        }
    }
}
