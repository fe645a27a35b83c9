//! `cargo xtask <command>`: developer tooling for Sonde.
//!
//! One module per subcommand, each with its own `Options`; shared helpers in [`util`].
//! Every command that touches the kernel or apt needs root.

mod bench;
mod bench_db;
mod demo;
mod fidelity;
mod fuzz;
mod microbench;
mod setup;
mod test;
mod util;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Sonde developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prepare this machine (root): clang-19, libbpf, bpftool, nginx, wrk, ... and tracefs.
    Setup(setup::Options),
    /// Start a three-service demo app on loopback, trace it with sonde, print the traces.
    Demo(demo::Options),
    /// What CI runs: fmt and clippy, build sonde, `cargo test --workspace --all-targets`.
    Test(test::Options),
    /// How often the trees are exactly right under concurrency (Go, Python, nginx, Node,
    /// asyncio) against ground truth, and what the Go runtime probes cost.
    Fidelity(fidelity::Options),
    /// Run every fuzz target in fuzz/ for a bounded time (stable Rust, no cargo-fuzz).
    Fuzz(fuzz::Options),
    /// Measure the agent's overhead on nginx with wrk, HTTP and HTTPS (no agent / empty
    /// probes / full).
    Bench(bench::Options),
    /// Run the end-to-end checks on the host kernel and on Debian's 6.1 kernel in QEMU.
    VmTest(vm::Options),
    /// The checks `vm-test` runs on each kernel (started by the guest's /init).
    #[command(hide = true)]
    VmGuest(vm::guest::Options),
}

fn main() -> ExitCode {
    let result: Result<()> = match Cli::parse().command {
        Command::Setup(opts) => setup::run(opts),
        Command::Demo(opts) => demo::run(opts),
        Command::Test(opts) => test::run(opts),
        Command::Bench(opts) => bench::run(opts),
        Command::Fuzz(opts) => fuzz::run(opts),
        Command::Fidelity(opts) => fidelity::run(opts),
        Command::VmTest(opts) => vm::run(opts),
        Command::VmGuest(opts) => vm::guest::run(opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line, without the backtrace anyhow
            // captures when RUST_BACKTRACE is set.
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
