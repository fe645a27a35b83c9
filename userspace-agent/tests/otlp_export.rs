//! OTLP export end to end against real receivers started inside the test: a tonic
//! gRPC `TraceService` server and a hyper HTTP server accepting `POST /v1/traces`,
//! both optionally behind TLS with a CA generated at test time. Spans go through the
//! real `OtlpSink` (queue, batching, retries, transport); the receivers decode what
//! arrives and the tests compare it field by field.

// Helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Status as PStatus;
use prost::Message;
use sonde::config::{Compression, OtlpConfig, Protocol, Signal, Source, Sourced};
use sonde::metrics::Counters;
use sonde::sinks::SpanSink;
use sonde::sinks::otlp::{ExportOptions, OtlpSink};
use sonde::spans::{KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------
// Spans

fn resource(service: &str, pid: i64) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.to_owned(),
        attributes: vec![
            KeyValue::new("service.name", service.to_owned()),
            KeyValue::new("process.pid", pid),
            KeyValue::new("telemetry.sdk.name", "sonde"),
        ],
    })
}

fn span(resource: &Arc<Resource>, n: u8, parent: Option<u8>, status: Status) -> Span {
    Span {
        trace_id: TraceId([0xa0 | (n & 0x0f); 16]),
        span_id: SpanId([n; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        trace_state: None,
        name: format!("GET /item/{n}"),
        kind: if parent.is_some() {
            SpanKind::Client
        } else {
            SpanKind::Server
        },
        start_unix_nano: 1_700_000_000_000_000_000 + u64::from(n) * 1000,
        end_unix_nano: 1_700_000_000_000_500_000 + u64::from(n) * 1000,
        status,
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 200i64 + i64::from(n)),
            KeyValue::new("sonde.partial", n.is_multiple_of(2)),
        ],
        resource: Arc::clone(resource),
    }
}

/// Three spans from two processes, interleaved.
fn sample_spans() -> Vec<Span> {
    let api = resource("api", 100);
    let db = resource("db", 200);
    vec![
        span(&api, 1, None, Status::Unset),
        span(
            &db,
            2,
            Some(1),
            Status::Error {
                message: "connection reset before full response".into(),
            },
        ),
        span(&api, 3, Some(1), Status::Unset),
    ]
}

fn str_kv(key: &str, v: &str) -> PKeyValue {
    PKeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..PKeyValue::default()
    }
}

fn int_kv(key: &str, v: i64) -> PKeyValue {
    PKeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..PKeyValue::default()
    }
}

fn bool_kv(key: &str, v: bool) -> PKeyValue {
    PKeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(v)),
        }),
        ..PKeyValue::default()
    }
}

