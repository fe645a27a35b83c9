//! Running wrk and reading its `--latency` output.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util;

pub(super) struct WrkRun {
    pub(super) rps: f64,
    pub(super) p99_ms: f64,
    pub(super) errors: u64,
    pub(super) requests: u64,
}

/// wrk, loading its own copy of the libssl it links. The TLS probes are attached to the
/// library file nginx maps, for every process that maps that file: with the system's
/// libssl, wrk's own TLS calls would take the probes' traps too, and count among their
/// runs. A client on another host, as a server's usually are, takes none.
pub(super) struct Wrk {
    /// Where the copy is (`LD_LIBRARY_PATH`); None when wrk links no libssl.
    lib_dir: Option<PathBuf>,
}

impl Wrk {
    /// Copies the libssl wrk links into `dir`.
    pub(super) fn new(dir: &Path) -> Result<Self> {
        let path = std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("wrk"))
                    .find(|p| p.is_file())
            })
            .context("wrk is not on PATH (cargo xtask setup installs it)")?;
        // ldd fails on a static executable: then there is no shared libssl to copy.
        let ldd = Command::new("ldd").arg(&path).output();
        let linked = ldd
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
        let Some((soname, lib)) = linked.as_deref().and_then(linked_libssl) else {
            return Ok(Self { lib_dir: None });
        };
        let lib_dir = dir.join("wrk-lib");
        std::fs::create_dir_all(&lib_dir)?;
        std::fs::copy(lib, lib_dir.join(soname))
            .with_context(|| format!("copying {lib} for wrk"))?;
        Ok(Self {
            lib_dir: Some(lib_dir),
        })
    }

    pub(super) fn run(&self, url: &str, seconds: u32) -> Result<WrkRun> {
        let mut cmd = Command::new("wrk");
        cmd.args(["-t1", "-c16", &format!("-d{seconds}s"), "--latency", url]);
        if let Some(dir) = &self.lib_dir {
            cmd.env("LD_LIBRARY_PATH", dir);
        }
        let out = util::output(&mut cmd)?;
        parse_wrk(&out).with_context(|| format!("parsing wrk output:\n{out}"))
    }
}

/// The libssl an `ldd` listing resolves: its soname and file
/// (`\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f017cc9c000)`).
fn linked_libssl(ldd: &str) -> Option<(&str, &str)> {
    ldd.lines().find_map(|line| {
        let (soname, rest) = line.split_once("=>")?;
        let soname = soname.trim();
        let file = rest.trim().split(" (").next()?.trim();
        (soname.starts_with("libssl.so") && file.starts_with('/')).then_some((soname, file))
    })
}

/// Reads `Requests/sec:`, the `99%` latency line and error lines of `wrk --latency`.
fn parse_wrk(out: &str) -> Result<WrkRun> {
    let mut rps = None;
    let mut p99_ms = None;
    let mut errors = 0;
    let mut requests = 0;
    for line in out.lines().map(str::trim) {
        // "74012 requests in 3.00s, 90.00MB read"
        if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse()?;
        }
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(v.trim().parse::<f64>()?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99_ms = Some(duration_ms(v.trim())?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    match (rps, p99_ms) {
        (Some(rps), Some(p99_ms)) => Ok(WrkRun {
            rps,
            p99_ms,
            errors,
            requests,
        }),
        _ => bail!("no Requests/sec or 99% line"),
    }
}

/// wrk durations: `812.00us`, `1.71ms`, `2.01s`, `1.10m`.
fn duration_ms(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => bail!("unknown unit in {text:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latency_output_is_parsed() {
        let out = "Running 3s test @ http://127.0.0.1:1/1k.bin\n  1 threads and 16 connections\n  \
                   Latency Distribution\n     50%  549.00us\n     75%  700.00us\n     90%    1.01ms\n     \
                   99%    1.71ms\n  74012 requests in 3.00s, 90.00MB read\n  \
                   Socket errors: connect 0, read 2, write 0, timeout 1\n\
                   Requests/sec:  24670.12\nTransfer/sec:     30.06MB\n";
        let run = parse_wrk(out).expect("parses");
        assert!((run.rps - 24670.12).abs() < 1e-6);
        assert!((run.p99_ms - 1.71).abs() < 1e-9);
        assert_eq!(run.errors, 3);
        assert_eq!(run.requests, 74012);
        assert!((duration_ms("812.00us").expect("us") - 0.812).abs() < 1e-9);
        assert!((duration_ms("2.00s").expect("s") - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn libssl_found_in_ldd_output() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffc6b5f2000)\n\
                   \tlibluajit-5.1.so.2 => /lib/x86_64-linux-gnu/libluajit-5.1.so.2 (0x00007f017cd0e000)\n\
                   \tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f017cc9c000)\n\
                   \tlibcrypto.so.3 => /lib/x86_64-linux-gnu/libcrypto.so.3 (0x00007f017c800000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f017cd9a000)\n";
        assert_eq!(
            linked_libssl(ldd),
            Some(("libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3"))
        );
        assert_eq!(linked_libssl("\tlibssl.so.3 => not found\n"), None);
        assert_eq!(linked_libssl("\tnot a dynamic executable\n"), None);
        assert_eq!(linked_libssl(""), None);
    }
}
