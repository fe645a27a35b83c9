//! `sonde`: parse the command line, build the settings, run, map the outcome to an
//! exit code.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use sonde::agent::{self, Ended};
use sonde::cli::{Action, Cli};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sonde: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    Ok(match cli.into_action(|name| std::env::var(name).ok())? {
        Action::ShowConfig(otlp) => {
            print!("{}", sonde::config::display::render(&otlp));
            ExitCode::SUCCESS
        }
        Action::VerifierMatrix { json } => {
            let matrix = sonde::programs::load_every_program()?;
            sonde::programs::print_matrix(&matrix, json, &mut std::io::stdout())?;
            success_or_2(matrix.all_ok())
        }
        Action::Doctor { json, pids } => {
            let mut report = sonde::doctor::probe_host();
            report.processes = sonde::doctor::tls::inspect(&pids);
            sonde::doctor::print_report(&report, json, &mut std::io::stdout())?;
            success_or_2(report.verdict.can_trace)
        }
        Action::Trace { mode, settings } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            match runtime.block_on(agent::run(mode, settings))? {
                Ended::Signal | Ended::Duration => ExitCode::SUCCESS,
                Ended::Child(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            }
        }
    })
}

/// Exit status 2 says "this host cannot do it" (doctor, verifier matrix).
fn success_or_2(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
