//! Running wrk and reading its `--latency` output.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util;

pub(super) struct WrkRun {
    pub(super) rps: f64,
    pub(super) p99_ms: f64,
    pub(super) errors: u64,
    pub(super) requests: u64,
}

pub(super) fn wrk(url: &str, seconds: u32) -> Result<WrkRun> {
    let out = util::output(Command::new("wrk").args([
        "-t1",
        "-c16",
        &format!("-d{seconds}s"),
        "--latency",
        url,
    ]))?;
    parse_wrk(&out).with_context(|| format!("parsing wrk output:\n{out}"))
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
}
