//! Processes that trace themselves with an OpenTelemetry SDK. Sonde's spans for such a
//! process would duplicate the SDK's (same requests, other span IDs), so once one is
//! recognised its spans are dropped here, before the sinks (`spans_suppressed_sdk`).
//!
//! A process is recognised by what it sends:
//! - an OTLP trace export: `POST .../v1/traces` (OTLP/HTTP). gRPC export is HTTP/2,
//!   which Sonde does not parse yet, so it is not seen;
//! - an outgoing request carrying a context header the process made itself, from a
//!   process that serves requests (an instrumented service): the header's span ID (the
//!   kernel's parent for the CLIENT span) is not one the process received on a request
//!   it served. A proxy that passes the incoming header on unchanged forwards a span ID
//!   it received, so it is not mistaken for an SDK; a client-only program with a header
//!   of its own (`curl -H traceparent:...`) keeps its CLIENT span, which follows that
//!   header.
//!
//! Spans finished before the process was recognised are not recalled.

use std::fmt;

use super::{Stage, Verdict};
use crate::metrics::Counters;
use crate::spans::trace_join::TwoGen;
use crate::spans::{ParentSource, RequestSeen, Span, SpanId, SpanKind};

/// Recognised processes kept at most (entries leave when their process exits).
const MAX_RECOGNISED: usize = 16_384;
/// Received span IDs remembered per generation (a request's header is needed only until
/// the calls made for that request are written).
const RECEIVED_IDS: usize = 32_768;

/// Why a process was taken for an SDK-instrumented one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// It sent an OTLP trace export.
    ExportsTraces,
    /// It sent a context header naming a span it did not receive.
    OwnContextHeader,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Evidence::ExportsTraces => "it exports OTLP traces",
            Evidence::OwnContextHeader => "it sends trace context headers of its own",
        })
    }
}

/// Which traced processes are SDK-instrumented, learnt from their requests.
#[derive(Debug)]
pub struct SdkProcesses {
    /// foldhash: pids are not chosen by peers, and this is read for every span.
    recognised: foldhash::HashSet<u32>,
    /// (tgid, span ID) of context headers on requests each process served.
    received: TwoGen<(u32, SpanId), ()>,
    /// Processes seen serving requests.
    servers: TwoGen<u32, ()>,
}

impl Default for SdkProcesses {
    fn default() -> Self {
        Self {
            recognised: foldhash::HashSet::default(),
            received: TwoGen::new(RECEIVED_IDS),
            servers: TwoGen::new(MAX_RECOGNISED),
        }
    }
}

impl SdkProcesses {
    /// A request whose head is complete, with the identity its span will have. Returns
    /// the evidence when this request is the one that gives the process away (once per
    /// process).
    pub fn on_request(&mut self, seen: &RequestSeen) -> Option<Evidence> {
        let RequestSeen {
            tgid,
            kind,
            ident,
            otlp_trace_export,
        } = *seen;
        let header_parent = ident
            .parent
            .filter(|p| matches!(p.source, ParentSource::Header(_)))
            .map(|p| p.span_id);
        let evidence = match (kind, header_parent) {
            (SpanKind::Server, parent) => {
                // Refreshed on every request, so a busy server never ages out.
                self.servers.entry(tgid);
                if let Some(span_id) = parent {
                    self.received.insert((tgid, span_id), ());
                }
                None
            }
            (SpanKind::Client, _) if otlp_trace_export => Some(Evidence::ExportsTraces),
            (SpanKind::Client, Some(span_id))
                if self.servers.get(&tgid).is_some()
                    && self.received.get(&(tgid, span_id)).is_none() =>
            {
                Some(Evidence::OwnContextHeader)
            }
            (SpanKind::Client, _) => None,
        }?;
        if self.recognised.contains(&tgid) {
            return None;
        }
        if self.recognised.len() >= MAX_RECOGNISED {
            log::warn!("pid {tgid} looks SDK-instrumented, but {MAX_RECOGNISED} already are");
            return None;
        }
        self.recognised.insert(tgid);
        Some(evidence)
    }

    /// Whether this process's spans are left to its SDK.
    pub fn is_recognised(&self, tgid: u32) -> bool {
        self.recognised.contains(&tgid)
    }

