//! From parsed flags to what the rest of Sonde takes: the [`Action`] to perform, with
//! its validated [`Settings`].

use anyhow::{Result, bail};

use super::{Cli, Command, DbQueryText, OutputFormat, TraceOptions};
use crate::agent::Mode;
use crate::attach::targets::Target;
use crate::config::{self, OtlpSettings, Settings, TraceSettings, Wakeup};

/// What the command line asks for.
pub enum Action {
    /// `sonde config`: print the effective OTLP settings.
    ShowConfig(OtlpSettings),
    /// `sonde doctor`: report what this host allows (and the TLS libraries of `pids`).
    Doctor { json: bool, pids: Vec<u32> },
    /// `sonde doctor --verifier-matrix`: load every program, attach none.
    VerifierMatrix { json: bool },
    /// `sonde attach` / `sonde run`.
    Trace { mode: Mode, settings: Settings },
}

impl Cli {
    /// Resolves the command line against the environment (read through `env`) and the
    /// `--config` file.
    pub fn into_action(self, env: impl Fn(&str) -> Option<String>) -> Result<Action> {
        let (mode, opts) = match self.command {
            Command::Config { otlp } => {
                let otlp = OtlpSettings::load(self.config.as_deref(), otlp.layers(), env)?;
                return Ok(Action::ShowConfig(otlp));
            }
            Command::Doctor {
                json,
                pids,
                verifier_matrix,
            } => {
                return Ok(if verifier_matrix {
                    Action::VerifierMatrix { json }
                } else {
                    Action::Doctor { json, pids }
                });
            }
            Command::Attach {
                pids,
                exes,
                ports,
                opts,
            } => {
                let mut targets: Vec<Target> = pids.into_iter().map(Target::Pid).collect();
                for glob in &exes {
                    targets.push(Target::exe_glob(glob)?);
                }
                targets.extend(ports.into_iter().map(Target::Port));
                if targets.is_empty() {
                    bail!(
                        "nothing to trace: give --pid, --exe or --port (see `sonde attach --help`)"
                    );
                }
                (Mode::Attach(targets), opts)
            }
            Command::Run { opts, command } => (Mode::Run(command), opts),
        };
        let otlp = OtlpSettings::load(self.config.as_deref(), opts.otlp.layers(), env)?;
        let settings = Settings {
            trace: opts.trace_settings(),
            otlp,
        };
        Ok(Action::Trace { mode, settings })
    }
}

impl TraceOptions {
    /// The tracing settings; every number was checked when the flags were parsed.
    pub fn trace_settings(&self) -> TraceSettings {
        let Self {
            output,
            service_name,
            duration,
            capture_bytes,
            request_timeout,
            ring_buffer_bytes,
            wakeup_bytes,
            wakeup_gap_us,
            quiet,
            prometheus_listen,
            ready_file,
            no_inject,
            no_tls,
            no_go_runtime,
            db_query_text,
            hooks,
            empty_probes,
            probe_log,
            otlp: _,
        } = self;
        TraceSettings {
            output: (*output).into(),
            service_name: service_name.clone(),
            duration: *duration,
            capture_bytes: *capture_bytes,
            request_timeout: *request_timeout,
            ring_buffer_bytes: *ring_buffer_bytes,
            wakeup: Wakeup {
                bytes: *wakeup_bytes,
                gap: std::time::Duration::from_micros((*wakeup_gap_us).into()),
            },
            tree_quiet: *quiet,
            prometheus_listen: *prometheus_listen,
            ready_file: ready_file.clone(),
            inject: !no_inject,
            tls: !no_tls,
            go_runtime: !no_go_runtime,
            db_query_text: (*db_query_text).into(),
            hooks: *hooks,
            empty_probes: *empty_probes,
            probe_log: *probe_log,
        }
    }
}

impl From<OutputFormat> for config::OutputFormat {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Tree => Self::Tree,
            OutputFormat::Json => Self::Json,
            OutputFormat::None => Self::None,
        }
    }
}

impl From<DbQueryText> for config::DbQueryText {
    fn from(m: DbQueryText) -> Self {
        match m {
            DbQueryText::Obfuscated => Self::Obfuscated,
            DbQueryText::Raw => Self::Raw,
            DbQueryText::Off => Self::Off,
        }
    }
}
