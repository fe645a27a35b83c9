//! `cargo xtask fuzz`: runs every fuzz target in `fuzz/` for a bounded time.
//!
//! Works on stable Rust without cargo-fuzz: it builds `fuzz/` the way `cargo fuzz build
//! -s none` does (libFuzzer via `libfuzzer-sys`, SanitizerCoverage through stable `-C`
//! flags, `--cfg fuzzing`, debug assertions on, an explicit `--target` so build scripts
//! stay uninstrumented), seeds each corpus with the recorded session fixtures
//! (`testdata/<target>_*.txt`, which the drivers replay as such), then runs
//! each target with `-max_total_time`. A crash fails the command and leaves the input in
//! `fuzz/artifacts/<target>/`. No sanitizer: the parsers are safe Rust, so what is
//! looked for is panics, overflows and runaway memory (`-rss_limit_mb`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::util::{self, exec};

/// The coverage instrumentation `cargo fuzz` uses, all stable flags.
const RUSTFLAGS: [&str; 6] = [
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg=fuzzing",
];

#[derive(Debug, Args)]
pub struct Options {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Run only these targets (default: every file in fuzz/fuzz_targets/).
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// Only build the targets.
    #[arg(long)]
    build_only: bool,
}

pub fn run(opts: Options) -> Result<()> {
    let Options {
        seconds,
        targets,
        build_only,
    } = opts;
    let root = util::workspace_root();
    let fuzz = root.join("fuzz");
    let targets = if targets.is_empty() {
        list_targets(&fuzz)?
    } else {
        targets
    };
    let host = host_triple()?;

    let start = Instant::now();
    let mut build = util::cargo();
    build
        .current_dir(&fuzz)
        .args(["build", "--release", "--bins", "--target", &host])
        .env("RUSTFLAGS", RUSTFLAGS.join(" "));
    println!("xtask fuzz: {}", util::show(&build));
    exec(&mut build)?;
    println!(
        "xtask fuzz: built in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    if build_only {
        return Ok(());
    }

    let bin_dir = fuzz.join("target").join(&host).join("release");
    let corpus = fuzz.join("corpus");
    let testdata = root.join("userspace-agent/src/protocols/db/testdata");

    let mut failed = Vec::new();
    for target in &targets {
        let corpus_dir = corpus.join(target);
        let artifacts = fuzz.join("artifacts").join(target);
        for dir in [&corpus_dir, &artifacts] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        seed(&testdata, target, &corpus_dir)?;
        let mut cmd = Command::new(bin_dir.join(target));
        cmd.arg(format!("-max_total_time={seconds}"))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-max_len=65536")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus_dir);
        println!("xtask fuzz: {target} for {seconds} s");
        if let Err(e) = exec(&mut cmd) {
            eprintln!(
                "xtask fuzz: {target} FAILED: {e:#} (inputs in {})",
                artifacts.display()
            );
            failed.push(target.as_str());
        }
    }
    if failed.is_empty() {
        println!("xtask fuzz: {} targets ran without a crash", targets.len());
        Ok(())
    } else {
        bail!("crashed: {}", failed.join(", "))
    }
}

/// Copies the fixtures `<testdata>/<target>_*.txt` into the target's corpus.
fn seed(testdata: &Path, target: &str, corpus: &Path) -> Result<()> {
    let prefix = format!("{target}_");
    for entry in
        std::fs::read_dir(testdata).with_context(|| format!("reading {}", testdata.display()))?
    {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with(&prefix) && name.ends_with(".txt") {
            let to = corpus.join(format!("seed-{name}"));
            std::fs::copy(&path, &to)
                .with_context(|| format!("copying {} to {}", path.display(), to.display()))?;
        }
    }
    Ok(())
}

/// `fuzz/fuzz_targets/<name>.rs` -> `<name>`, sorted.
fn list_targets(fuzz: &Path) -> Result<Vec<String>> {
    let dir = fuzz.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The host target triple, from `rustc -vV`.
fn host_triple() -> Result<String> {
    let info = util::output(Command::new("rustc").arg("-vV"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no host line")
}
