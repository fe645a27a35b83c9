//! Naming and attributes per protocol, after the OpenTelemetry semantic conventions: a
//! finished exchange or call becomes a [`Span`](crate::spans::Span). One file per
//! protocol family; the span builder picks by what the parser reported.

pub mod db;
pub mod http;

use super::model::{Span, SpanKind};
use super::pairing::{Exchange, Outcome};
use crate::capture::Endpoints;
use crate::protocols::parser::{RequestHeadOf, ResponseHeadOf};

/// The span of a finished exchange, by its protocol's conventions.
pub fn exchange_span(ex: Exchange, kind: SpanKind, ends: &Endpoints, outcome: Outcome) -> Span {
    match ex.request {
        RequestHeadOf::Http1(_) => {
            let ex = ex.map(
                |RequestHeadOf::Http1(head)| head,
                |ResponseHeadOf::Http1(head)| head,
            );
            http::build_span(ex, kind, ends, outcome)
        }
    }
}
