//! The span model every stage after `spans/` works with: what a finished span is,
//! independent of how it was captured or where it is exported.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A W3C trace ID: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// A W3C span (parent) ID: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A fresh random ID (never all zero).
    pub fn random() -> Self {
        loop {
            let id: [u8; 16] = rand::random();
            if id != [0; 16] {
                return Self(id);
            }
        }
    }

    /// `None` for the all-zero (invalid) ID.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }
}

impl SpanId {
    /// A fresh random ID (never all zero).
    pub fn random() -> Self {
        loop {
            let id: [u8; 8] = rand::random();
            if id != [0; 8] {
                return Self(id);
            }
        }
    }

    /// `None` for the all-zero (invalid) ID.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(Self(bytes))
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// OTLP span kinds Sonde produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}

impl SpanKind {
    /// The OTLP enum value (`SPAN_KIND_SERVER` = 2, `SPAN_KIND_CLIENT` = 3).
    pub fn otlp_value(self) -> i32 {
        match self {
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        }
    }
}

/// Span status as OTLP defines it; Sonde never sets OK (that is the application's call).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Unset,
    Error {
        /// Short reason, e.g. "connection reset before full response".
        message: String,
    },
}

impl Status {
    /// The OTLP enum value (`STATUS_CODE_UNSET` = 0, `STATUS_CODE_ERROR` = 2).
    pub fn otlp_code(&self) -> i32 {
        match self {
            Status::Unset => 0,
            Status::Error { .. } => 2,
        }
    }
}

/// The text of a string attribute, read as a `&str`. Fixed values ("http", "tcp", "GET")
/// are borrowed and values a whole connection repeats (its addresses) shared, so neither
/// costs an allocation per span; the rest is owned.
#[derive(Clone)]
pub enum Text {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

/// Equal when the texts are, however each is held.
impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
impl Eq for Text {}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl From<&'static str> for Text {
    fn from(v: &'static str) -> Self {
        Text::Static(v)
    }
}
impl From<String> for Text {
    fn from(v: String) -> Self {
        Text::Owned(v)
    }
}
impl From<Arc<str>> for Text {
    fn from(v: Arc<str>) -> Self {
        Text::Shared(v)
    }
}
impl From<Cow<'static, str>> for Text {
    fn from(v: Cow<'static, str>) -> Self {
        match v {
            Cow::Borrowed(s) => Text::Static(s),
            Cow::Owned(s) => Text::Owned(s),
        }
    }
}

/// An attribute value (the subset of OTLP `AnyValue` Sonde emits).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(Text),
    Int(i64),
    Bool(bool),
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v.into())
    }
}
impl From<Cow<'static, str>> for Value {
    fn from(v: Cow<'static, str>) -> Self {
        Value::Str(v.into())
    }
}
impl From<&'static str> for Value {
    fn from(v: &'static str) -> Self {
        Value::Str(v.into())
    }
}
impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Self {
        Value::Str(v.into())
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One attribute. Keys are OpenTelemetry semantic-convention names: almost always
/// static strings, so they are not allocated per span.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: Cow<'static, str>,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Who produced a span: one per traced process (OTel resource).
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// `service.name`, kept apart because every sink needs it.
    pub service_name: String,
    /// All resource attributes, `service.name` included.
    pub attributes: Vec<KeyValue>,
}

impl Resource {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }
}

/// A finished span, ready for the sinks.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// W3C `tracestate` received with the parent's context (OTLP `Span.trace_state`).
    pub trace_state: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: Status,
    pub attributes: Vec<KeyValue>,
    pub resource: Arc<Resource>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}
