//! Settings: what `sonde` runs with, validated before anything is loaded or attached.
//!
//! [`Settings`] is the one value the agent takes: [`TraceSettings`] (how to trace; from
//! flags) and [`OtlpSettings`] (where to export; command-line flags over `OTEL_*`
//! environment variables over the `--config` TOML file over built-in defaults). This
//! module knows nothing of clap: `cli` turns its flags into these types, never the
//! reverse.
//!
//! Each OTLP source is read into a [`Layer`] (every setting optional) and the layers
//! are merged per setting, so every resolved value remembers its [`Source`] for
//! `sonde config`. Environment variables are read through a lookup closure, so tests
//! never touch the process environment. Every number, whatever its source, goes through
//! one parser in [`limits`], which documents the accepted ranges and turns anything
//! else into an error instead of a panic.

pub mod display;
pub mod env;
pub mod file;
pub mod limits;
mod otlp;
mod trace;

use std::fmt;
use std::path::PathBuf;

pub use limits::{ValueError, parse_timeout};
pub use otlp::{
    Compression, DEFAULT_TIMEOUT, FlagLayers, Layer, OtlpConfig, OtlpSettings, Protocol, Signal,
    parse_header, parse_headers, signal_url,
};
pub use trace::{DbQueryText, OutputFormat, TraceSettings, Wakeup};

/// Everything `sonde attach` and `sonde run` need, validated (built by `cli`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub trace: TraceSettings,
    pub otlp: OtlpSettings,
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The config file (its path).
    File(PathBuf),
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag (its name, e.g. `--otlp-endpoint`).
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// A resolved value with its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }

    fn default(value: T) -> Self {
        Self::new(value, Source::Default)
    }
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
