//! What can go wrong handing spans to a sink.

use std::time::Duration;

use thiserror::Error;

/// A sink's failure. Spans a failing `export` was handed are lost; the caller counts
/// them (`spans_dropped`).
#[derive(Debug, Error)]
pub enum SinkError {
    /// Writing to the sink's output failed (a closed pipe, a full disk).
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A span could not be encoded.
    #[error("encoding a span as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The exporter did not send what it held in time at shutdown.
    #[error("the exporter did not flush within {} ms; unsent spans are lost", .0.as_millis())]
    FlushTimeout(Duration),
    /// The exporter's worker thread died.
    #[error("the exporter thread panicked")]
    WorkerPanicked,
    /// Several sinks failed (fan-out): the first error, and how many others.
    #[error("{first} (and {more} more sink errors)")]
    Several { first: Box<SinkError>, more: usize },
    /// A test sink's refusal.
    #[cfg(test)]
    #[error("{0}")]
    Refused(&'static str),
}

impl SinkError {
    /// An I/O failure while doing `what`.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SinkError {
        move |source| SinkError::Io { what, source }
    }
}
