//! The standard `OTEL_EXPORTER_OTLP_*` variables.
//!
//! For each setting the per-signal variable (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`)
//! overrides the generic one (`OTEL_EXPORTER_OTLP_TIMEOUT`). `OTEL_TRACES_EXPORTER`
//! (`OTEL_METRICS_EXPORTER`) = `otlp` turns export on, `none` turns it off.
//! Empty variables count as unset, as the spec asks. `OTEL_METRIC_EXPORT_INTERVAL`
//! sets how often metrics are exported.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use super::limits::{parse_metric_export_interval, parse_timeout};
use super::{Compression, Layer, Protocol, Signal, Source, Sourced, parse_headers};

/// `OTEL_METRIC_EXPORT_INTERVAL`'s default, the OpenTelemetry spec's.
const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Every setting's suffix after `OTEL_EXPORTER_OTLP_[SIGNAL_]`.
const SUFFIXES: [&str; 6] = [
    "ENDPOINT",
    "PROTOCOL",
    "HEADERS",
    "TIMEOUT",
    "COMPRESSION",
    "CERTIFICATE",
];

/// The relevant variables, read once through the lookup closure.
#[derive(Clone, Debug, Default)]
pub struct EnvSnapshot {
    vars: Vec<(String, String)>,
}

impl EnvSnapshot {
    pub fn capture(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut names = Vec::new();
        for signal in [Signal::Traces, Signal::Metrics] {
            names.push(format!("OTEL_{}_EXPORTER", signal.env_infix()));
            for s in SUFFIXES {
                names.push(format!("OTEL_EXPORTER_OTLP_{}_{s}", signal.env_infix()));
            }
        }
        names.extend(SUFFIXES.iter().map(|s| format!("OTEL_EXPORTER_OTLP_{s}")));
        names.push("OTEL_METRIC_EXPORT_INTERVAL".to_owned());
        let vars = names
            .into_iter()
            .filter_map(|n| {
                let v = lookup(&n)?;
                (!v.trim().is_empty()).then_some((n, v))
            })
            .collect();
        Self { vars }
    }

    fn get(&self, name: &str) -> Option<(&str, &str)> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// A captured variable's value.
    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name).map(|(_, v)| v.to_owned())
    }

    /// The per-signal variable if set, else the generic one.
    fn setting(&self, signal: Signal, suffix: &str) -> Option<(&str, &str)> {
        self.get(&format!(
            "OTEL_EXPORTER_OTLP_{}_{suffix}",
            signal.env_infix()
        ))
        .or_else(|| self.get(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
    }

    pub fn layer(&self, signal: Signal) -> Result<Layer> {
        fn src(name: &str) -> Source {
            Source::Env(name.to_owned())
        }
        fn parsed<T>(
            found: Option<(&str, &str)>,
            parse: impl Fn(&str) -> Result<T>,
        ) -> Result<Option<Sourced<T>>> {
            found
                .map(|(n, v)| {
                    parse(v)
                        .with_context(|| format!("environment variable {n}"))
                        .map(|v| Sourced::new(v, src(n)))
                })
                .transpose()
        }
        let mut layer = Layer::default();
        let exporter_var = format!("OTEL_{}_EXPORTER", signal.env_infix());
        layer.enabled = parsed(self.get(&exporter_var), |v| {
            // A comma-separated list per spec; Sonde only knows `otlp` and `none`.
            let names: Vec<&str> = v.split(',').map(str::trim).collect();
            if !names.contains(&"otlp")
                && names.iter().any(|n| !matches!(*n, "none" | "console" | ""))
            {
                log::warn!("{exporter_var}={v:?}: Sonde only exports otlp; OTLP export is off");
            }
            Ok(names.contains(&"otlp"))
        })?;
        let per_signal = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.env_infix());
        layer.signal_endpoint = parsed(self.get(&per_signal), |v| Ok(v.trim().to_owned()))?;
        layer.endpoint = parsed(self.get("OTEL_EXPORTER_OTLP_ENDPOINT"), |v| {
            Ok(v.trim().to_owned())
        })?;
        layer.protocol = parsed(self.setting(signal, "PROTOCOL"), Protocol::parse)?;
        layer.headers = parsed(self.setting(signal, "HEADERS"), parse_headers)?;
        layer.timeout = parsed(self.setting(signal, "TIMEOUT"), |v| Ok(parse_timeout(v)?))?;
        layer.compression = parsed(self.setting(signal, "COMPRESSION"), Compression::parse)?;
        layer.certificate = parsed(self.setting(signal, "CERTIFICATE"), |v| {
            Ok(PathBuf::from(v.trim()))
        })?;
        Ok(layer)
    }
}

/// `OTEL_METRIC_EXPORT_INTERVAL` (ms), the OpenTelemetry default being 60 s. A value
/// out of range is ignored with a warning, as the spec asks of numeric variables.
pub fn export_interval(env: impl Fn(&str) -> Option<String>) -> Duration {
    const NAME: &str = "OTEL_METRIC_EXPORT_INTERVAL";
    let Some(text) = env(NAME) else {
        return DEFAULT_METRIC_EXPORT_INTERVAL;
    };
    parse_metric_export_interval(&text).unwrap_or_else(|e| {
        log::warn!(
            "environment variable {NAME}: {e}; using the default, {} ms",
            DEFAULT_METRIC_EXPORT_INTERVAL.as_millis()
        );
        DEFAULT_METRIC_EXPORT_INTERVAL
    })
}
