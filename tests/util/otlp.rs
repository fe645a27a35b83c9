//! In-test OTLP receivers: a real tonic gRPC server (`TraceService` and `MetricsService`)
//! or a real hyper HTTP/1.1 server (`POST /v1/traces`, `POST /v1/metrics`, gzip bodies
//! accepted), as in `userspace-agent/tests/otlp_export.rs`. They decode every request,
//! keep it with its headers, and answer success.
//!
//! Each [`Collector`] runs on its own tokio runtime (the tests themselves are
//! synchronous). [`Collector::stop`] drops that runtime, which closes the listener and
//! every open connection at once: a backend that is really gone, not just refusing new
//! connections while keep-alive ones still answer.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use super::SpanTree;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received<T> {
    /// The URL path (`/v1/traces`, or the gRPC method path).
    pub path: String,
    /// HTTP headers (gRPC: the request metadata).
    pub headers: http::HeaderMap,
    pub request: T,
}

/// Everything a collector received so far.
#[derive(Clone, Default)]
pub struct Store {
    pub traces: Arc<Mutex<Vec<Received<ExportTraceServiceRequest>>>>,
    pub metrics: Arc<Mutex<Vec<Received<ExportMetricsServiceRequest>>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Grpc,
    Http,
}

/// A running OTLP receiver; stops (closing every connection) on drop.
pub struct Collector {
    pub addr: SocketAddr,
    pub proto: Proto,
    state: Store,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Collector {
    /// gRPC on 127.0.0.1, a free port.
    pub fn grpc() -> Self {
        Self::start(Proto::Grpc, loopback(0))
    }

    /// OTLP/HTTP on 127.0.0.1, a free port.
    pub fn http() -> Self {
        Self::start(Proto::Http, loopback(0))
    }

    /// Listens on `addr` (port 0: any free port).
    pub fn start(proto: Proto, addr: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-receiver")
            .enable_all()
            .build()
            .expect("a tokio runtime for the receiver");
        let std_listener =
            std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let state = Store::default();
        {
            let _guard = runtime.enter();
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
            match proto {
                Proto::Grpc => spawn_grpc(listener, state.clone()),
                Proto::Http => spawn_http(listener, state.clone()),
            }
        }
        Self {
            addr,
            proto,
            state,
            runtime: Some(runtime),
        }
    }

    /// The endpoint URL for `--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL:
    /// the agent appends `/v1/traces` over HTTP).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops listening and closes every connection.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }

    pub fn traces(&self) -> Vec<Received<ExportTraceServiceRequest>> {
        self.state.traces.lock().expect("lock").clone()
    }

    pub fn metrics(&self) -> Vec<Received<ExportMetricsServiceRequest>> {
        self.state.metrics.lock().expect("lock").clone()
    }

    /// Spans received so far, over all requests.
    pub fn span_count(&self) -> usize {
        self.state
            .traces
            .lock()
            .expect("lock")
            .iter()
            .map(|r| count_spans(&r.request))
            .sum()
    }

    /// Every received span as the agent's OTLP-JSON line (`-o json`) would show it, its
    /// resource inlined, so the [`SpanTree`] asserts and invariants apply unchanged.
    pub fn span_tree(&self) -> SpanTree {
        let mut spans = Vec::new();
        for r in self.traces() {
            for rs in &r.request.resource_spans {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        spans.push(span_json(rs.resource.as_ref(), s));
                    }
                }
            }
        }
        SpanTree::new(spans).with_context(&self.describe())
    }

    /// A summary of every request received (for failure messages).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for r in self.traces() {
            let _ = writeln!(
                s,
                "traces request {} ({} spans), {} resource(s): {:?}",
                r.path,
                count_spans(&r.request),
                r.request.resource_spans.len(),
                r.request
                    .resource_spans
                    .iter()
                    .map(|rs| res_attr(rs.resource.as_ref(), "service.name"))
                    .collect::<Vec<_>>()
            );
        }
        let _ = writeln!(s, "{} metrics request(s)", self.metrics().len());
        s
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn count_spans(r: &ExportTraceServiceRequest) -> usize {
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

// ===== gRPC =====

#[derive(Clone)]
struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let (metadata, _, message) = request.into_parts();
        self.0.traces.lock().expect("lock").push(Received {
            path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export".into(),
            headers: metadata.into_headers(),
            request: message,
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let (metadata, _, message) = request.into_parts();
        self.0.metrics.lock().expect("lock").push(Received {
            path: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export".into(),
            headers: metadata.into_headers(),
            request: message,
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn spawn_grpc(listener: tokio::net::TcpListener, state: Store) {
    let svc = Grpc(state);
    let router = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(svc.clone())
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(
            MetricsServiceServer::new(svc)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        );
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
}

// ===== HTTP =====

fn spawn_http(listener: tokio::net::TcpListener, state: Store) {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let st = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle_http(st.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
}

async fn handle_http(
    state: Store,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let reply = |status: u16, body: Vec<u8>| {
        Ok(http::Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .expect("a response"))
    };
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return reply(400, b"unreadable body".to_vec());
    };
    let body = if parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip")
    {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut out)
            .is_err()
        {
            return reply(400, b"bad gzip".to_vec());
        }
        Bytes::from(out)
    } else {
        body
    };
    let path = parts.uri.path().to_owned();
    if parts.method != http::Method::POST {
        return reply(405, Vec::new());
    }
    match path.as_str() {
        "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
            Ok(request) => {
                state.traces.lock().expect("lock").push(Received {
                    path,
                    headers: parts.headers,
                    request,
                });
                reply(200, ExportTraceServiceResponse::default().encode_to_vec())
            }
            Err(_) => reply(400, b"not an ExportTraceServiceRequest".to_vec()),
        },
        "/v1/metrics" => match ExportMetricsServiceRequest::decode(body) {
            Ok(request) => {
                state.metrics.lock().expect("lock").push(Received {
                    path,
                    headers: parts.headers,
                    request,
                });
                reply(200, ExportMetricsServiceResponse::default().encode_to_vec())
            }
            Err(_) => reply(400, b"not an ExportMetricsServiceRequest".to_vec()),
        },
        _ => reply(404, Vec::new()),
    }
}

// ===== proto -> OTLP JSON =====

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// An `AnyValue` in OTLP JSON (`intValue` as a string).
pub fn any_json(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => json!({ "stringValue": s }),
        Some(any_value::Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(any_value::Value::BoolValue(b)) => json!({ "boolValue": b }),
        Some(any_value::Value::DoubleValue(d)) => json!({ "doubleValue": d }),
        other => json!({ "unsupported": format!("{other:?}") }),
    }
}

pub fn kvs_json(kvs: &[KeyValue]) -> Value {
    Value::Array(
        kvs.iter()
            .map(|kv| json!({ "key": kv.key, "value": any_json(kv.value.as_ref()) }))
            .collect(),
    )
}

/// One span in the agent's `-o json` shape.
pub fn span_json(resource: Option<&Resource>, s: &Span) -> Value {
    let mut v = json!({
        "traceId": hex(&s.trace_id),
        "spanId": hex(&s.span_id),
        "name": s.name,
        "kind": s.kind,
        "startTimeUnixNano": s.start_time_unix_nano.to_string(),
        "endTimeUnixNano": s.end_time_unix_nano.to_string(),
        "status": s.status.as_ref().map_or_else(|| json!({}), |st| {
            let mut o = serde_json::Map::new();
            if st.code != 0 {
                o.insert("code".into(), json!(st.code));
            }
            if !st.message.is_empty() {
                o.insert("message".into(), json!(st.message));
            }
            Value::Object(o)
        }),
        "attributes": kvs_json(&s.attributes),
        "resource": { "attributes": kvs_json(resource.map_or(&[][..], |r| &r.attributes)) },
    });
    if !s.parent_span_id.is_empty() {
        v["parentSpanId"] = json!(hex(&s.parent_span_id));
    }
    if !s.trace_state.is_empty() {
        v["traceState"] = json!(s.trace_state);
    }
    v
}

/// A resource attribute as a string (ints formatted).
pub fn res_attr(r: Option<&Resource>, key: &str) -> Option<String> {
    attr_str(r.map_or(&[][..], |r| &r.attributes), key)
}

/// An attribute as a string (ints formatted).
pub fn attr_str(kvs: &[KeyValue], key: &str) -> Option<String> {
    let kv = kvs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}
