//! OTLP exporter settings: one [`Layer`] per source, merged per setting into an
//! [`OtlpConfig`] per signal.
//!
//! Endpoint rules follow the OpenTelemetry exporter specification:
//! - the generic endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `--otlp-endpoint`,
//!   `endpoint = ..`) is a base URL: over OTLP/HTTP the signal path (`/v1/traces`,
//!   `/v1/metrics`) is appended;
//! - the per-signal endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//!   `--otlp-traces-endpoint`, `traces_endpoint = ..`) is used exactly as given;
//! - within one source the per-signal setting wins over the generic one; across
//!   sources the precedence is flags > env > file > default.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Source, Sourced, env, file};

/// The telemetry signal an exporter carries: decides the OTLP/HTTP path and which
/// per-signal variables apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// `TRACES` / `METRICS`, as in `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub fn env_infix(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }

    /// The OTLP/HTTP path appended to a generic endpoint.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

/// OTLP transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    /// The OTel spec's names: `grpc`, `http/protobuf`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => bail!("OTLP protocol http/json is not supported (use http/protobuf)"),
            other => bail!("unknown OTLP protocol {other:?} (expected grpc or http/protobuf)"),
        }
    }

    /// The spec's default endpoint for this protocol.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        })
    }
}

/// Payload compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "gzip" => Ok(Compression::Gzip),
            "none" | "" => Ok(Compression::None),
            other => bail!("unknown OTLP compression {other:?} (expected gzip or none)"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        })
    }
}

/// The spec's default export timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One source's OTLP settings for one signal, every one optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layer {
    /// Explicit on/off (`--otlp`, `enabled = ..`, `OTEL_TRACES_EXPORTER`).
    pub enabled: Option<Sourced<bool>>,
    /// Generic base endpoint (the signal path is appended over HTTP).
    pub endpoint: Option<Sourced<String>>,
    /// Per-signal endpoint, used as is.
    pub signal_endpoint: Option<Sourced<String>>,
    pub protocol: Option<Sourced<Protocol>>,
    pub headers: Option<Sourced<Vec<(String, String)>>>,
    pub timeout: Option<Sourced<Duration>>,
    pub compression: Option<Sourced<Compression>>,
    pub certificate: Option<Sourced<PathBuf>>,
}

/// Resolved OTLP exporter settings for one signal.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    pub signal: Signal,
    /// Whether Sonde exports over OTLP at all (otherwise only stdout output).
    pub enabled: Sourced<bool>,
    /// The full URL requests go to (for HTTP, with the signal path).
    pub endpoint: Sourced<String>,
    pub protocol: Sourced<Protocol>,
    pub headers: Sourced<Vec<(String, String)>>,
    pub timeout: Sourced<Duration>,
    pub compression: Sourced<Compression>,
    /// PEM file with the CA certificate(s) that sign the collector's certificate.
    pub certificate: Option<Sourced<PathBuf>>,
}

impl OtlpConfig {
    /// Defaults only: enabled, http/protobuf to `http://localhost:4318/v1/<signal>`.
    pub fn defaults(signal: Signal) -> Self {
        Self::resolve(signal, &[]).expect("defaults always resolve")
    }

    /// Convenience for code and tests: enabled, given endpoint (generic, spec rules
    /// apply) and protocol, defaults otherwise.
    pub fn for_endpoint(signal: Signal, endpoint: &str, protocol: Protocol) -> Result<Self> {
        let src = Source::Default;
        Self::resolve(
            signal,
            &[Layer {
                endpoint: Some(Sourced::new(endpoint.to_owned(), src.clone())),
                protocol: Some(Sourced::new(protocol, src)),
                ..Layer::default()
            }],
        )
    }

    /// Merges layers, highest precedence first.
    pub fn resolve(signal: Signal, layers: &[Layer]) -> Result<Self> {
        fn pick<T: Clone>(
            layers: &[Layer],
            f: impl Fn(&Layer) -> &Option<Sourced<T>>,
        ) -> Option<Sourced<T>> {
            layers.iter().find_map(|l| f(l).clone())
        }
        let protocol = pick(layers, |l| &l.protocol)
            .unwrap_or_else(|| Sourced::default(Protocol::HttpProtobuf));
        // The highest source that names an endpoint decides; inside it the
        // per-signal endpoint wins.
        let configured = layers.iter().find_map(|l| {
            l.signal_endpoint
                .clone()
                .map(|e| (e, true))
                .or_else(|| l.endpoint.clone().map(|e| (e, false)))
        });
        let endpoint_configured = configured.is_some();
        let endpoint = match configured {
            Some((e, true)) => {
                validate_url(&e.value)
                    .with_context(|| format!("OTLP endpoint from {}", e.source))?;
                e
            }
            Some((e, false)) => {
                validate_url(&e.value)
                    .with_context(|| format!("OTLP endpoint from {}", e.source))?;
                Sourced::new(signal_url(&e.value, protocol.value, signal), e.source)
            }
            None => Sourced::default(signal_url(
                protocol.value.default_endpoint(),
                protocol.value,
                signal,
            )),
        };
        let enabled = pick(layers, |l| &l.enabled).unwrap_or_else(|| {
            Sourced::new(
                endpoint_configured,
                layers
                    .iter()
                    .find_map(|l| l.signal_endpoint.as_ref().or(l.endpoint.as_ref()))
                    .map_or(Source::Default, |e| e.source.clone()),
            )
        });
        Ok(Self {
            signal,
            enabled,
            endpoint,
            protocol,
            headers: pick(layers, |l| &l.headers).unwrap_or_else(|| Sourced::default(Vec::new())),
            timeout: pick(layers, |l| &l.timeout)
                .unwrap_or_else(|| Sourced::default(DEFAULT_TIMEOUT)),
            compression: pick(layers, |l| &l.compression)
                .unwrap_or_else(|| Sourced::default(Compression::None)),
            certificate: pick(layers, |l| &l.certificate),
        })
    }

