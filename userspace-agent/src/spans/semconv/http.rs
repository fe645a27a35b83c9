//! An HTTP/1 exchange becomes a span: name, status and semantic-convention attributes
//! (OpenTelemetry HTTP semconv, stable since v1.23). Query values are kept here and
//! redacted by `pipeline::redact` before anything leaves the agent.

use std::sync::Arc;

use crate::abi::InjectStatus;
use crate::capture::{Endpoints, TlsSource};
use crate::protocols::http1::{RequestHead, ResponseHead};
use crate::protocols::parser::{RequestHeadOf, ResponseHeadOf};
use crate::spans::model::{KeyValue, Span, SpanKind, Status, Value};
use crate::spans::pairing::{Exchange, Outcome};
use crate::spans::semconv::Repeated;

/// `POST <anything>/v1/traces`, the OTLP/HTTP trace export (OTLP specification,
/// "OTLP/HTTP Request"); the request-target may be absolute-form via a proxy. A fact
/// about a request that `pipeline::sdk` reads.
pub fn is_otlp_trace_export(request: &RequestHead) -> bool {
    let path = request.target.split(['?', '#']).next().unwrap_or_default();
    request.method == "POST" && path.ends_with("/v1/traces")
}

/// The W3C `tracestate` header of a request (every occurrence, in order).
pub fn tracestate(request: &RequestHead) -> impl Iterator<Item = &str> {
    request
        .headers
        .iter()
        .filter(|(name, _)| *name == "tracestate")
        .map(|(_, value)| value)
}

/// A request-target (RFC 9112 §3.2): origin-form `/p?q`, or absolute-form
/// `http://host:port/p?q` as clients send it to an HTTP proxy.
struct RequestTarget<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path_and_query: &'a str,
}

