//! Finished spans to an OTLP `ExportTraceServiceRequest`: one `ResourceSpans` per
//! traced process (resource), each with a single `ScopeSpans` for the "sonde" scope.
//! Pure, so it is tested without any network.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue as ProtoKeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as ProtoSpan, Status as ProtoStatus,
};

use crate::spans::{KeyValue, Resource, Span, Status, Value};

/// The instrumentation scope every Sonde span is reported under.
pub const SCOPE_NAME: &str = "sonde";
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Groups `spans` by resource (first-seen order, span order kept within a group).
/// Resources are the same when they are the same `Arc` or compare equal.
pub fn encode_traces(spans: &[Span]) -> ExportTraceServiceRequest {
    let mut groups: Vec<(&Arc<Resource>, Vec<ProtoSpan>)> = Vec::new();
    for span in spans {
        let idx = groups
            .iter()
            .position(|(r, _)| Arc::ptr_eq(r, &span.resource) || ***r == *span.resource);
        let proto = encode_span(span);
        match idx {
            Some(i) => groups[i].1.push(proto),
            None => groups.push((&span.resource, vec![proto])),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(resource, spans)| ResourceSpans {
                resource: Some(encode_resource(resource)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// The "sonde" instrumentation scope with the agent's version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: SCOPE_VERSION.to_owned(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

pub fn encode_resource(resource: &Resource) -> ProtoResource {
    ProtoResource {
        attributes: encode_attributes(&resource.attributes),
        ..ProtoResource::default()
    }
}

pub fn encode_span(span: &Span) -> ProtoSpan {
    ProtoSpan {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        parent_span_id: span
            .parent_span_id
            .map(|p| p.0.to_vec())
            .unwrap_or_default(),
        trace_state: span.trace_state.clone().unwrap_or_default(),
        name: span.name.clone(),
        kind: span.kind.otlp_value(),
        start_time_unix_nano: span.start_unix_nano,
        end_time_unix_nano: span.end_unix_nano,
        attributes: encode_attributes(&span.attributes),
        status: match &span.status {
            Status::Unset => None,
            Status::Error { message } => Some(ProtoStatus {
                message: message.clone(),
                code: span.status.otlp_code(),
            }),
        },
        ..ProtoSpan::default()
    }
}

pub fn encode_attributes(attributes: &[KeyValue]) -> Vec<ProtoKeyValue> {
    attributes
        .iter()
        .map(|kv| ProtoKeyValue {
            key: kv.key.to_string(),
            value: Some(encode_value(&kv.value)),
            ..ProtoKeyValue::default()
        })
        .collect()
}

pub fn encode_value(value: &Value) -> AnyValue {
    AnyValue {
        value: Some(match value {
            Value::Str(s) => any_value::Value::StringValue(s.to_string()),
            Value::Int(i) => any_value::Value::IntValue(*i),
            Value::Bool(b) => any_value::Value::BoolValue(*b),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{SpanId, SpanKind, TraceId};

    fn resource(service: &str, pid: i64) -> Arc<Resource> {
        Arc::new(Resource {
            service_name: service.to_owned(),
            attributes: vec![
                KeyValue::new("service.name", service.to_owned()),
                KeyValue::new("process.pid", pid),
            ],
        })
    }

    fn span(resource: &Arc<Resource>, n: u8, parent: Option<u8>, status: Status) -> Span {
        Span {
            trace_id: TraceId([n; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            trace_state: None,
            name: format!("GET /{n}"),
            kind: if parent.is_some() {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            start_unix_nano: 1_000 + u64::from(n),
            end_unix_nano: 2_000 + u64::from(n),
            status,
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("sonde.partial", false),
            ],
            resource: Arc::clone(resource),
        }
    }

    #[test]
    fn groups_spans_by_resource_in_first_seen_order() {
        let a = resource("api", 1);
        let b = resource("db", 2);
        // An equal resource in another Arc joins the same group.
        let a2 = resource("api", 1);
        let spans = vec![
            span(&a, 1, None, Status::Unset),
            span(&b, 2, Some(1), Status::Unset),
            span(&a2, 3, None, Status::Unset),
        ];
        let req = encode_traces(&spans);
        assert_eq!(req.resource_spans.len(), 2);
        let names = |rs: &ResourceSpans| -> Vec<String> {
            rs.scope_spans[0]
                .spans
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(&req.resource_spans[0]), ["GET /1", "GET /3"]);
        assert_eq!(names(&req.resource_spans[1]), ["GET /2"]);
        let res = req.resource_spans[1].resource.as_ref().unwrap();
        assert_eq!(res.attributes, encode_attributes(&b.attributes));
        for rs in &req.resource_spans {
            assert_eq!(rs.scope_spans.len(), 1);
            let scope = rs.scope_spans[0].scope.as_ref().unwrap();
            assert_eq!(scope.name, "sonde");
            assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        }
    }

    #[test]
    fn encodes_every_span_field() {
        let r = resource("api", 7);
        let s = span(
            &r,
            9,
            Some(4),
            Status::Error {
                message: "connection reset".into(),
            },
        );
        let p = encode_span(&s);
        assert_eq!(
            p,
            ProtoSpan {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                parent_span_id: vec![4; 8],
                name: "GET /9".into(),
                kind: 3,
                start_time_unix_nano: 1_009,
                end_time_unix_nano: 2_009,
                attributes: vec![
                    ProtoKeyValue {
                        key: "http.request.method".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("GET".into()))
                        }),
                        ..ProtoKeyValue::default()
                    },
                    ProtoKeyValue {
                        key: "http.response.status_code".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::IntValue(200))
                        }),
                        ..ProtoKeyValue::default()
                    },
                    ProtoKeyValue {
                        key: "sonde.partial".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::BoolValue(false))
                        }),
                        ..ProtoKeyValue::default()
                    },
                ],
                status: Some(ProtoStatus {
                    message: "connection reset".into(),
                    code: 2,
                }),
                ..ProtoSpan::default()
            }
        );
        // A root span has no parent bytes and an unset status is omitted.
        let root = encode_span(&span(&r, 1, None, Status::Unset));
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.kind, 2);
        assert_eq!(root.status, None);
    }

    #[test]
    fn empty_input_gives_an_empty_request() {
        assert!(encode_traces(&[]).resource_spans.is_empty());
    }
}
