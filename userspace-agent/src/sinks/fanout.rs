//! Several sinks behind one: every batch to each of them.

use super::{SinkError, SpanSink};
use crate::spans::Span;

/// Hands every batch to several sinks (e.g. the terminal printer and the OTLP
/// exporter). Every sink gets every call even when an earlier one fails; the first
/// error is returned, with how many more there were.
pub struct FanoutSink {
    sinks: Vec<Box<dyn SpanSink>>,
}

impl FanoutSink {
    pub fn new(sinks: Vec<Box<dyn SpanSink>>) -> Self {
        Self { sinks }
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut dyn SpanSink) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        let mut errors = Errors::default();
        for sink in &mut self.sinks {
            errors.add(f(sink.as_mut()));
        }
        errors.into_result()
    }
}

/// The first error of several calls, and how many followed it.
#[derive(Default)]
struct Errors {
    first: Option<SinkError>,
    more: usize,
}

impl Errors {
    fn add(&mut self, result: Result<(), SinkError>) {
        if let Err(e) = result {
            if self.first.is_some() {
                self.more += 1;
            } else {
                self.first = Some(e);
            }
        }
    }

    fn into_result(self) -> Result<(), SinkError> {
        match (self.first, self.more) {
            (None, _) => Ok(()),
            (Some(e), 0) => Err(e),
            (Some(first), more) => Err(SinkError::Several {
                first: Box::new(first),
                more,
            }),
        }
    }
}

impl SpanSink for FanoutSink {
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> Result<(), SinkError> {
        // The last sink takes the batch itself; the others get copies.
        let Some((last, rest)) = self.sinks.split_last_mut() else {
            return Ok(());
        };
        let mut errors = Errors::default();
        for sink in rest {
            errors.add(sink.export(spans.clone(), now_unix_nano));
        }
        errors.add(last.export(spans, now_unix_nano));
        errors.into_result()
    }

    fn tick(&mut self, now_unix_nano: u64) -> Result<(), SinkError> {
        self.each(|s| s.tick(now_unix_nano))
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        self.each(|s| s.shutdown())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    struct Recorder(Rc<RefCell<Vec<String>>>, bool);

    impl SpanSink for Recorder {
        fn export(&mut self, spans: Vec<Span>, _now: u64) -> Result<(), SinkError> {
            self.0.borrow_mut().push(format!("export {}", spans.len()));
            if self.1 {
                return Err(SinkError::Refused("broken"));
            }
            Ok(())
        }
        fn tick(&mut self, now: u64) -> Result<(), SinkError> {
            self.0.borrow_mut().push(format!("tick {now}"));
            Ok(())
        }
        fn shutdown(&mut self) -> Result<(), SinkError> {
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

    #[test]
    fn several_failures_report_the_first_and_count_the_rest() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut fan = FanoutSink::new(vec![
            Box::new(Recorder(Rc::clone(&log), true)),
            Box::new(Recorder(Rc::clone(&log), true)),
        ]);
        let err = fan.export(Vec::new(), 1).unwrap_err();
        assert_eq!(err.to_string(), "broken (and 1 more sink errors)");
    }
}