/// Checks a received request holds exactly [`sample_spans`], grouped by resource.
fn assert_sample_request(req: &ExportTraceServiceRequest) {
    assert_eq!(req.resource_spans.len(), 2, "{req:#?}");
    let expected_resources = [("api", 100, vec![1u8, 3]), ("db", 200, vec![2])];
    for (rs, (service, pid, span_ns)) in req.resource_spans.iter().zip(expected_resources) {
        let res = rs.resource.as_ref().expect("resource");
        assert_eq!(
            res.attributes,
            [
                str_kv("service.name", service),
                int_kv("process.pid", pid),
                str_kv("telemetry.sdk.name", "sonde"),
            ]
        );
        assert_eq!(rs.scope_spans.len(), 1);
        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().expect("scope");
        assert_eq!(scope.name, "sonde");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(ss.spans.len(), span_ns.len());
        for (s, n) in ss.spans.iter().zip(span_ns) {
            assert_eq!(s.trace_id, vec![0xa0 | (n & 0x0f); 16]);
            assert_eq!(s.span_id, vec![n; 8]);
            let (parent, kind) = if n == 1 {
                (Vec::new(), 2)
            } else {
                (vec![1u8; 8], 3)
            };
            assert_eq!(s.parent_span_id, parent);
            assert_eq!(s.kind, kind);
            assert_eq!(s.name, format!("GET /item/{n}"));
            assert_eq!(
                s.start_time_unix_nano,
                1_700_000_000_000_000_000 + u64::from(n) * 1000
            );
            assert_eq!(
                s.end_time_unix_nano,
                1_700_000_000_000_500_000 + u64::from(n) * 1000
            );
            assert_eq!(
                s.attributes,
                [
                    str_kv("http.request.method", "GET"),
                    int_kv("http.response.status_code", 200 + i64::from(n)),
                    bool_kv("sonde.partial", n.is_multiple_of(2)),
                ]
            );
            if n == 2 {
                assert_eq!(
                    s.status,
                    Some(PStatus {
                        message: "connection reset before full response".into(),
                        code: 2,
                    })
                );
            } else {
                assert_eq!(s.status, None);
            }
            assert!(s.events.is_empty() && s.links.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------
// TLS material

struct Pki {
    _dir: TempDir,
    ca_file: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn make_pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sonde test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let dir = TempDir::new();
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    Pki {
        _dir: dir,
        ca_file,
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        use std::sync::atomic::AtomicU32;
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "sonde-otlp-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rustls_server_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

// ---------------------------------------------------------------------------------
// gRPC receiver

#[derive(Clone, Default)]
struct GrpcState {
    received: Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportTraceServiceRequest)>>>,
    /// Errors to answer with, one per request, before answering OK.
    failures: Arc<Mutex<VecDeque<tonic::Status>>>,
}

#[tonic::async_trait]
impl TraceService for GrpcState {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Some(status) = self.failures.lock().unwrap().pop_front() {
            return Err(status);
        }
        let (metadata, _, message) = request.into_parts();
        self.received.lock().unwrap().push((metadata, message));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

struct GrpcReceiver {
    addr: SocketAddr,
    state: GrpcState,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcReceiver {
    async fn start(addr: SocketAddr, tls: Option<&Pki>, state: GrpcState) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut builder = tonic::transport::Server::builder();
        if let Some(pki) = tls {
            let identity = tonic::transport::Identity::from_pem(&pki.cert_pem, &pki.key_pem);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(state.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let router = builder.add_service(service);
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        Self {
            addr,
            state,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }

    fn span_count(&self) -> usize {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| count_spans(r))
            .sum()
    }
}

fn count_spans(r: &ExportTraceServiceRequest) -> usize {
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

// ---------------------------------------------------------------------------------
// HTTP receiver

struct HttpRequestSeen {
    path: String,
    headers: http::HeaderMap,
    request: ExportTraceServiceRequest,
}

/// How the HTTP receiver answers one request.
#[derive(Clone)]
enum HttpReply {
    Status(u16, Option<&'static str>),
    PartialSuccess(i64, &'static str),
}

#[derive(Clone, Default)]
struct HttpState {
    received: Arc<Mutex<Vec<HttpRequestSeen>>>,
    replies: Arc<Mutex<VecDeque<HttpReply>>>,
}

struct HttpReceiver {
    addr: SocketAddr,
    state: HttpState,
    task: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    async fn start(addr: SocketAddr, tls: Option<&Pki>, state: HttpState) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.map(|p| tokio_rustls::TlsAcceptor::from(rustls_server_config(p)));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle_http(st.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Self { addr, state, task }
    }

    fn stop(self) {
        self.task.abort();
    }
}

async fn handle_http(
    state: HttpState,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let body = if parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip")
    {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut out)
            .unwrap();
        Bytes::from(out)
    } else {
        body
    };
    let reply = state.replies.lock().unwrap().pop_front();
    let mut response = http::Response::builder().header("content-type", "application/x-protobuf");
    let ok_body = |partial: Option<ExportTracePartialSuccess>| {
        ExportTraceServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec()
    };
    let (status, payload) = match reply {
        Some(HttpReply::Status(code, retry_after)) => {
            if let Some(ra) = retry_after {
                response = response.header("retry-after", ra);
            }
            (code, b"unavailable".to_vec())
        }
        Some(HttpReply::PartialSuccess(rejected, message)) => {
            record_http(&state, &parts, &body);
            (
                200,
                ok_body(Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.into(),
                })),
            )
        }
        None => {
            record_http(&state, &parts, &body);
            (200, ok_body(None))
        }
    };
    Ok(response
        .status(status)
        .body(Full::new(Bytes::from(payload)))
        .unwrap())
}

fn record_http(state: &HttpState, parts: &http::request::Parts, body: &Bytes) {
    state.received.lock().unwrap().push(HttpRequestSeen {
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        request: ExportTraceServiceRequest::decode(body.clone()).unwrap(),
    });
}

// ---------------------------------------------------------------------------------
// Helpers

fn config(
    protocol: Protocol,
    endpoint: &str,
    compression: Compression,
    headers: &[(&str, &str)],
    certificate: Option<&PathBuf>,
) -> OtlpConfig {
    let mut c = OtlpConfig::for_endpoint(Signal::Traces, endpoint, protocol).unwrap();
    c.compression = Sourced::new(compression, Source::Default);
    c.headers = Sourced::new(
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        Source::Default,
    );
    c.timeout = Sourced::new(Duration::from_secs(3), Source::Default);
    c.certificate = certificate.map(|p| Sourced::new(p.clone(), Source::Default));
    c
}

fn fast_options() -> ExportOptions {
    ExportOptions {
        batch_timeout: Duration::from_millis(50),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..ExportOptions::default()
    }
}

fn get(c: &Counters, name: &str) -> u64 {
    c.snapshot()
        .into_iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, v, _)| v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// Exports `spans` through a fresh sink and shuts it down (flushing) off the runtime
/// threads, as the agent does from its own thread.
async fn export_and_flush(sink: OtlpSink, spans: Vec<Span>) {
    tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        sink.export(spans, 0).unwrap();
        sink.shutdown().unwrap();
    })
    .await
    .unwrap();
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ---------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_groups_by_resource_with_metadata_headers() {
    for compression in [Compression::None, Compression::Gzip] {
        let rx = GrpcReceiver::start(loopback(), None, GrpcState::default()).await;
        let counters = Arc::new(Counters::default());
        let cfg = config(
            Protocol::Grpc,
            &format!("http://{}", rx.addr),
            compression,
            &[("x-api-key", "s3cret"), ("X-Tenant", "acme")],
            None,
        );
        let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
        export_and_flush(sink, sample_spans()).await;
        {
            let received = rx.state.received.lock().unwrap();
            assert_eq!(received.len(), 1, "one batch, one request");
            let (metadata, request) = &received[0];
            assert_sample_request(request);
            assert_eq!(metadata.get("x-api-key").unwrap(), "s3cret");
            assert_eq!(metadata.get("x-tenant").unwrap(), "acme");
            let encoding = metadata.get("grpc-encoding").map(|v| v.to_str().unwrap());
            match compression {
                Compression::Gzip => assert_eq!(encoding, Some("gzip")),
                Compression::None => assert_eq!(encoding, None),
            }
        }
        assert_eq!(get(&counters, "spans_exported"), 3);
        assert_eq!(get(&counters, "export_failures"), 0);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_posts_protobuf_to_v1_traces() {
    for compression in [Compression::None, Compression::Gzip] {
        let rx = HttpReceiver::start(loopback(), None, HttpState::default()).await;
        let counters = Arc::new(Counters::default());
        // A generic endpoint: /v1/traces is appended.
        let cfg = config(
            Protocol::HttpProtobuf,
            &format!("http://{}", rx.addr),
            compression,
            &[("x-api-key", "s3cret")],
            None,
        );
        assert!(cfg.endpoint.value.ends_with("/v1/traces"));
        let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
        export_and_flush(sink, sample_spans()).await;
        {
            let received = rx.state.received.lock().unwrap();
            assert_eq!(received.len(), 1);
            let seen = &received[0];
            assert_eq!(seen.path, "/v1/traces");
            assert_eq!(
                seen.headers.get("content-type").unwrap(),
                "application/x-protobuf"
            );
            assert_eq!(seen.headers.get("x-api-key").unwrap(), "s3cret");
            let encoding = seen.headers.get("content-encoding");
            match compression {
                Compression::Gzip => assert_eq!(encoding.unwrap(), "gzip"),
                Compression::None => assert!(encoding.is_none()),
            }
            assert_sample_request(&seen.request);
        }
        assert_eq!(get(&counters, "spans_exported"), 3);
        rx.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_collectors_are_verified_with_the_configured_ca() {
    let pki = make_pki();
    // gRPC over TLS.
    let rx = GrpcReceiver::start(loopback(), Some(&pki), GrpcState::default()).await;
    let url = format!("https://127.0.0.1:{}", rx.addr.port());
    let counters = Arc::new(Counters::default());
    let cfg = config(
        Protocol::Grpc,
        &url,
        Compression::Gzip,
        &[],
        Some(&pki.ca_file),
    );
    let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "spans_exported"), 3);
    assert_sample_request(&rx.state.received.lock().unwrap()[0].1);

    // Without the CA the server's certificate is not trusted: nothing arrives.
    let counters = Arc::new(Counters::default());
    let cfg = config(Protocol::Grpc, &url, Compression::None, &[], None);
    let opts = ExportOptions {
        max_attempts: 1,
        ..fast_options()
    };
    let sink = OtlpSink::new(&cfg, opts.clone(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "spans_exported"), 0);
    assert_eq!(get(&counters, "export_failed_spans"), 3);
    assert_eq!(rx.state.received.lock().unwrap().len(), 1);
    rx.stop().await;

    // OTLP/HTTP over TLS.
    let rx = HttpReceiver::start(loopback(), Some(&pki), HttpState::default()).await;
    let url = format!("https://127.0.0.1:{}", rx.addr.port());
    let counters = Arc::new(Counters::default());
    let cfg = config(
        Protocol::HttpProtobuf,
        &url,
        Compression::Gzip,
        &[],
        Some(&pki.ca_file),
    );
    let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "spans_exported"), 3);
    assert_sample_request(&rx.state.received.lock().unwrap()[0].request);

    let counters = Arc::new(Counters::default());
    let cfg = config(Protocol::HttpProtobuf, &url, Compression::None, &[], None);
    let sink = OtlpSink::new(&cfg, opts, Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "spans_exported"), 0);
    assert_eq!(get(&counters, "export_failures"), 1);
    assert_eq!(rx.state.received.lock().unwrap().len(), 1);
    rx.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_and_permanent_ones_are_not() {
    // HTTP: 503 (with Retry-After: 0) and 429, then OK.
    let state = HttpState::default();
    state.replies.lock().unwrap().extend([
        HttpReply::Status(503, Some("0")),
        HttpReply::Status(429, None),
    ]);
    let rx = HttpReceiver::start(loopback(), None, state).await;
    let counters = Arc::new(Counters::default());
    let cfg = config(
        Protocol::HttpProtobuf,
        &format!("http://{}", rx.addr),
        Compression::None,
        &[],
        None,
    );
    let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "export_retries"), 2);
    assert_eq!(get(&counters, "spans_exported"), 3);
    assert_eq!(rx.state.received.lock().unwrap().len(), 1);

    // HTTP 400: given up at once.
    rx.state
        .replies
        .lock()
        .unwrap()
        .push_back(HttpReply::Status(400, None));
    let counters = Arc::new(Counters::default());
    let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "export_retries"), 0);
    assert_eq!(get(&counters, "export_failures"), 1);
    assert_eq!(get(&counters, "export_failed_spans"), 3);
    rx.stop();

    // gRPC: UNAVAILABLE then RESOURCE_EXHAUSTED, then OK; INVALID_ARGUMENT is final.
    let state = GrpcState::default();
    state.failures.lock().unwrap().extend([
        tonic::Status::unavailable("restarting"),
        tonic::Status::resource_exhausted("slow down"),
    ]);
    let rx = GrpcReceiver::start(loopback(), None, state).await;
    let cfg = config(
        Protocol::Grpc,
        &format!("http://{}", rx.addr),
        Compression::None,
        &[],
        None,
    );
    let counters = Arc::new(Counters::default());
    let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "export_retries"), 2);
    assert_eq!(get(&counters, "spans_exported"), 3);
    rx.state
        .failures
        .lock()
        .unwrap()
        .push_back(tonic::Status::invalid_argument("bad"));
    let counters = Arc::new(Counters::default());
    let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "export_retries"), 0);
    assert_eq!(get(&counters, "export_failures"), 1);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_rejections_are_counted() {
    let state = HttpState::default();
    state
        .replies
        .lock()
        .unwrap()
        .push_back(HttpReply::PartialSuccess(1, "span too old"));
    let rx = HttpReceiver::start(loopback(), None, state).await;
    let counters = Arc::new(Counters::default());
    let cfg = config(
        Protocol::HttpProtobuf,
        &format!("http://{}", rx.addr),
        Compression::None,
        &[],
        None,
    );
    let sink = OtlpSink::new(&cfg, fast_options(), Arc::clone(&counters)).unwrap();
    export_and_flush(sink, sample_spans()).await;
    assert_eq!(get(&counters, "spans_rejected"), 1);
    assert_eq!(get(&counters, "spans_exported"), 2);
    rx.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_split_at_max_batch() {
    let rx = GrpcReceiver::start(loopback(), None, GrpcState::default()).await;
    let counters = Arc::new(Counters::default());
    let cfg = config(
        Protocol::Grpc,
        &format!("http://{}", rx.addr),
        Compression::None,
        &[],
        None,
    );
    let opts = ExportOptions {
        max_batch: 4,
        batch_timeout: Duration::from_secs(10),
        ..fast_options()
    };
    let r = resource("api", 1);
    let spans: Vec<Span> = (1..=10).map(|n| span(&r, n, None, Status::Unset)).collect();
    let sink = OtlpSink::new(&cfg, opts, Arc::clone(&counters)).unwrap();
    export_and_flush(sink, spans).await;
    let sizes: Vec<usize> = rx
        .state
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| count_spans(r))
        .collect();
    assert_eq!(sizes, [4, 4, 2]);
    rx.stop().await;
}

