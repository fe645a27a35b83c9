//! Sending OTLP requests: gRPC (tonic) or HTTP/protobuf (hyper), with TLS (rustls,
//! the configured CA or the system roots), gzip, extra headers and a timeout.
//!
//! The client is signal-agnostic so the traces exporter and the metrics exporter share
//! it: build one per signal from that signal's [`OtlpConfig`] (its endpoint already
//! carries `/v1/traces` or `/v1/metrics` over HTTP). Errors say whether a retry may
//! help ([`ExportError::Transient`], with the server's requested delay when it gave
//! one) or not ([`ExportError::Permanent`]).
//!
//! Needs a tokio runtime (with I/O and time) to be created and used.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::config::{Compression, OtlpConfig, Protocol, Signal};

const USER_AGENT: &str = concat!("sonde/", env!("CARGO_PKG_VERSION"));
/// Largest response body read from an OTLP/HTTP collector.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// The longest delay a collector may ask for (Retry-After, gRPC RetryInfo); longer ones
/// are cut to this. One day is far past the longest export timeout
/// ([`MAX_OTLP_TIMEOUT`](crate::config::limits::MAX_OTLP_TIMEOUT)), so a cut delay still
/// makes the exporter give up on the batch as the full one would, and adding it to a
/// clock reading cannot overflow.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Why an export did not go through.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    /// Worth retrying (unavailable, throttled, timed out, connection failed).
    #[error("{message}")]
    Transient {
        message: String,
        /// The delay the server asked for (Retry-After, gRPC RetryInfo).
        retry_after: Option<Duration>,
    },
    /// Retrying would not help (bad request, unauthenticated, ...).
    #[error("{0}")]
    Permanent(String),
}

impl ExportError {
    fn transient(message: impl Into<String>) -> Self {
        ExportError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// What an accepted request reported back (OTLP partial success).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportOutcome {
    /// Spans / data points the collector rejected.
    pub rejected: i64,
    /// The collector's explanation, if any.
    pub message: String,
}

/// An OTLP exporter connection for one signal.
#[derive(Clone)]
pub struct OtlpClient {
    signal: Signal,
    timeout: Duration,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
        gzip: bool,
    },
    Http {
        client: Box<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>>,
        url: Uri,
        headers: HeaderMap,
        gzip: bool,
    },
}

