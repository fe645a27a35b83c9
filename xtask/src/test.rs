//! `cargo xtask test`: what CI runs.
//!
//! 1. `cargo fmt --all -- --check`, `clang-format-19 --dry-run --Werror` on the probes' C
//!    sources and `cargo clippy --workspace --all-targets -- -D warnings`
//!    (skipped with `--no-lint`); a failure is reported but does not stop the tests;
//! 2. `cargo build -p sonde` (debug); a failure stops here;
//! 3. `cargo test --workspace --all-targets [ARGS...]` with `SONDE_BIN` set to that binary,
//!    so the end-to-end tests in `tests/` run the agent just built;
//! 4. without ARGS: the suites about capturing socket data once more with
//!    `--hooks syscall-tracepoints` (`SONDE_TEST_HOOKS`), so the family every kernel has
//!    stays tested on hosts whose default is the socket-layer tracepoints.
//!
//! Ends with one line per step and exits non-zero if any step failed.

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use crate::util::{self, exec};

#[derive(Debug, Args)]
pub struct Options {
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    no_lint: bool,
    /// Passed to `cargo test` as is, e.g. `-- -p sonde -- --test-threads=1`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// The end-to-end suites run a second time with `--hooks syscall-tracepoints`: every
/// traffic shape, client, server, database and the propagation chain.
const SYSCALL_HOOK_SUITES: &[&str] = &[
    "http1_servers",
    "http1_clients",
    "http1_shapes",
    "robustness",
    "databases",
    "propagation_chain",
];

struct Step {
    name: &'static str,
    outcome: Result<()>,
    secs: f64,
}

fn step(name: &'static str, steps: &mut Vec<Step>, f: impl FnOnce() -> Result<()>) -> bool {
    println!("xtask test: ── {name} ──");
    let start = Instant::now();
    let outcome = f();
    let ok = outcome.is_ok();
    if let Err(e) = &outcome {
        eprintln!("xtask test: {name} FAILED: {e:#}");
    }
    steps.push(Step {
        name,
        outcome,
        secs: start.elapsed().as_secs_f64(),
    });
    ok
}

pub fn run(opts: Options) -> Result<()> {
    let Options { no_lint, args } = opts;
    let root = util::workspace_root();
    let cargo = |args: &[&str]| {
        let mut cmd = util::cargo();
        cmd.current_dir(&root).args(args);
        println!("xtask test: {}", util::show(&cmd));
        cmd
    };
    let mut steps = Vec::new();

    if !no_lint {
        step("fmt", &mut steps, || {
            exec(&mut cargo(&["fmt", "--all", "--", "--check"]))
        });
        step("clang-format", &mut steps, || {
            // The probes' own C sources (vmlinux.h is generated, not ours).
            let files = util::output(std::process::Command::new("git").current_dir(&root).args([
                "ls-files",
                "ebpf-probes/*.c",
                "ebpf-probes/*.h",
            ]))?;
            let mut cmd = std::process::Command::new("clang-format-19");
            cmd.current_dir(&root).args(["--dry-run", "--Werror"]);
            cmd.args(files.lines().filter(|f| !f.ends_with("vmlinux.h")));
            exec(&mut cmd)
        });
        step("clippy", &mut steps, || {
            exec(&mut cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        });
    }

    let mut sonde = None;
    let built = step("build sonde", &mut steps, || {
        let path = util::build_sonde(false)?;
        println!("xtask test: SONDE_BIN={}", path.display());
        sonde = Some(path);
        Ok(())
    });
    if let (true, Some(sonde)) = (built, sonde) {
        step("cargo test", &mut steps, || {
            let mut cmd: Command = cargo(&["test", "--workspace", "--all-targets"]);
            cmd.args(&args).env("SONDE_BIN", &sonde);
            if !args.is_empty() {
                println!("xtask test: extra arguments: {}", args.join(" "));
            }
            exec(&mut cmd)
        });
        if args.is_empty() {
            step("cargo test (syscall hooks)", &mut steps, || {
                let mut cmd: Command = cargo(&["test", "-p", "sonde-e2e"]);
                for suite in SYSCALL_HOOK_SUITES {
                    cmd.args(["--test", suite]);
                }
                cmd.env("SONDE_BIN", &sonde)
                    .env("SONDE_TEST_HOOKS", "syscall-tracepoints");
                exec(&mut cmd)
            });
        }
    }

    println!("xtask test: summary");
    for Step {
        name,
        outcome,
        secs,
    } in &steps
    {
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!("xtask test:   {name:<28} {verdict:<7} {secs:>6.1} s");
    }
    if !built {
        println!("xtask test:   cargo test                   skipped (sonde did not build)");
    }
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| s.outcome.is_err())
        .map(|s| s.name)
        .collect();
    if failed.is_empty() {
        println!("xtask test: all steps passed");
        Ok(())
    } else {
        bail!("failed: {}", failed.join(", "))
    }
}
