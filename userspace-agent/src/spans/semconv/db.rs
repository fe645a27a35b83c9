//! A database or cache call becomes a span: named by its query summary, with the
//! OpenTelemetry database semantic-convention attributes (`db.*`, stable since v1.33).

use std::sync::Arc;

use crate::capture::Endpoints;
use crate::protocols::db::{DbCall, DbSystem};
use crate::spans::identity::SpanIdentity;
use crate::spans::model::{KeyValue, Resource, Span, SpanKind, Status};

/// Builds the span of a finished call. `kind` is the traced process's side: CLIENT for
/// the application that sent the query, SERVER for the database that answered it.
pub fn build_span(
    call: DbCall,
    system: DbSystem,
    ident: SpanIdentity,
    kind: SpanKind,
    ends: &Endpoints,
    resource: Arc<Resource>,
) -> Span {
    let DbCall {
        start_ns,
        end_ns,
        operation,
        collection,
        summary,
        query_text,
        namespace,
        status_code,
        error_type,
        error_message,
        extra,
    } = call;

    let name = if !summary.is_empty() {
        summary.clone()
    } else {
        operation
            .clone()
            .unwrap_or_else(|| system.as_str().to_owned())
    };
    let mut attrs = Vec::with_capacity(16 + extra.len());
    // A parser that tells MariaDB from MySQL (from the handshake) says so in `extra`.
    if !extra.iter().any(|(k, _)| *k == "db.system.name") {
        attrs.push(KeyValue::new("db.system.name", system.as_str()));
    }
    let optional = [
        ("db.namespace", namespace),
        ("db.operation.name", operation),
        ("db.collection.name", collection),
        // `--db-query-text off` keeps no text: an empty one is no attribute.
        ("db.query.text", query_text.filter(|q| !q.is_empty())),
        ("db.response.status_code", status_code),
        ("error.type", error_type.clone()),
    ];
    if !summary.is_empty() {
        attrs.push(KeyValue::new("db.query.summary", summary));
    }
    for (key, value) in optional {
        if let Some(v) = value {
            attrs.push(KeyValue::new(key, v));
        }
    }
    attrs.extend(extra.into_iter().map(|(k, v)| KeyValue::new(k, v)));

    let (server, client) = match kind {
        SpanKind::Client => (ends.remote, None),
        SpanKind::Server => (ends.local, Some(ends.remote)),
    };
    let (server_ip, peer_ip) = match kind {
        SpanKind::Client => (ends.remote_ip(), ends.remote_ip()),
        SpanKind::Server => (ends.local_ip(), ends.remote_ip()),
    };
    attrs.push(KeyValue::new("server.address", Arc::clone(server_ip)));
    attrs.push(KeyValue::new("server.port", i64::from(server.port())));
    if let Some(client) = client {
        attrs.push(KeyValue::new("client.address", Arc::clone(peer_ip)));
        attrs.push(KeyValue::new("client.port", i64::from(client.port())));
    }
    attrs.push(KeyValue::new("network.peer.address", Arc::clone(peer_ip)));
    attrs.push(KeyValue::new(
        "network.peer.port",
        i64::from(ends.remote.port()),
    ));
    attrs.push(KeyValue::new("network.transport", "tcp"));
    if let Some(parent) = ident.parent {
        attrs.push(KeyValue::new(
            super::PARENT_SOURCE_KEY,
            parent.source.as_str(),
        ));
    }

    let status = match error_type {
        Some(error_type) => Status::Error {
            message: error_message.unwrap_or(error_type),
        },
        None => Status::Unset,
    };
    Span {
        trace_id: ident.trace_id,
        span_id: ident.span_id,
        parent_span_id: ident.parent.map(|p| p.span_id),
        name,
        kind,
        start_unix_nano: start_ns,
        end_unix_nano: end_ns.max(start_ns),
        status,
        attributes: attrs,
        resource,
        trace_state: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::identity::{ParentLink, ParentSource};
    use crate::spans::model::{SpanId, TraceId};
    use crate::spans::semconv::adopt;

    fn ends() -> Endpoints {
        Endpoints::new(
            "127.0.0.1:40000".parse().expect("addr"),
            "127.0.0.1:5432".parse().expect("addr"),
        )
    }

    fn resource() -> Arc<Resource> {
        Arc::new(Resource {
            service_name: "app".into(),
            attributes: Vec::new(),
        })
    }

    #[test]
    fn a_failed_query_is_an_error_span_named_by_its_summary() {
        let call = DbCall {
            start_ns: 10,
            end_ns: 30,
            operation: Some("SELECT".into()),
            collection: Some("nosuch".into()),
            summary: "SELECT nosuch".into(),
            query_text: Some("SELECT * FROM nosuch WHERE id = ?".into()),
            status_code: Some("42P01".into()),
            error_type: Some("42P01".into()),
            error_message: Some("relation \"nosuch\" does not exist".into()),
            ..DbCall::default()
        };
        let ident = SpanIdentity::new_root();
        let s = build_span(
            call,
            DbSystem::Postgresql,
            ident,
            SpanKind::Client,
            &ends(),
            resource(),
        );
        assert_eq!(s.name, "SELECT nosuch");
        assert_eq!((s.start_unix_nano, s.end_unix_nano), (10, 30));
        assert_eq!(
            s.status,
            Status::Error {
                message: "relation \"nosuch\" does not exist".into()
            }
        );
        let get = |k| s.attr(k).map(ToString::to_string);
        assert_eq!(get("db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(get("db.response.status_code").as_deref(), Some("42P01"));
        assert_eq!(get("server.port").as_deref(), Some("5432"));
        assert_eq!(get("server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(get("client.port"), None);
        assert_eq!(get("db.namespace"), None);
    }

    #[test]
    fn a_server_span_names_its_own_port_and_the_client() {
        let call = DbCall {
            summary: "GET".into(),
            operation: Some("GET".into()),
            ..DbCall::default()
        };
        let server_ends = Endpoints::new(
            "127.0.0.1:6379".parse().expect("addr"),
            "127.0.0.1:40000".parse().expect("addr"),
        );
        let mut s = build_span(
            call,
            DbSystem::Redis,
            SpanIdentity::new_root(),
            SpanKind::Server,
            &server_ends,
            resource(),
        );
        let get = |s: &Span, k| s.attr(k).map(ToString::to_string);
        assert_eq!(get(&s, "server.port").as_deref(), Some("6379"));
        assert_eq!(get(&s, "client.port").as_deref(), Some("40000"));
        assert_eq!(s.status, Status::Unset);
        let (trace, parent) = (TraceId::random(), SpanId::random());
        let link = ParentLink {
            span_id: parent,
            source: ParentSource::LocalPeer,
        };
        adopt(&mut s, trace, link);
        assert_eq!((s.trace_id, s.parent_span_id), (trace, Some(parent)));
        assert_eq!(
            get(&s, "sonde.parent.source").as_deref(),
            Some("local_peer")
        );
        // A span that has a parent keeps it.
        adopt(&mut s, TraceId::random(), link);
        assert_eq!(s.trace_id, trace);
    }
}