impl OtlpClient {
    /// Builds the client; connects lazily (the first export connects, and a broken
    /// connection is re-established by later exports). Must run inside a tokio runtime.
    pub fn new(config: &OtlpConfig) -> Result<Self> {
        let url = &config.endpoint.value;
        let tls = config.is_tls();
        if !tls && config.certificate.is_some() {
            log::warn!("OTLP: certificate is ignored for the plain-text endpoint {url}");
        }
        let ca_pem = match (&config.certificate, tls) {
            (Some(c), true) => Some(
                std::fs::read(&c.value)
                    .with_context(|| format!("reading OTLP certificate {}", c.value.display()))?,
            ),
            _ => None,
        };
        let gzip = config.compression.value == Compression::Gzip;
        let inner = match config.protocol.value {
            Protocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(url.clone())
                    .with_context(|| format!("OTLP endpoint {url}"))?
                    .timeout(config.timeout.value)
                    .connect_timeout(config.timeout.value)
                    .tcp_nodelay(true)
                    .user_agent(USER_AGENT)?;
                if tls {
                    let mut tls_config = ClientTlsConfig::new();
                    tls_config = match ca_pem {
                        Some(pem) => tls_config.ca_certificate(Certificate::from_pem(pem)),
                        None => tls_config.with_native_roots(),
                    };
                    endpoint = endpoint
                        .tls_config(tls_config)
                        .context("OTLP gRPC TLS setup")?;
                }
                let mut metadata = MetadataMap::new();
                for (k, v) in &config.headers.value {
                    let key = AsciiMetadataKey::from_str(&k.to_ascii_lowercase())
                        .with_context(|| format!("OTLP header {k:?} is not valid gRPC metadata"))?;
                    let value = AsciiMetadataValue::from_str(v)
                        .with_context(|| format!("value of OTLP header {k:?} is not valid"))?;
                    metadata.append(key, value);
                }
                Inner::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata,
                    gzip,
                }
            }
            Protocol::HttpProtobuf => {
                let uri: Uri = url
                    .parse()
                    .with_context(|| format!("OTLP endpoint {url}"))?;
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(config.timeout.value));
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(rustls_config(ca_pem.as_deref(), tls)?)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                let client = HyperClient::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build(connector);
                let mut headers = HeaderMap::new();
                for (k, v) in &config.headers.value {
                    headers.append(
                        HeaderName::from_bytes(k.as_bytes())
                            .with_context(|| format!("OTLP header name {k:?}"))?,
                        HeaderValue::from_str(v)
                            .with_context(|| format!("value of OTLP header {k:?}"))?,
                    );
                }
                Inner::Http {
                    client: Box::new(client),
                    url: uri,
                    headers,
                    gzip,
                }
            }
        };
        Ok(Self {
            signal: config.signal,
            timeout: config.timeout.value,
            inner,
        })
    }

    /// The configured per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one traces request, waiting at most `timeout` (capped by the configured
    /// timeout).
    pub async fn export_traces(
        &self,
        request: ExportTraceServiceRequest,
        timeout: Duration,
    ) -> Result<ExportOutcome, ExportError> {
        let grpc = async |channel: Channel, request, gzip: bool| {
            let mut client = TraceServiceClient::new(channel);
            if gzip {
                client = client
                    .send_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Gzip);
            }
            client.export(request).await
        };
        let outcome = |response: ExportTraceServiceResponse| {
            response
                .partial_success
                .map_or_else(ExportOutcome::default, |p| ExportOutcome {
                    rejected: p.rejected_spans,
                    message: p.error_message,
                })
        };
        self.export(Signal::Traces, request, timeout, grpc, outcome)
            .await
    }

    /// Sends one metrics request (same rules as [`Self::export_traces`]).
    pub async fn export_metrics(
        &self,
        request: ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> Result<ExportOutcome, ExportError> {
        let grpc = async |channel: Channel, request, gzip: bool| {
            let mut client = MetricsServiceClient::new(channel);
            if gzip {
                client = client
                    .send_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Gzip);
            }
            client.export(request).await
        };
        let outcome = |response: ExportMetricsServiceResponse| {
            response
                .partial_success
                .map_or_else(ExportOutcome::default, |p| ExportOutcome {
                    rejected: p.rejected_data_points,
                    message: p.error_message,
                })
        };
        self.export(Signal::Metrics, request, timeout, grpc, outcome)
            .await
    }

    /// One export of any signal: the typed gRPC call and the partial-success reading
    /// are the only parts that differ between signals.
    async fn export<Req: Message, Resp: Message + Default>(
        &self,
        signal: Signal,
        request: Req,
        timeout: Duration,
        grpc: impl AsyncFnOnce(
            Channel,
            tonic::Request<Req>,
            bool,
        ) -> Result<tonic::Response<Resp>, tonic::Status>,
        outcome: impl FnOnce(Resp) -> ExportOutcome,
    ) -> Result<ExportOutcome, ExportError> {
        self.check_signal(signal)?;
        let timeout = timeout.min(self.timeout);
        let fut = async {
            let response = match &self.inner {
                Inner::Grpc {
                    channel,
                    metadata,
                    gzip,
                } => grpc(
                    channel.clone(),
                    grpc_request(request, metadata, timeout),
                    *gzip,
                )
                .await
                .map_err(classify_grpc)?
                .into_inner(),
                Inner::Http { .. } => {
                    let body = self.http_post(request.encode_to_vec()).await?;
                    Resp::decode(body).unwrap_or_default()
                }
            };
            Ok(outcome(response))
        };
        with_timeout(timeout, fut).await
    }

    fn check_signal(&self, signal: Signal) -> Result<(), ExportError> {
        if self.signal == signal {
            Ok(())
        } else {
            Err(ExportError::Permanent(format!(
                "this OTLP client was built for {:?}, not {signal:?}",
                self.signal
            )))
        }
    }

    /// POSTs a protobuf body; returns the response body of a 2xx answer.
    async fn http_post(&self, payload: Vec<u8>) -> Result<Bytes, ExportError> {
        let Inner::Http {
            client,
            url,
            headers,
            gzip,
        } = &self.inner
        else {
            return Err(ExportError::Permanent("not an HTTP client".into()));
        };
        let mut builder = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::USER_AGENT, USER_AGENT);
        let body = if *gzip {
            builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
            gzip_bytes(&payload).map_err(|e| ExportError::Permanent(format!("gzip failed: {e}")))?
        } else {
            payload
        };
        let mut request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExportError::Permanent(format!("building request: {e}")))?;
        request.headers_mut().extend(headers.clone());
        let response = client
            .request(request)
            .await
            .map_err(|e| ExportError::transient(format!("POST {url}: {}", error_chain(&e))))?;
        let status = response.status();
        let retry_after = retry_after_header(response.headers());
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| ExportError::transient(format!("reading response from {url}: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let detail = RpcStatus::decode(body.clone())
            .ok()
            .map(|s| s.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        let message = format!("POST {url}: HTTP {status}: {detail}");
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        ) {
            Err(ExportError::Transient {
                message,
                retry_after,
            })
        } else {
            Err(ExportError::Permanent(message))
        }
    }
}