impl<'a> RequestTarget<'a> {
    fn parse(target: &'a str) -> Self {
        for scheme in ["http", "https"] {
            let Some(rest) = target
                .strip_prefix(scheme)
                .and_then(|r| r.strip_prefix("://"))
            else {
                continue;
            };
            let (authority, path_and_query) = match rest.find(['/', '?']) {
                Some(i) if rest.as_bytes()[i] == b'/' => rest.split_at(i),
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            // Userinfo never leaves the host.
            let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
            return Self {
                scheme: Some(scheme),
                authority: Some(authority),
                path_and_query: if path_and_query.is_empty() || path_and_query.starts_with('?') {
                    "/"
                } else {
                    path_and_query
                },
            };
        }
        Self {
            scheme: None,
            authority: None,
            path_and_query: target,
        }
    }
}

/// Splits `host[:port]` (with `[v6]` brackets) from a Host header.
fn split_host(host: &str) -> (&str, Option<u16>) {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[')
        && let Some((h, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (h, port);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

/// An IPv6 literal in a URL authority needs brackets (RFC 3986 §3.2.2).
fn bracket_v6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Builds the span of a finished exchange.
///
/// The exchange is an HTTP/1 one (`semconv::exchange_span` dispatches by its heads).
pub fn build_span(
    ex: Exchange,
    kind: SpanKind,
    ends: &Endpoints,
    repeated: &mut Repeated,
    tls: Option<TlsSource>,
    outcome: Outcome,
) -> Span {
    // The connection's scheme: plaintext from a TLS library was HTTPS on the wire.
    let conn_scheme = if tls.is_some() { "https" } else { "http" };
    let Exchange {
        stream: _,
        ident,
        trace_state,
        resource,
        request: RequestHeadOf::Http1(request),
        start_ns,
        request_body_bytes,
        response,
        response_body_bytes,
        timed_out: _,
        inject,
    } = ex;
    let response: Option<ResponseHead> = response.map(|ResponseHeadOf::Http1(head)| head);

    let target = RequestTarget::parse(&request.target);
    let (path, query) = match target.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.path_and_query, None),
    };
    // Sized up front: format! would grow its buffer once on nearly every span.
    let mut name = String::with_capacity(request.method.len() + 1 + path.len());
    name.push_str(&request.method);
    name.push(' ');
    name.push_str(path);

    let mut attrs = Vec::with_capacity(20);
    attrs.push(KeyValue::new("http.request.method", request.method.clone()));
    // Origin-form without a query (most requests): the target is the path, and is moved
    // into this slot once nothing borrows it any more.
    let path_is_target = path.len() == request.target.len();
    let path_slot = attrs.len();
    attrs.push(KeyValue::new(
        "url.path",
        if path_is_target { "" } else { path }.to_owned(),
    ));
    if let Some(q) = query {
        attrs.push(KeyValue::new("url.query", q.to_owned()));
    }
    attrs.push(KeyValue::new("url.scheme", conn_scheme));
    attrs.push(KeyValue::new("network.protocol.name", "http"));
    attrs.push(KeyValue::new(
        "network.protocol.version",
        request.version.as_str(),
    ));
    attrs.push(KeyValue::new("network.transport", "tcp"));
    attrs.push(KeyValue::new(
        "network.peer.address",
        Arc::clone(ends.remote_ip()),
    ));
    attrs.push(KeyValue::new(
        "network.peer.port",
        i64::from(ends.remote.port()),
    ));
    let host = request.headers.get("host").map(split_host);
    match kind {
        SpanKind::Server => {
            let (addr, port): (Value, u16) = match host {
                Some((h, p)) => (repeated.host(h).into(), p.unwrap_or(ends.local.port())),
                None => (Arc::clone(ends.local_ip()).into(), ends.local.port()),
            };
            attrs.push(KeyValue::new("server.address", addr));
            attrs.push(KeyValue::new("server.port", i64::from(port)));
            attrs.push(KeyValue::new(
                "client.address",
                Arc::clone(ends.remote_ip()),
            ));
            attrs.push(KeyValue::new("client.port", i64::from(ends.remote.port())));
        }
        SpanKind::Client => {
            // The server is who the URL names: the absolute-form target (requests through
            // an HTTP proxy), else the Host header, else the peer we are connected to.
            let named = target.authority.map(split_host).or(host);
            let scheme = target.scheme.unwrap_or(conn_scheme);
            let default_port = if scheme == "https" { 443 } else { 80 };
            let (addr, port, authority): (Value, u16, String) = match named {
                Some((h, Some(p))) => (h.to_owned().into(), p, format!("{}:{p}", bracket_v6(h))),
                Some((h, None)) if target.authority.is_some() => {
                    (h.to_owned().into(), default_port, bracket_v6(h))
                }
                Some((h, None)) => (h.to_owned().into(), ends.remote.port(), bracket_v6(h)),
                None => {
                    let port = ends.remote.port();
                    let authority = format!("{}:{port}", bracket_v6(ends.remote_ip()));
                    (Arc::clone(ends.remote_ip()).into(), port, authority)
                }
            };
            let q = query.map(|q| format!("?{q}")).unwrap_or_default();
            attrs.push(KeyValue::new(
                "url.full",
                format!("{scheme}://{authority}{path}{q}"),
            ));
            attrs.push(KeyValue::new("server.address", addr));
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if let Some(ua) = request.headers.get("user-agent") {
        attrs.push(KeyValue::new(
            "user_agent.original",
            repeated.user_agent(ua),
        ));
    }
    // A GET without a body has no body size to report; an explicit Content-Length: 0 does.
    let body_declared = request.headers.get("content-length").is_some();
    if let Some(n) = request_body_bytes.filter(|n| *n > 0 || body_declared) {
        attrs.push(KeyValue::new("http.request.body.size", n as i64));
    }
    if let Some(resp) = &response {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(resp.status),
        ));
    }
    if let (Some(n), Outcome::Complete { .. }) = (response_body_bytes, outcome) {
        attrs.push(KeyValue::new("http.response.body.size", n as i64));
    }
    if let Some(parent) = ident.parent {
        attrs.push(KeyValue::new(
            super::PARENT_SOURCE_KEY,
            parent.source.as_str(),
        ));
        if let Some(format) = parent.source.header_format() {
            attrs.push(KeyValue::new("sonde.parent.format", format.as_str()));
        }
    }
    if inject != InjectStatus::None {
        attrs.push(KeyValue::new("sonde.inject", inject.as_str()));
    }

    let (end_ns, status) = match outcome {
        Outcome::Complete { end_ns } => {
            let code = response.as_ref().map_or(0, |r| r.status);
            let failed = match kind {
                SpanKind::Server => code >= 500,
                SpanKind::Client => code >= 400,
            };
            let status = if failed {
                attrs.push(KeyValue::new("error.type", code.to_string()));
                Status::Error {
                    message: format!("HTTP {code}"),
                }
            } else {
                Status::Unset
            };
            (end_ns, status)
        }
        Outcome::Cut {
            end_ns,
            response_started,
        } => {
            let message = if response_started {
                "connection closed before the full response"
            } else {
                "connection closed before a response"
            };
            attrs.push(KeyValue::new("error.type", "connection_closed"));
            (
                end_ns,
                Status::Error {
                    message: message.to_owned(),
                },
            )
        }
    };

    if path_is_target && let Some(slot) = attrs.get_mut(path_slot) {
        slot.value = request.target.into();
    }

    Span {
        trace_id: ident.trace_id,
        span_id: ident.span_id,
        parent_span_id: ident.parent.map(|p| p.span_id),
        trace_state,
        name,
        kind,
        start_unix_nano: start_ns,
        end_unix_nano: end_ns.max(start_ns),
        status,
        attributes: attrs,
        resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_targets() {
        let t = RequestTarget::parse("http://user:pw@example.com:8080/a/b?x=1");
        assert_eq!(
            (t.scheme, t.authority, t.path_and_query),
            (Some("http"), Some("example.com:8080"), "/a/b?x=1")
        );
        let t = RequestTarget::parse("https://example.com");
        assert_eq!(
            (t.scheme, t.authority, t.path_and_query),
            (Some("https"), Some("example.com"), "/")
        );
        let t = RequestTarget::parse("/plain?q");
        assert_eq!(
            (t.scheme, t.authority, t.path_and_query),
            (None, None, "/plain?q")
        );
        let t = RequestTarget::parse("*");
        assert_eq!(t.path_and_query, "*");
    }

    #[test]
    fn host_header_forms() {
        assert_eq!(split_host("example.com:8080"), ("example.com", Some(8080)));
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_host("[::1]"), ("::1", None));
        assert_eq!(split_host("host:notaport"), ("host:notaport", None));
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_urls() {
        assert_eq!(bracket_v6("::1"), "[::1]");
        assert_eq!(bracket_v6("example.com"), "example.com");
    }
}
