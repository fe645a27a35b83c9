//! A sink that keeps nothing (`-o none`: counters only).

use super::{SinkError, SpanSink};
use crate::spans::Span;

pub struct NullSink;

impl SpanSink for NullSink {
    fn export(&mut self, _spans: Vec<Span>, _now: u64) -> Result<(), SinkError> {
        Ok(())
    }
    fn tick(&mut self, _now: u64) -> Result<(), SinkError> {
        Ok(())
    }
    fn shutdown(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