/// `Retry-After` in seconds (an HTTP date is ignored: the backoff applies), at most
/// [`MAX_RETRY_DELAY`].
fn retry_after_header(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_DELAY))
}

fn grpc_request<T>(message: T, metadata: &MetadataMap, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata.clone();
    request.set_timeout(timeout);
    request
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, ExportError>>,
) -> Result<T, ExportError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| {
            Err(ExportError::transient(format!(
                "no answer within {} ms",
                timeout.as_millis()
            )))
        })
}

/// gRPC codes the OTLP spec calls retryable; RetryInfo's delay when the server sent one.
fn classify_grpc(status: tonic::Status) -> ExportError {
    use tonic::Code;
    let mut message = format!("gRPC {:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(&status) {
        message = format!("{message}: {}", error_chain(source));
    }
    let retry_after = retry_info_delay(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Transient {
            message,
            retry_after,
        },
        // Only retryable when the server says when to come back.
        Code::ResourceExhausted if retry_after.is_some() => ExportError::Transient {
            message,
            retry_after,
        },
        // Throttled without RetryInfo: still back off rather than lose the batch.
        Code::ResourceExhausted => ExportError::Transient {
            message,
            retry_after: None,
        },
        _ => ExportError::Permanent(message),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

fn gzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

fn rustls_config(ca_pem: Option<&[u8]>, tls: bool) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.context("parsing the OTLP certificate PEM")?)
                    .context("adding the OTLP CA certificate")?;
            }
            if roots.is_empty() {
                bail!("the OTLP certificate file holds no certificate");
            }
        }
        // Plain-text endpoints never look at the roots: skip reading the system store.
        None if tls => {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                log::warn!("OTLP: reading system CA certificates: {e}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                log::warn!("OTLP: no system CA certificates found (set --otlp-certificate)");
            }
        }
        None => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `google.rpc.Status`, as carried in gRPC status details and OTLP/HTTP error bodies.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The delay of a `google.rpc.RetryInfo` inside encoded `google.rpc.Status` details, at
/// most [`MAX_RETRY_DELAY`].
fn retry_info_delay(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|a| RetryInfo::decode(a.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| {
            Duration::from_secs(d.seconds.max(0) as u64)
                .saturating_add(Duration::from_nanos(d.nanos.max(0) as u64))
                .min(MAX_RETRY_DELAY)
        })
}

/// Encodes a `google.rpc.Status` with a RetryInfo detail (for test servers).
pub fn encode_retry_info_status(code: i32, message: &str, delay: Duration) -> Vec<u8> {
    RpcStatus {
        code,
        message: message.to_owned(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: RetryInfo {
                retry_delay: Some(ProtoDuration {
                    seconds: delay.as_secs() as i64,
                    nanos: delay.subsec_nanos() as i32,
                }),
            }
            .encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_classified_per_spec() {
        let transient = |code| {
            matches!(
                classify_grpc(tonic::Status::new(code, "x")),
                ExportError::Transient { .. }
            )
        };
        assert!(transient(tonic::Code::Unavailable));
        assert!(transient(tonic::Code::DeadlineExceeded));
        assert!(transient(tonic::Code::Aborted));
        assert!(transient(tonic::Code::ResourceExhausted));
        assert!(!transient(tonic::Code::InvalidArgument));
        assert!(!transient(tonic::Code::Unauthenticated));
        assert!(!transient(tonic::Code::PermissionDenied));
    }

    #[test]
    fn retry_info_delay_is_read_from_status_details() {
        let details = encode_retry_info_status(14, "busy", Duration::from_millis(1500));
        let status =
            tonic::Status::with_details(tonic::Code::Unavailable, "busy", Bytes::from(details));
        match classify_grpc(status) {
            ExportError::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_millis(1500)));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(retry_info_delay(b""), None);
        assert_eq!(retry_info_delay(b"\xff\xff"), None);
    }

    #[test]
    fn huge_server_delays_are_capped() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::RETRY_AFTER,
            u64::MAX.to_string().parse().unwrap(),
        );
        assert_eq!(retry_after_header(&headers), Some(MAX_RETRY_DELAY));
        headers.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(120)));
        // Past u64 (or a date): not a delay in seconds, so the backoff applies.
        headers.insert(
            http::header::RETRY_AFTER,
            "18446744073709551616".parse().unwrap(),
        );
        assert_eq!(retry_after_header(&headers), None);

        // RetryInfo's seconds are an int64: the largest one, plus nanoseconds.
        let details = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration {
                        seconds: i64::MAX,
                        nanos: 999_999_999,
                    }),
                }
                .encode_to_vec(),
            }],
        }
        .encode_to_vec();
        assert_eq!(retry_info_delay(&details), Some(MAX_RETRY_DELAY));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let data = b"hello hello hello hello".repeat(10);
        let packed = gzip_bytes(&data).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }
}