    /// True when requests go over TLS (`https://` endpoint).
    pub fn is_tls(&self) -> bool {
        self.endpoint.value.starts_with("https://")
    }
}

/// The URL for `signal` from a generic endpoint: HTTP appends the signal path to the
/// base path (avoiding a double slash); gRPC uses the endpoint as is.
pub fn signal_url(base: &str, protocol: Protocol, signal: Signal) -> String {
    match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}{}", base.trim_end_matches('/'), signal.http_path()),
    }
}

fn validate_url(url: &str) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => bail!("URL {url:?} must start with http:// or https://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        bail!("URL {url:?} has no host");
    }
    Ok(())
}

/// Parses an OTLP headers list: `k1=v1,k2=v2` (W3C baggage-like), keys and values
/// percent-decoded and trimmed.
pub fn parse_headers(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in s.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        out.push(parse_header(entry)?);
    }
    Ok(out)
}

/// One `key=value` header (value percent-decoded; `=` inside the value is kept).
pub fn parse_header(entry: &str) -> Result<(String, String)> {
    let Some((k, v)) = entry.split_once('=') else {
        bail!("header {entry:?} is not key=value");
    };
    let key = percent_decode(k.trim())?;
    if key.is_empty() {
        bail!("header {entry:?} has an empty key");
    }
    http::HeaderName::from_bytes(key.as_bytes())
        .with_context(|| format!("header name {key:?} is not a valid HTTP header name"))?;
    let value = percent_decode(v.trim())?;
    http::HeaderValue::from_str(&value)
        .with_context(|| format!("value of header {key:?} is not a valid HTTP header value"))?;
    Ok((key, value))
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .with_context(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).with_context(|| format!("{s:?} does not decode to UTF-8"))
}

/// The `--otlp-*` flags as one layer per signal (`cli` builds them from its flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlagLayers {
    pub traces: Layer,
    pub metrics: Layer,
}

impl FlagLayers {
    fn get(&self, signal: Signal) -> &Layer {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
    }
}

/// The OTLP side of the settings: where they came from, the traces exporter, and what
/// the metrics exporter resolves from the same sources.
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    /// The `--config` file, if one was given.
    pub file: Option<PathBuf>,
    /// The traces exporter.
    pub traces: OtlpConfig,
    /// How often span metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`).
    pub metric_export_interval: Duration,
    sources: Sources,
}

/// The raw sources, kept so other signals (metrics) resolve from the same inputs.
#[derive(Clone, Debug)]
struct Sources {
    file: Option<(PathBuf, file::FileConfig)>,
    env: env::EnvSnapshot,
    flags: FlagLayers,
}

impl OtlpSettings {
    /// Reads the config file (if any), the environment through `env_lookup`, and the
    /// flag layers, and resolves the traces exporter settings.
    pub fn load(
        config_file: Option<&Path>,
        flags: FlagLayers,
        env_lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let file = match config_file {
            Some(path) => Some((path.to_owned(), file::FileConfig::read(path)?)),
            None => None,
        };
        let env = env::EnvSnapshot::capture(env_lookup);
        let metric_export_interval = env::export_interval(|name| env.value(name));
        let sources = Sources { file, env, flags };
        let traces = sources.resolve(Signal::Traces)?;
        Ok(Self {
            file: config_file.map(Path::to_owned),
            traces,
            metric_export_interval,
            sources,
        })
    }

    /// The OTLP settings for another signal, from the same sources (for the metrics
    /// exporter: `/v1/metrics`, `OTEL_EXPORTER_OTLP_METRICS_*`).
    pub fn for_signal(&self, signal: Signal) -> Result<OtlpConfig> {
        self.sources.resolve(signal)
    }
}

impl Sources {
    fn resolve(&self, signal: Signal) -> Result<OtlpConfig> {
        let mut layers = vec![self.flags.get(signal).clone(), self.env.layer(signal)?];
        if let Some((path, file)) = &self.file {
            layers.push(
                file.layer(path, signal)
                    .with_context(|| format!("config file {}", path.display()))?,
            );
        }
        OtlpConfig::resolve(signal, &layers)
    }
}
