//! The kernel's trace decisions for one connection's requests, kept until the requests
//! they belong to are known.
//!
//! How the probes see a protocol decides which decisions count ([`KernelView`]):
//! - `Requests` (HTTP/1): the probes recognise a request as its first bytes cross the
//!   socket and choose its span's IDs then (the IDs they may also inject). The decision
//!   rides on the segment that starts the request and names the request's own span; the
//!   next request the parser reports takes it, once.
//! - `InSpan` (database protocols): the probes only mark bytes a thread sends while it
//!   serves a request, naming that request's span. A call, reported once complete, is
//!   the child of the mark on the segment where it started; calls sent in one segment
//!   (a pipeline) share it.

use std::collections::VecDeque;

use super::identity::SpanIdentity;
use super::model::SpanId;
use super::role::Role;
use crate::abi::{CtxRole, InjectStatus};
use crate::capture::KernelMark;
use crate::protocols::registry::KernelView;

#[derive(Debug)]
pub struct KernelMarks {
    view: KernelView,
    /// `Requests`: the decision for the request starting in the latest segment.
    own: Option<SpanIdentity>,
    /// What the sk_msg program did to that request (client side).
    inject: InjectStatus,
    /// `InSpan`: parents by segment timestamp, oldest first.
    parents: VecDeque<(u64, SpanIdentity)>,
    max_parents: usize,
}

impl KernelMarks {
    pub fn new(view: KernelView, max_parents: usize) -> Self {
        Self {
            view,
            own: None,
            inject: InjectStatus::None,
            parents: VecDeque::new(),
            max_parents,
        }
    }

    /// The mark on a segment, before the segment is parsed. `request_side`: the segment
    /// carries requests for the process's `role`.
    pub fn observe(&mut self, role: Role, request_side: bool, ts_ns: u64, mark: &KernelMark) {
        match self.view {
            KernelView::Requests => {
                let expected = match role {
                    Role::Server => CtxRole::ServerRequest,
                    Role::Client => CtxRole::ClientRequest,
                };
                if mark.role == expected {
                    self.own =
                        SpanIdentity::from_kernel(&mark.ctx, mark.parent_source, mark.format);
                    self.inject = mark.inject;
                }
            }
            KernelView::InSpan => {
                if role == Role::Client
                    && request_side
                    && mark.role == CtxRole::InSpan
                    && let Some(ident) =
                        SpanIdentity::child_of_kernel(&mark.ctx, mark.parent_source)
                {
                    if self.parents.len() >= self.max_parents {
                        self.parents.pop_front();
                    }
                    self.parents.push_back((ts_ns, ident));
                }
            }
        }
    }

    /// `Requests`: the decision for the request the parser just reported, and what
    /// injection did to it (taken: the next request gets its own).
    pub fn for_request(&mut self) -> (Option<SpanIdentity>, InjectStatus) {
        (
            self.own.take(),
            std::mem::replace(&mut self.inject, InjectStatus::None),
        )
    }

    /// `InSpan`: the identity of a call that started at `start_ns`, child of the mark on
    /// its first segment. Marks of older segments are no longer needed.
    pub fn for_call(&mut self, start_ns: u64) -> Option<SpanIdentity> {
        while self.parents.front().is_some_and(|(ts, _)| *ts < start_ns) {
            self.parents.pop_front();
        }
        match self.parents.front() {
            Some((ts, ident)) if *ts == start_ns => Some(SpanIdentity {
                span_id: SpanId::random(),
                ..*ident
            }),
            _ => None,
        }
    }

    /// The stream lost sync: the decision no longer belongs to a request it will report.
    pub fn forget(&mut self) {
        self.own = None;
    }
}
