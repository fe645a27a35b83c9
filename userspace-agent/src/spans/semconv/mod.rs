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
    let Exchange {
        stream: _,
        ident,
        trace_state,
        resource,
        request,
        start_ns,
        request_body_bytes,
        response,
        response_body_bytes,
        timed_out: _,
        inject,
    } = ex;
    match request {
        RequestHeadOf::Http1(request) => http::build_span(
            http::HttpExchange {
                ident,
                trace_state,
                resource,
                request,
                start_ns,
                request_body_bytes,
                response: response.map(|r| match r {
                    ResponseHeadOf::Http1(head) => head,
                }),
                response_body_bytes,
                inject,
            },
            kind,
            ends,
            outcome,
        ),
    }
}
