//! Requests paired with their responses, whatever the protocol: per stream, in order.
//!
//! A protocol without streams (HTTP/1 with pipelining) has one, and its responses come
//! in request order; a multiplexed one (HTTP/2) pairs within each stream. A request
//! that times out keeps its place (marked, counted) until its response arrives, so a
//! late response never pairs with the next request; when too many wait on one
//! connection, the whole connection's pairing starts over rather than drifting.

use std::collections::VecDeque;
use std::sync::Arc;

use super::identity::SpanIdentity;
use super::model::Resource;
use crate::abi::InjectStatus;
use crate::metrics::Counters;
use crate::protocols::parser::{Reply, RequestHeadOf, ResponseHeadOf, StreamId};

/// A request and what has been seen of its response.
#[derive(Debug)]
pub struct Exchange {
    pub stream: StreamId,
    pub ident: SpanIdentity,
    /// W3C `tracestate` that came with the header the parent was taken from.
    pub trace_state: Option<String>,
    pub resource: Arc<Resource>,
    pub request: RequestHeadOf,
    /// First request byte (server: read; client: written), Unix ns.
    pub start_ns: u64,
    pub request_body_bytes: Option<u64>,
    pub response: Option<ResponseHeadOf>,
    pub response_body_bytes: Option<u64>,
    /// Counted as timed out: still waits for its response, which must not pair with
    /// the next request, but it makes no span.
    pub timed_out: bool,
    /// Client side: what the sk_msg program did to the request's bytes.
    pub inject: InjectStatus,
}

/// How an exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The full response was seen; end is its last byte.
    Complete { end_ns: u64 },
    /// The connection closed or reset before a full response.
    Cut { end_ns: u64, response_started: bool },
}

/// The exchanges in flight on one connection, oldest first.
#[derive(Debug, Default)]
pub struct Pairing {
    pending: VecDeque<Exchange>,
}

impl Pairing {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// A new request. Beyond `max_pending` waiting, every exchange in flight is dropped
    /// (counted) and the parser must restart pairing: dropping one would pair every later
    /// response with the wrong request.
    pub fn request(&mut self, ex: Exchange, max_pending: usize, counters: &Counters) -> Reply {
        let mut reply = Reply::Continue;
        if self.pending.len() >= max_pending {
            Counters::add(&counters.pending_dropped, self.pending.len() as u64);
            self.pending.clear();
            reply = Reply::RestartPairing;
        }
        self.pending.push_back(ex);
        reply
    }

    /// A response started: it answers the oldest request of its stream without one.
    pub fn response(&mut self, stream: StreamId, head: ResponseHeadOf, counters: &Counters) {
        match self
            .pending
            .iter_mut()
            .find(|ex| ex.stream == stream && ex.response.is_none())
        {
            Some(ex) => ex.response = Some(head),
            None => Counters::inc(&counters.unpaired_responses),
        }
    }

    /// The newest request of the stream ended its body.
    pub fn request_end(&mut self, stream: StreamId, body_bytes: u64) {
        if let Some(ex) = self.pending.iter_mut().rev().find(|ex| ex.stream == stream) {
            ex.request_body_bytes = Some(body_bytes);
        }
    }

    /// A response ended: the oldest exchange of its stream, if its response had started.
    pub fn response_end(&mut self, stream: StreamId, body_bytes: u64) -> Option<Exchange> {
        let i = self.pending.iter().position(|ex| ex.stream == stream)?;
        // Its response has not started: this end belongs to no request of ours.
        self.pending[i].response.as_ref()?;
        let mut ex = self.pending.remove(i)?;
        ex.response_body_bytes = Some(body_bytes);
        Some(ex)
    }

    /// The oldest exchange has its response under way (its end may still be folded).
    pub fn response_under_way(&self) -> bool {
        self.pending.front().is_some_and(|ex| ex.response.is_some())
    }

    /// Marks requests older than `timeout_ns` at `now_ns` as timed out (counted once):
    /// true while some request still waits in time.
    pub fn time_out(&mut self, now_ns: u64, timeout_ns: u64, counters: &Counters) -> bool {
        let mut waiting = false;
        for ex in self.pending.iter_mut().filter(|ex| !ex.timed_out) {
            if now_ns.saturating_sub(ex.start_ns) > timeout_ns {
                ex.timed_out = true;
                Counters::inc(&counters.requests_timed_out);
            } else {
                waiting = true;
            }
        }
        waiting
    }

    /// Every exchange still in flight, oldest first (the connection is gone).
    pub fn drain(&mut self) -> impl Iterator<Item = Exchange> + '_ {
        self.pending.drain(..)
    }

    /// The agent stops: requests still in flight are counted as timed out, not guessed.
    pub fn count_unfinished(&self, counters: &Counters) {
        let n = self.pending.iter().filter(|ex| !ex.timed_out).count();
        Counters::add(&counters.requests_timed_out, n as u64);
    }
}
