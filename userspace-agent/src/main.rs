//! `sonde`: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use sonde::agent::{self, Ended, Mode};
use sonde::attach::targets::Target;
use sonde::cli::{Cli, Command};
use sonde::config::{self, Config};

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
    let env = |name: &str| std::env::var(name).ok();
    let (mode, opts) = match cli.command {
        Command::Config { otlp } => {
            let config = Config::load(cli.config.as_deref(), &otlp, env)?;
            print!("{}", config::display::render(&config));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Doctor {
            json,
            verifier_matrix: true,
        } => {
            let matrix = sonde::programs::load_every_program()?;
            sonde::programs::print_matrix(&matrix, json, &mut std::io::stdout())?;
            return Ok(if matrix.all_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
        Command::Doctor {
            json,
            verifier_matrix: false,
        } => {
            let report = sonde::doctor::probe_host();
            sonde::doctor::print_report(&report, json, &mut std::io::stdout())?;
            return Ok(if report.verdict.can_trace {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
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
                anyhow::bail!(
                    "nothing to trace: give --pid, --exe or --port (see `sonde attach --help`)"
                );
            }
            (Mode::Attach(targets), opts)
        }
        Command::Run { opts, command } => (Mode::Run(command), opts),
    };
    let config = Config::load(cli.config.as_deref(), &opts.otlp, env)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(match runtime.block_on(agent::run(mode, opts, config))? {
        Ended::Signal | Ended::Duration => ExitCode::SUCCESS,
        Ended::Child(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
    })
}
