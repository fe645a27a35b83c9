//! `--otlp-*` flags, flattened into `sonde attach`, `sonde run` and `sonde config`, and
//! their conversion into the flag layer of the OTLP settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{
    Compression, FlagLayers, Layer, Protocol, Signal, Source, Sourced, parse_header, parse_timeout,
};

#[derive(Clone, Debug, Default, Args, PartialEq)]
#[command(next_help_heading = "OTLP export")]
pub struct OtlpArgs {
    /// Export spans over OTLP (also on when an endpoint is configured anywhere).
    #[arg(long)]
    pub otlp: bool,
    /// Collector base URL, e.g. http://collector:4318 (OTLP/HTTP appends /v1/traces).
    /// [env: OTEL_EXPORTER_OTLP_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Full URL for traces, used as is. [env: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub otlp_traces_endpoint: Option<String>,
    /// grpc or http/protobuf (default). [env: OTEL_EXPORTER_OTLP_PROTOCOL]
    #[arg(long, value_name = "PROTOCOL", value_parser = Protocol::parse)]
    pub otlp_protocol: Option<Protocol>,
    /// Header sent with every export request, KEY=VALUE; repeatable.
    /// [env: OTEL_EXPORTER_OTLP_HEADERS]
    #[arg(long = "otlp-header", value_name = "KEY=VALUE", value_parser = parse_header)]
    pub otlp_headers: Vec<(String, String)>,
    /// Export timeout in ms (or e.g. 5s), at most 1 hour. [env: OTEL_EXPORTER_OTLP_TIMEOUT]
    #[arg(long, value_name = "MS", value_parser = parse_timeout)]
    pub otlp_timeout: Option<Duration>,
    /// gzip or none. [env: OTEL_EXPORTER_OTLP_COMPRESSION]
    #[arg(long, value_name = "gzip|none", value_parser = Compression::parse)]
    pub otlp_compression: Option<Compression>,
    /// PEM file with the CA certificate(s) for an https:// collector.
    /// [env: OTEL_EXPORTER_OTLP_CERTIFICATE]
    #[arg(long, value_name = "PATH")]
    pub otlp_certificate: Option<PathBuf>,
}

impl OtlpArgs {
    /// The flags as the highest-precedence source of both signals' settings.
    pub fn layers(&self) -> FlagLayers {
        FlagLayers {
            traces: self.layer(Signal::Traces),
            metrics: self.layer(Signal::Metrics),
        }
    }

    fn layer(&self, signal: Signal) -> Layer {
        fn s<T>(v: T, name: &'static str) -> Option<Sourced<T>> {
            Some(Sourced::new(v, Source::Flag(name)))
        }
        Layer {
            enabled: if self.otlp { s(true, "--otlp") } else { None },
            endpoint: self
                .otlp_endpoint
                .clone()
                .and_then(|v| s(v, "--otlp-endpoint")),
            signal_endpoint: match signal {
                Signal::Traces => self
                    .otlp_traces_endpoint
                    .clone()
                    .and_then(|v| s(v, "--otlp-traces-endpoint")),
                Signal::Metrics => None,
            },
            protocol: self.otlp_protocol.and_then(|v| s(v, "--otlp-protocol")),
            headers: if self.otlp_headers.is_empty() {
                None
            } else {
                s(self.otlp_headers.clone(), "--otlp-header")
            },
            timeout: self.otlp_timeout.and_then(|v| s(v, "--otlp-timeout")),
            compression: self
                .otlp_compression
                .and_then(|v| s(v, "--otlp-compression")),
            certificate: self
                .otlp_certificate
                .clone()
                .and_then(|v| s(v, "--otlp-certificate")),
        }
    }
}
