//! One span in the OTLP JSON encoding (the protobuf JSON mapping with OTLP's
//! deviations), kept apart from any sink so the JSON-lines printer and a later
//! OTLP/HTTP exporter emit identical field names and value encodings.
//!
//! Encoding rules, and why:
//! - `traceId`/`spanId`/`parentSpanId` are lowercase hex, not base64: OTLP JSON
//!   overrides the protobuf mapping for IDs.
//! - `traceState` (W3C `tracestate`) is omitted when there is none.
//! - `parentSpanId` is omitted for root spans. Protobuf JSON omits empty `bytes`
//!   fields, and a missing field reads unambiguously as "no parent" for `jq` users.
//! - `startTimeUnixNano`, `endTimeUnixNano` and `intValue` are strings: protobuf JSON
//!   encodes 64-bit integers as strings so JavaScript consumers do not lose precision.
//! - `kind` and `status.code` are the integer enum values (OTLP receivers accept them).
//! - `status` is `{}` when unset, since proto3 JSON omits default values.
//!
//! Each span carries its own `resource`, which a real `ExportTraceServiceRequest`
//! would group under `resourceSpans`; one self-contained object per line is easier to
//! grep and pipe.

use serde::Serialize;

use crate::spans::{KeyValue, Resource, Span, Status, Value};

/// A span ready for `serde_json`; borrows strings from the [`Span`] it encodes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtlpSpan<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_state: Option<&'a str>,
    name: &'a str,
    kind: i32,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    status: OtlpStatus<'a>,
    attributes: Vec<OtlpKeyValue<'a>>,
    resource: OtlpResource<'a>,
}

/// OTLP `Status`: both fields omitted when unset.
#[derive(Debug, Serialize)]
pub struct OtlpStatus<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// OTLP `KeyValue`.
#[derive(Debug, Serialize)]
pub struct OtlpKeyValue<'a> {
    key: &'a str,
    value: OtlpAnyValue<'a>,
}

/// OTLP `AnyValue`: serde's externally tagged enum gives exactly `{"stringValue": ..}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OtlpAnyValue<'a> {
    StringValue(&'a str),
    /// A string because protobuf JSON encodes int64 as a string.
    IntValue(String),
    BoolValue(bool),
}

/// OTLP `Resource`.
#[derive(Debug, Serialize)]
pub struct OtlpResource<'a> {
    attributes: Vec<OtlpKeyValue<'a>>,
}

impl<'a> From<&'a Span> for OtlpSpan<'a> {
    fn from(span: &'a Span) -> Self {
        Self {
            trace_id: span.trace_id.to_string(),
            span_id: span.span_id.to_string(),
            parent_span_id: span.parent_span_id.map(|id| id.to_string()),
            trace_state: span.trace_state.as_deref(),
            name: &span.name,
            kind: span.kind.otlp_value(),
            start_time_unix_nano: span.start_unix_nano.to_string(),
            end_time_unix_nano: span.end_unix_nano.to_string(),
            status: OtlpStatus::from(&span.status),
            attributes: encode_attributes(&span.attributes),
            resource: OtlpResource::from(span.resource.as_ref()),
        }
    }
}

impl<'a> From<&'a Status> for OtlpStatus<'a> {
    fn from(status: &'a Status) -> Self {
        match status {
            Status::Unset => Self {
                code: None,
                message: None,
            },
            Status::Error { message } => Self {
                code: Some(status.otlp_code()),
                message: (!message.is_empty()).then_some(message.as_str()),
            },
        }
    }
}

impl<'a> From<&'a Resource> for OtlpResource<'a> {
    fn from(resource: &'a Resource) -> Self {
        Self {
            attributes: encode_attributes(&resource.attributes),
        }
    }
}

impl<'a> From<&'a Value> for OtlpAnyValue<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Str(s) => Self::StringValue(s),
            Value::Int(i) => Self::IntValue(i.to_string()),
            Value::Bool(b) => Self::BoolValue(*b),
        }
    }
}

fn encode_attributes(attributes: &[KeyValue]) -> Vec<OtlpKeyValue<'_>> {
    attributes
        .iter()
        .map(|kv| OtlpKeyValue {
            key: &kv.key,
            value: OtlpAnyValue::from(&kv.value),
        })
        .collect()
}
