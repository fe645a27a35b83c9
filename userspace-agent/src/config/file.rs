//! The `--config` TOML file:
//!
//! ```toml
//! [otlp]
//! enabled = true                      # optional: on by default when an endpoint is set
//! endpoint = "http://collector:4318"  # base URL; /v1/traces is appended for HTTP
//! # traces_endpoint = "http://collector:4318/v1/traces"  # used as is
//! protocol = "http/protobuf"          # or "grpc"
//! headers = { "x-api-key" = "secret" } # or "k1=v1,k2=v2"
//! timeout = 10000                     # ms, or "10s"
//! compression = "gzip"                # or "none"
//! certificate = "ca.pem"              # relative to this file's directory
//! ```
//!
//! Unknown keys are errors, so a typo does not silently fall back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::limits::parse_timeout;
use super::{Compression, Layer, Protocol, Signal, Source, Sourced, parse_header, parse_headers};

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub otlp: FileOtlp,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileOtlp {
    pub enabled: Option<bool>,
    pub endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub headers: Option<FileHeaders>,
    pub timeout: Option<FileTimeout>,
    pub compression: Option<String>,
    pub certificate: Option<PathBuf>,
}

/// `headers` as a table, a `k=v,..` string, or a list of `k=v` strings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FileHeaders {
    Table(BTreeMap<String, String>),
    List(Vec<String>),
    Str(String),
}

/// `timeout` as milliseconds or a string with a unit.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FileTimeout {
    Millis(u64),
    Str(String),
}

impl FileConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// The settings for `signal`; relative certificate paths are taken from the
    /// directory of the file at `path`.
    pub fn layer(&self, path: &Path, signal: Signal) -> Result<Layer> {
        let o = &self.otlp;
        let src = || Source::File(path.to_owned());
        let sourced = |v| Sourced::new(v, src());
        let signal_endpoint = match signal {
            Signal::Traces => &o.traces_endpoint,
            Signal::Metrics => &o.metrics_endpoint,
        };
        let headers = match &o.headers {
            None => None,
            Some(FileHeaders::Table(t)) => Some(
                t.iter()
                    .map(|(k, v)| parse_header(&format!("{k}={v}")))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(FileHeaders::List(l)) => Some(
                l.iter()
                    .map(|e| parse_header(e))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(FileHeaders::Str(s)) => Some(parse_headers(s)?),
        };
        let timeout = match &o.timeout {
            None => None,
            Some(FileTimeout::Millis(ms)) => {
                Some(parse_timeout(&ms.to_string()).context("[otlp] timeout")?)
            }
            Some(FileTimeout::Str(s)) => Some(parse_timeout(s).context("[otlp] timeout")?),
        };
        let certificate = o.certificate.as_ref().map(|c| {
            if c.is_relative() {
                path.parent().unwrap_or(Path::new(".")).join(c)
            } else {
                c.clone()
            }
        });
        Ok(Layer {
            enabled: o.enabled.map(sourced),
            endpoint: o.endpoint.clone().map(|v| Sourced::new(v, src())),
            signal_endpoint: signal_endpoint.clone().map(|v| Sourced::new(v, src())),
            protocol: o
                .protocol
                .as_deref()
                .map(Protocol::parse)
                .transpose()?
                .map(|v| Sourced::new(v, src())),
            headers: headers.map(|v| Sourced::new(v, src())),
            timeout: timeout.map(|v| Sourced::new(v, src())),
            compression: o
                .compression
                .as_deref()
                .map(Compression::parse)
                .transpose()?
                .map(|v| Sourced::new(v, src())),
            certificate: certificate.map(|v| Sourced::new(v, src())),
        })
    }
}
