//! Finished server spans waiting for their client's request to be reported.
//!
//! A TLS client's request is reported when its library call returns; on one host the
//! server may read it, answer and finish its span before that (the woken server can
//! preempt the client between its write and the call's return). Such a server span,
//! with no parent and a peer on this host, waits here briefly: the client's request,
//! when it comes, claims it and becomes its parent; otherwise it goes out unjoined.

use std::collections::VecDeque;

use super::{HeldCall, Tuple};
use crate::spans::model::Span;

/// Spans waiting at most; beyond, a new one goes out at once, unjoined.
const MAX_AWAITING: usize = 4096;

#[derive(Debug, Default)]
pub struct AwaitingClient {
    /// By the client's (local, remote), oldest first.
    by_tuple: foldhash::HashMap<Tuple, VecDeque<HeldCall>>,
    len: usize,
}

impl AwaitingClient {
    /// `span` of process `tgid`, finished at `now_ns` on the client's `tuple`, waits
    /// for its client; returned when no room is left, to go out at once.
    pub fn hold(&mut self, tuple: Tuple, tgid: u32, span: Span, now_ns: u64) -> Option<Span> {
        if self.len >= MAX_AWAITING {
            return Some(span);
        }
        self.len += 1;
        self.by_tuple.entry(tuple).or_default().push_back(HeldCall {
            tgid,
            span,
            since_ns: now_ns,
        });
        None
    }

    /// The oldest span waiting for a client request on `tuple`.
    pub fn claim(&mut self, tuple: Tuple) -> Option<HeldCall> {
        let queue = self.by_tuple.get_mut(&tuple)?;
        let found = queue.pop_front();
        if queue.is_empty() {
            self.by_tuple.remove(&tuple);
        }
        self.len -= usize::from(found.is_some());
        found
    }

    /// Spans that waited longer than `wait_ns` at `now_ns`, into `released`.
    pub fn release_expired(&mut self, now_ns: u64, wait_ns: u64, released: &mut Vec<HeldCall>) {
        let before = released.len();
        self.by_tuple.retain(|_, queue| {
            while queue
                .front()
                .is_some_and(|a| now_ns.saturating_sub(a.since_ns) > wait_ns)
                && let Some(a) = queue.pop_front()
            {
                released.push(a);
            }
            !queue.is_empty()
        });
        self.len -= released.len() - before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::test_support::{SpanExt, span as test_span};
    use crate::spans::model::{SpanId, TraceId};

    fn span(name: &str) -> Span {
        test_span(TraceId::random(), SpanId::random(), None, "server").named(name)
    }

    #[test]
    fn claimed_oldest_first_released_when_late_bounded() {
        let tuple = (
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap(),
        );
        let other = (
            "127.0.0.1:5001".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap(),
        );
        let mut a = AwaitingClient::default();
        assert!(a.hold(tuple, 1, span("first"), 1_000).is_none());
        assert!(a.hold(tuple, 1, span("second"), 2_000).is_none());
        assert!(a.hold(other, 2, span("elsewhere"), 1_000).is_none());
        assert_eq!(a.claim(tuple).map(|w| w.span.name), Some("first".into()));
        let mut released = Vec::new();
        a.release_expired(1_500, 400, &mut released);
        let names: Vec<_> = released.iter().map(|w| w.span.name.clone()).collect();
        assert_eq!(names, ["elsewhere"]);
        assert!(a.claim(other).is_none());
        assert_eq!(a.len, 1);
        for i in 0..MAX_AWAITING - 1 {
            assert!(a.hold(other, 2, span(&i.to_string()), 3_000).is_none());
        }
        assert_eq!(
            a.hold(other, 2, span("no room"), 3_000).map(|s| s.name),
            Some("no room".into())
        );
    }
}