    /// The process exited: its pid may be reused by something else.
    pub fn exited(&mut self, tgid: u32) {
        self.recognised.remove(&tgid);
        self.servers.remove(&tgid);
    }
}

/// The pipeline stage: learns from requests, drops the spans of recognised processes.
pub struct SdkSuppression {
    processes: SdkProcesses,
    counters: std::sync::Arc<Counters>,
}

impl SdkSuppression {
    pub fn new(counters: std::sync::Arc<Counters>) -> Self {
        Self {
            processes: SdkProcesses::default(),
            counters,
        }
    }
}

impl Stage for SdkSuppression {
    fn request(&mut self, seen: &RequestSeen) {
        if let Some(evidence) = self.processes.on_request(seen) {
            log::warn!(
                "pid {}: {evidence}, so an OpenTelemetry SDK traces it; its spans are left to \
                 that SDK from now on (counter spans_suppressed_sdk)",
                seen.tgid
            );
        }
    }

    fn span(&mut self, tgid: u32, _span: &mut Span) -> Verdict {
        if self.processes.is_recognised(tgid) {
            Counters::inc(&self.counters.spans_suppressed_sdk);
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }

    fn process_exited(&mut self, tgid: u32) {
        self.processes.exited(tgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::CtxFormat;
    use crate::protocols::http1::{Http1Event, RequestHead, RequestStream, Segment};
    use crate::spans::semconv::http::is_otlp_trace_export;
    use crate::spans::{ParentLink, SpanIdentity, TraceId};

    const CURL_IN: &[u8] = include_bytes!("testdata/curl_traceparent_in.http");
    const SDK_OUT: &[u8] = include_bytes!("testdata/sdk_urllib_out.http");
    const SDK_EXPORT: &[u8] = include_bytes!("testdata/sdk_otlp_export.http");
    const NGINX_FORWARD: &[u8] = include_bytes!("testdata/nginx_forward_out.http");

    const APP: u32 = 100;

    fn head(bytes: &[u8]) -> RequestHead {
        let mut stream = RequestStream::new();
        let mut events = Vec::new();
        stream.push(
            &Segment {
                ts_ns: 1,
                len: bytes.len() as u64,
                head: bytes,
                tail: &[],
            },
            &mut events,
        );
        events
            .into_iter()
            .find_map(|e| match e {
                Http1Event::RequestStart { head, .. } => Some(head),
                _ => None,
            })
            .expect("a request head")
    }

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    /// The identity the kernel gives a request with a valid `traceparent`: that trace,
    /// parented by that span (ctx_parse.h; host-tested in propagation).
    fn from_traceparent(head: &RequestHead) -> SpanIdentity {
        let value = head
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
            .map(|(_, v)| v.to_owned())
            .expect("a traceparent");
        let parts: Vec<&str> = value.split('-').collect();
        SpanIdentity {
            trace_id: TraceId(hex(parts[1])),
            span_id: SpanId::random(),
            parent: Some(ParentLink {
                span_id: SpanId(hex(parts[2])),
                source: ParentSource::Header(CtxFormat::W3c),
            }),
        }
    }

    /// What the span builder reports of a request: its facts, the head itself stays there.
    fn seen(tgid: u32, kind: SpanKind, ident: &SpanIdentity, head: &RequestHead) -> RequestSeen {
        RequestSeen {
            tgid,
            kind,
            ident: *ident,
            otlp_trace_export: is_otlp_trace_export(head),
        }
    }

    fn no_header() -> SpanIdentity {
        SpanIdentity::new_root()
    }

    #[test]
    fn sdk_client_header_continuing_the_served_trace_is_recognised() {
        let mut sdk = SdkProcesses::default();
        let served = head(CURL_IN);
        let sent = head(SDK_OUT);
        let served_ident = from_traceparent(&served);
        let sent_ident = from_traceparent(&sent);
        // Same trace, new span: the SDK's CLIENT span.
        assert_eq!(served_ident.trace_id, sent_ident.trace_id);
        assert_eq!(
            sdk.on_request(&seen(APP, SpanKind::Server, &served_ident, &served)),
            None
        );
        assert!(!sdk.is_recognised(APP));
        assert_eq!(
            sdk.on_request(&seen(APP, SpanKind::Client, &sent_ident, &sent)),
            Some(Evidence::OwnContextHeader)
        );
        assert!(sdk.is_recognised(APP));
        // Reported once.
        assert_eq!(
            sdk.on_request(&seen(APP, SpanKind::Client, &sent_ident, &sent)),
            None
        );
        assert!(sdk.is_recognised(APP));
    }

    #[test]
    fn sdk_root_trace_is_recognised_without_an_incoming_header() {
        let mut sdk = SdkProcesses::default();
        let served = head(b"GET /call HTTP/1.1\r\nHost: a\r\n\r\n");
        sdk.on_request(&seen(APP, SpanKind::Server, &no_header(), &served));
        let sent = head(SDK_OUT);
        assert_eq!(
            sdk.on_request(&seen(
                APP,
                SpanKind::Client,
                &from_traceparent(&sent),
                &sent
            )),
            Some(Evidence::OwnContextHeader)
        );
    }

    #[test]
    fn proxy_forwarding_the_received_header_is_not_recognised() {
        let mut sdk = SdkProcesses::default();
        let served = head(CURL_IN);
        let forwarded = head(NGINX_FORWARD);
        sdk.on_request(&seen(
            APP,
            SpanKind::Server,
            &from_traceparent(&served),
            &served,
        ));
        assert_eq!(
            sdk.on_request(&seen(
                APP,
                SpanKind::Client,
                &from_traceparent(&forwarded),
                &forwarded
            )),
            None
        );
        assert!(!sdk.is_recognised(APP));
    }

    #[test]
    fn a_header_received_by_another_process_does_not_count_as_forwarded() {
        let mut sdk = SdkProcesses::default();
        let served = head(CURL_IN);
        sdk.on_request(&seen(
            APP + 1,
            SpanKind::Server,
            &from_traceparent(&served),
            &served,
        ));
        let other = head(b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n");
        sdk.on_request(&seen(APP, SpanKind::Server, &no_header(), &other));
        let forwarded = head(NGINX_FORWARD);
        assert_eq!(
            sdk.on_request(&seen(
                APP,
                SpanKind::Client,
                &from_traceparent(&forwarded),
                &forwarded
            )),
            Some(Evidence::OwnContextHeader)
        );
        assert!(!sdk.is_recognised(APP + 1));
    }

    /// curl sending a `traceparent` it was given serves nothing: not an SDK.
    #[test]
    fn a_client_only_program_with_its_own_header_is_not_recognised() {
        let mut sdk = SdkProcesses::default();
        let sent = head(CURL_IN);
        assert_eq!(
            sdk.on_request(&seen(
                APP,
                SpanKind::Client,
                &from_traceparent(&sent),
                &sent
            )),
            None
        );
        assert!(!sdk.is_recognised(APP));
    }

    #[test]
    fn otlp_http_export_is_recognised() {
        let mut sdk = SdkProcesses::default();
        let export = head(SDK_EXPORT);
        assert_eq!(
            sdk.on_request(&seen(APP, SpanKind::Client, &no_header(), &export)),
            Some(Evidence::ExportsTraces)
        );
        assert!(sdk.is_recognised(APP));
        sdk.exited(APP);
        assert!(!sdk.is_recognised(APP));
    }

    #[test]
    fn other_requests_are_not_evidence() {
        let mut sdk = SdkProcesses::default();
        for req in [
            &b"GET /v1/traces HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"POST /v1/traces/extra HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"POST /v1/metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        ] {
            let h = head(req);
            assert_eq!(
                sdk.on_request(&seen(APP, SpanKind::Client, &no_header(), &h)),
                None
            );
        }
        // A server receiving exports (a collector) is not exporting.
        let export = head(SDK_EXPORT);
        assert_eq!(
            sdk.on_request(&seen(APP, SpanKind::Server, &no_header(), &export)),
            None
        );
        assert!(!sdk.is_recognised(APP));
    }

    #[test]
    fn absolute_form_export_through_a_proxy_is_recognised() {
        let mut sdk = SdkProcesses::default();
        let h = head(
            b"POST http://collector:4318/v1/traces?x=1 HTTP/1.1\r\nHost: collector\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            sdk.on_request(&seen(APP, SpanKind::Client, &no_header(), &h)),
            Some(Evidence::ExportsTraces)
        );
    }
}
