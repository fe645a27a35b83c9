//! The terminal view: one indented tree per trace.
//!
//! Spans of a trace finish at different times (a CLIENT span ends before the SERVER
//! span that made the call), so printing span by span would scatter a trace. Instead
//! spans are buffered per trace and a trace is printed once no span has arrived for it
//! for `quiet_for`. The buffer is bounded both in traces and in spans per trace, so a
//! flood of traffic costs fixed memory: past the trace limit the least recently
//! active trace prints early; past the per-trace limit further spans are dropped and
//! counted (and the count shows in that trace's header).

mod layout;
mod line;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

use super::{SinkError, SpanSink};
use crate::spans::{Span, TraceId};

/// How long a trace must be quiet before it prints, unless the caller chooses otherwise.
pub const DEFAULT_QUIET_FOR: Duration = Duration::from_secs(1);
/// Traces buffered at most; one more prints the least recently active early.
pub const DEFAULT_MAX_TRACES: usize = 10_000;
/// Spans kept per trace at most; more are dropped and counted. A tree this size is
/// already past what anyone reads in a terminal.
pub const DEFAULT_MAX_SPANS_PER_TRACE: usize = 1_000;

/// Prints each trace as a tree once it has gone quiet. See the module docs.
pub struct TreeSink<W: Write> {
    writer: W,
    quiet_for_nanos: u64,
    color: bool,
    max_traces: usize,
    max_spans_per_trace: usize,
    traces: HashMap<TraceId, PendingTrace>,
    /// The same traces keyed by when their last span arrived: the first entry is the
    /// next to go quiet and the one to print early when the buffer is full, so neither
    /// `tick` nor eviction scans the whole buffer.
    by_last_arrival: BTreeSet<(u64, TraceId)>,
    dropped_spans: u64,
    evicted_traces: u64,
}

struct PendingTrace {
    spans: Vec<Span>,
    /// Spans of this trace refused because it was full.
    dropped: u64,
    last_arrival: u64,
}

impl<W: Write> TreeSink<W> {
    /// `color` adds ANSI red to error marks; pass true only when `writer` is a
    /// terminal (e.g. `std::io::stdout().is_terminal()`).
    pub fn new(writer: W, quiet_for: Duration, color: bool) -> Self {
        Self {
            writer,
            quiet_for_nanos: u64::try_from(quiet_for.as_nanos()).unwrap_or(u64::MAX),
            color,
            max_traces: DEFAULT_MAX_TRACES,
            max_spans_per_trace: DEFAULT_MAX_SPANS_PER_TRACE,
            traces: HashMap::new(),
            by_last_arrival: BTreeSet::new(),
            dropped_spans: 0,
            evicted_traces: 0,
        }
    }

    /// Replaces the default bounds; zero is treated as one.
    pub fn with_limits(mut self, max_traces: usize, max_spans_per_trace: usize) -> Self {
        self.max_traces = max_traces.max(1);
        self.max_spans_per_trace = max_spans_per_trace.max(1);
        self
    }

    /// Spans refused because their trace already held the per-trace maximum.
    pub fn dropped_spans(&self) -> u64 {
        self.dropped_spans
    }

    /// Traces printed before going quiet because the trace limit was reached.
    pub fn evicted_traces(&self) -> u64 {
        self.evicted_traces
    }

    /// Traces currently waiting to go quiet.
    pub fn buffered_traces(&self) -> usize {
        self.traces.len()
    }

    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    pub fn into_inner(self) -> W {
        self.writer
    }

    fn accept(&mut self, span: Span, now: u64, out: &mut String) {
        let id = span.trace_id;
        if let Some(trace) = self.traces.get_mut(&id) {
            self.by_last_arrival.remove(&(trace.last_arrival, id));
            self.by_last_arrival.insert((now, id));
            trace.last_arrival = now;
            if trace.spans.len() < self.max_spans_per_trace {
                trace.spans.push(span);
            } else {
                trace.dropped += 1;
                self.dropped_spans += 1;
            }
            return;
        }
        if self.traces.len() >= self.max_traces
            && let Some((_, oldest)) = self.by_last_arrival.pop_first()
        {
            self.render(oldest, out);
            self.evicted_traces += 1;
        }
        self.by_last_arrival.insert((now, id));
        self.traces.insert(
            id,
            PendingTrace {
                spans: vec![span],
                dropped: 0,
                last_arrival: now,
            },
        );
    }

    /// Removes trace `id` from the buffer (map and index) and appends its tree to `out`.
    fn render(&mut self, id: TraceId, out: &mut String) {
        if let Some(trace) = self.traces.remove(&id) {
            self.by_last_arrival.remove(&(trace.last_arrival, id));
            layout::render_trace(out, id, &trace.spans, trace.dropped, self.color);
        }
    }

    /// Writes `out` in one go, so traces are never interleaved with other output.
    fn write(&mut self, out: &str) -> Result<(), SinkError> {
        if out.is_empty() {
            return Ok(());
        }
        self.writer
            .write_all(out.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(SinkError::io("writing trace tree"))
    }
}

impl<W: Write> SpanSink for TreeSink<W> {
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> Result<(), SinkError> {
        let mut out = String::new();
        for span in spans {
            self.accept(span, now_unix_nano, &mut out);
        }
        self.write(&out)
    }

    fn tick(&mut self, now_unix_nano: u64) -> Result<(), SinkError> {
        let mut out = String::new();
        while let Some((last_arrival, id)) = self.by_last_arrival.first().copied() {
            if now_unix_nano.saturating_sub(last_arrival) < self.quiet_for_nanos {
                break;
            }
            // Popping (not just peeking) guarantees progress even if the index and
            // the map ever disagreed.
            self.by_last_arrival.pop_first();
            self.render(id, &mut out);
        }
        self.write(&out)
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        let mut out = String::new();
        while let Some((_, id)) = self.by_last_arrival.pop_first() {
            self.render(id, &mut out);
        }
        self.write(&out)?;
        self.writer
            .flush()
            .map_err(SinkError::io("flushing trace tree"))
    }
}