/// The collector is down: the queue stays bounded, drops are counted, the agent-side
/// `export` never blocks; then the collector comes up on the same port and export
/// resumes without restarting anything.
async fn backend_down_then_back(protocol: Protocol, down_for: Duration) {
    // Reserve a port, then free it so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let counters = Arc::new(Counters::default());
    let mut cfg = config(
        protocol,
        &format!("http://{addr}"),
        Compression::Gzip,
        &[],
        None,
    );
    cfg.timeout = Sourced::new(Duration::from_millis(500), Source::Default);
    let opts = ExportOptions {
        queue_capacity: 64,
        max_batch: 16,
        batch_timeout: Duration::from_millis(20),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(3),
    };
    let sink = Arc::new(Mutex::new(
        OtlpSink::new(&cfg, opts, Arc::clone(&counters)).unwrap(),
    ));
    let r = resource("api", 1);

    // Push 10 spans every 10 ms while nothing listens.
    let push = |sink: Arc<Mutex<OtlpSink>>, r: Arc<Resource>, for_: Duration| {
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let mut pushed = 0u64;
            let mut slowest = Duration::ZERO;
            while start.elapsed() < for_ {
                let spans: Vec<Span> = (1..=10).map(|n| span(&r, n, None, Status::Unset)).collect();
                let t = Instant::now();
                sink.lock().unwrap().export(spans, 0).unwrap();
                slowest = slowest.max(t.elapsed());
                pushed += 10;
                std::thread::sleep(Duration::from_millis(10));
            }
            (pushed, slowest)
        })
    };
    let (pushed, slowest) = push(Arc::clone(&sink), Arc::clone(&r), down_for)
        .await
        .unwrap();
    assert!(
        slowest < Duration::from_millis(50),
        "export blocked for {slowest:?}"
    );
    let dropped = get(&counters, "export_queue_dropped");
    let failed = get(&counters, "export_failed_spans");
    assert!(dropped > 0, "a full queue drops spans (pushed {pushed})");
    assert!(get(&counters, "export_queue_depth") <= 64);
    assert!(get(&counters, "export_retries") > 0);
    assert_eq!(get(&counters, "spans_exported"), 0);
    // Every span is accounted for: dropped at the queue, lost in a failed batch, or
    // still queued / in flight (at most the queue plus one batch).
    assert!(
        pushed - dropped - failed <= 64 + 16,
        "{pushed} {dropped} {failed}"
    );

    // The collector comes up on the same port.
    enum Rx {
        Grpc(GrpcReceiver),
        Http(HttpReceiver),
    }
    let rx = match protocol {
        Protocol::Grpc => Rx::Grpc(GrpcReceiver::start(addr, None, GrpcState::default()).await),
        Protocol::HttpProtobuf => {
            Rx::Http(HttpReceiver::start(addr, None, HttpState::default()).await)
        }
    };
    let received = |rx: &Rx| match rx {
        Rx::Grpc(g) => g.span_count(),
        Rx::Http(h) => h
            .state
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|s| count_spans(&s.request))
            .sum(),
    };
    let pusher = push(
        Arc::clone(&sink),
        Arc::clone(&r),
        Duration::from_millis(1500),
    );
    wait_for("export to resume", Duration::from_secs(10), || {
        get(&counters, "spans_exported") > 0 && received(&rx) > 0
    })
    .await;
    pusher.await.unwrap();
    tokio::task::spawn_blocking(move || sink.lock().unwrap().shutdown().unwrap())
        .await
        .unwrap();
    assert_eq!(received(&rx) as u64, get(&counters, "spans_exported"));
    match rx {
        Rx::Grpc(g) => g.stop().await,
        Rx::Http(h) => h.stop(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_backend_down_keeps_memory_bounded_and_resumes() {
    backend_down_then_back(Protocol::Grpc, Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_down_keeps_memory_bounded_and_resumes() {
    backend_down_then_back(Protocol::HttpProtobuf, Duration::from_millis(1500)).await;
}

/// The long variant: 30 s of outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 30 s outage"]
async fn backend_down_for_30s_then_back() {
    backend_down_then_back(Protocol::Grpc, Duration::from_secs(30)).await;
    backend_down_then_back(Protocol::HttpProtobuf, Duration::from_secs(30)).await;
}
