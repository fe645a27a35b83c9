//! What each numeric setting accepts, and the one parser per setting that checks it.
//!
//! A flag (through clap), an environment variable and the config file all go through
//! the same parser, so a value is never accepted from one source and refused from
//! another. Nothing here panics: NaN, infinities, negatives, zero where it means
//! nothing, and values past the maximum are a [`ValueError`] that shows the value and
//! the accepted range; the caller adds which flag, variable or file key it came from.
//!
//! | setting | accepted |
//! |---|---|
//! | `--duration` | 0 to 31 536 000 s (365 days); 0 detaches right after attaching |
//! | `--request-timeout` | 0.001 to 86 400 s (1 day) |
//! | `--quiet-ms` | 0 to 3 600 000 ms (1 hour) |
//! | `--capture-bytes` | 64 to 4096 |
//! | `--ring-buffer-mib` | a power of two, 1 to 2048 |
//! | `--wakeup-bytes` | 1024 up to half the ring buffer (that bound is checked when the probes load) |
//! | `--wakeup-gap-us` | 0 to 1 000 000 µs (1 s) |
//! | `--otlp-timeout`, `OTEL_EXPORTER_OTLP_[TRACES_\|METRICS_]TIMEOUT`, `[otlp] timeout` | more than 0, at most 3 600 000 ms (1 hour) |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | 1 to 86 400 000 ms (1 day); otherwise a warning and the default (60 s), as the OpenTelemetry spec asks |
//!
//! The maxima are far beyond any useful value; they exist so that every duration can be
//! added to a clock reading without overflowing.

use std::fmt;
use std::time::Duration;

/// A value a setting does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} {problem}; accepted: {accepted}")]
pub struct ValueError {
    /// The value as given.
    pub value: String,
    pub problem: Problem,
    /// The accepted range, in words.
    pub accepted: &'static str,
}

/// What is wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    NotANumber,
    NotAWholeNumber,
    NotFinite,
    Negative,
    Zero,
    BelowMinimum,
    AboveMaximum,
    NotAPowerOfTwo,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::NotANumber => "is not a number",
            Problem::NotAWholeNumber => "is not a whole number",
            Problem::NotFinite => "is not finite",
            Problem::Negative => "is negative",
            Problem::Zero => "is zero",
            Problem::BelowMinimum => "is below the minimum",
            Problem::AboveMaximum => "is above the maximum",
            Problem::NotAPowerOfTwo => "is not a power of two",
        })
    }
}

/// One setting's range (inclusive) and how errors describe it.
struct Bounds<T> {
    min: T,
    max: T,
    accepted: &'static str,
}

const DURATION: Bounds<f64> = Bounds {
    min: 0.0,
    max: 365.0 * 86_400.0,
    accepted: "0 to 31536000 seconds (365 days)",
};
const REQUEST_TIMEOUT: Bounds<f64> = Bounds {
    min: 0.001,
    max: 86_400.0,
    accepted: "0.001 to 86400 seconds (1 day)",
};
const QUIET_MS: Bounds<u64> = Bounds {
    min: 0,
    max: 3_600_000,
    accepted: "0 to 3600000 ms (1 hour)",
};
const CAPTURE_BYTES: Bounds<u64> = Bounds {
    min: 64,
    max: 4096,
    accepted: "64 to 4096 bytes",
};
const RING_BUFFER_MIB: Bounds<u64> = Bounds {
    min: 1,
    max: 2048,
    accepted: "a power of two from 1 to 2048 MiB",
};
const WAKEUP_BYTES: Bounds<u64> = Bounds {
    min: 1024,
    max: u32::MAX as u64,
    accepted: "1024 bytes up to half the ring buffer (--ring-buffer-mib)",
};
const WAKEUP_GAP_US: Bounds<u64> = Bounds {
    min: 0,
    max: 1_000_000,
    accepted: "0 to 1000000 µs (1 second)",
};
/// In milliseconds; the lower bound is "more than zero" (checked apart).
const OTLP_TIMEOUT_MS: Bounds<f64> = Bounds {
    min: 0.0,
    max: 3_600_000.0,
    accepted: "more than 0 and at most 3600000 ms (1 hour); a bare number is ms, \
               or give a unit: 250ms, 10s, 1m",
};
const METRIC_EXPORT_INTERVAL_MS: Bounds<u64> = Bounds {
    min: 1,
    max: 86_400_000,
    accepted: "1 to 86400000 ms (1 day)",
};

/// The longest OTLP export timeout, for code that must stay past it.
pub const MAX_OTLP_TIMEOUT: Duration = Duration::from_secs(3600);

/// `--duration`: seconds, fractions allowed.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    seconds(s, &DURATION, true)
}

/// `--request-timeout`: seconds, fractions allowed.
pub fn parse_request_timeout(s: &str) -> Result<Duration, ValueError> {
    seconds(s, &REQUEST_TIMEOUT, false)
}

/// `--quiet-ms`.
pub fn parse_quiet_ms(s: &str) -> Result<Duration, ValueError> {
    whole(s, &QUIET_MS).map(Duration::from_millis)
}

/// `--capture-bytes`.
pub fn parse_capture_bytes(s: &str) -> Result<u32, ValueError> {
    whole_u32(s, &CAPTURE_BYTES)
}

/// `--ring-buffer-mib`, returned in bytes.
pub fn parse_ring_buffer_mib(s: &str) -> Result<u32, ValueError> {
    let mib = whole_u32(s, &RING_BUFFER_MIB)?;
    if !mib.is_power_of_two() {
        return Err(error(s, Problem::NotAPowerOfTwo, &RING_BUFFER_MIB));
    }
    // At most 2048 << 20 = 2^31: fits.
    Ok(mib << 20)
}

/// `--wakeup-bytes`.
pub fn parse_wakeup_bytes(s: &str) -> Result<u32, ValueError> {
    whole_u32(s, &WAKEUP_BYTES)
}

/// `--wakeup-gap-us`, in µs (its default is a `u32` constant the probes share).
pub fn parse_wakeup_gap_us(s: &str) -> Result<u32, ValueError> {
    whole_u32(s, &WAKEUP_GAP_US)
}

/// An OTLP export timeout: a bare number is milliseconds (as in
/// `OTEL_EXPORTER_OTLP_TIMEOUT`); `ms`, `s` and `m` suffixes are accepted too.
pub fn parse_timeout(s: &str) -> Result<Duration, ValueError> {
    let text = s.trim();
    let (num, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1.0)
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| error(s, Problem::NotANumber, &OTLP_TIMEOUT_MS))?;
    // A finite number that overflows once in ms is simply too large.
    let ms = match n * unit_ms {
        ms if n.is_finite() && ms.is_infinite() => f64::MAX,
        ms => ms,
    };
    let ms = checked_f64(s, ms, &OTLP_TIMEOUT_MS, false)?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// `OTEL_METRIC_EXPORT_INTERVAL` (ms).
pub fn parse_metric_export_interval(s: &str) -> Result<Duration, ValueError> {
    whole(s, &METRIC_EXPORT_INTERVAL_MS).map(Duration::from_millis)
}

fn error<T>(s: &str, problem: Problem, bounds: &Bounds<T>) -> ValueError {
    ValueError {
        value: s.trim().to_owned(),
        problem,
        accepted: bounds.accepted,
    }
}

fn seconds(s: &str, bounds: &Bounds<f64>, zero_ok: bool) -> Result<Duration, ValueError> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| error(s, Problem::NotANumber, bounds))?;
    checked_f64(s, n, bounds, zero_ok).map(Duration::from_secs_f64)
}

/// `n` if finite and inside `bounds`; the checks keep `Duration::from_secs_f64` and
/// clock arithmetic from panicking.
fn checked_f64(s: &str, n: f64, bounds: &Bounds<f64>, zero_ok: bool) -> Result<f64, ValueError> {
    let problem = if n.is_nan() {
        Problem::NotANumber
    } else if n.is_infinite() {
        Problem::NotFinite
    } else if n < 0.0 {
        Problem::Negative
    } else if n == 0.0 && !zero_ok {
        Problem::Zero
    } else if n < bounds.min {
        Problem::BelowMinimum
    } else if n > bounds.max {
        Problem::AboveMaximum
    } else {
        return Ok(n);
    };
    Err(error(s, problem, bounds))
}

fn whole(s: &str, bounds: &Bounds<u64>) -> Result<u64, ValueError> {
    use std::num::IntErrorKind;
    // i128 holds every u64 and tells a negative number from garbage.
    let problem = match s.trim().parse::<i128>() {
        Ok(n) if n < 0 => Problem::Negative,
        Ok(n) => match u64::try_from(n) {
            Ok(0) if bounds.min > 0 => Problem::Zero,
            Ok(n) if n < bounds.min => Problem::BelowMinimum,
            Ok(n) if n <= bounds.max => return Ok(n),
            _ => Problem::AboveMaximum,
        },
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => Problem::AboveMaximum,
        Err(e) if *e.kind() == IntErrorKind::NegOverflow => Problem::Negative,
        Err(_) if s.trim().parse::<f64>().is_ok() => Problem::NotAWholeNumber,
        Err(_) => Problem::NotANumber,
    };
    Err(error(s, problem, bounds))
}

fn whole_u32(s: &str, bounds: &Bounds<u64>) -> Result<u32, ValueError> {
    let n = whole(s, bounds)?;
    u32::try_from(n).map_err(|_| error(s, Problem::AboveMaximum, bounds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: fmt::Debug>(r: Result<T, ValueError>) -> String {
        r.expect_err("the value must be refused").to_string()
    }

    #[test]
    fn durations_refuse_what_would_panic_or_mean_nothing() {
        let range = "accepted: 0 to 31536000 seconds (365 days)";
        assert_eq!(
            message(parse_duration("inf")),
            format!("\"inf\" is not finite; {range}")
        );
        assert_eq!(
            message(parse_duration("-inf")),
            format!("\"-inf\" is not finite; {range}")
        );
        assert_eq!(
            message(parse_duration("NaN")),
            format!("\"NaN\" is not a number; {range}")
        );
        assert_eq!(
            message(parse_duration("1e30")),
            format!("\"1e30\" is above the maximum; {range}")
        );
        assert_eq!(
            message(parse_duration("-1")),
            format!("\"-1\" is negative; {range}")
        );
        assert_eq!(
            message(parse_duration("soon")),
            format!("\"soon\" is not a number; {range}")
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(
            parse_duration("31536000"),
            Ok(Duration::from_secs(31_536_000))
        );

        let range = "accepted: 0.001 to 86400 seconds (1 day)";
        assert_eq!(
            message(parse_request_timeout("0")),
            format!("\"0\" is zero; {range}")
        );
        assert_eq!(
            message(parse_request_timeout("0.0001")),
            format!("\"0.0001\" is below the minimum; {range}")
        );
        assert_eq!(
            message(parse_request_timeout("86401")),
            format!("\"86401\" is above the maximum; {range}")
        );
        assert_eq!(
            message(parse_request_timeout("infinity")),
            format!("\"infinity\" is not finite; {range}")
        );
        assert_eq!(parse_request_timeout("30"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn otlp_timeouts_are_bounded_in_every_unit() {
        let range = "accepted: more than 0 and at most 3600000 ms (1 hour); a bare number \
                     is ms, or give a unit: 250ms, 10s, 1m";
        assert_eq!(
            message(parse_timeout("1e30")),
            format!("\"1e30\" is above the maximum; {range}")
        );
        assert_eq!(
            message(parse_timeout("1e30s")),
            format!("\"1e30s\" is above the maximum; {range}")
        );
        assert_eq!(
            message(parse_timeout("1e308m")),
            format!("\"1e308m\" is above the maximum; {range}")
        );
        assert_eq!(
            message(parse_timeout("61m")),
            format!("\"61m\" is above the maximum; {range}")
        );
        assert_eq!(
            message(parse_timeout("0")),
            format!("\"0\" is zero; {range}")
        );
        assert_eq!(
            message(parse_timeout("-5s")),
            format!("\"-5s\" is negative; {range}")
        );
        assert_eq!(
            message(parse_timeout("infms")),
            format!("\"infms\" is not finite; {range}")
        );
        assert_eq!(
            message(parse_timeout("soon")),
            format!("\"soon\" is not a number; {range}")
        );
        assert_eq!(parse_timeout("60m"), Ok(MAX_OTLP_TIMEOUT));
        assert_eq!(parse_timeout(" 3600000 "), Ok(MAX_OTLP_TIMEOUT));
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_micros(500)));
    }

    #[test]
    fn whole_numbers_are_bounded() {
        assert_eq!(
            message(parse_capture_bytes("5000")),
            "\"5000\" is above the maximum; accepted: 64 to 4096 bytes"
        );
        assert_eq!(
            message(parse_capture_bytes("0")),
            "\"0\" is zero; accepted: 64 to 4096 bytes"
        );
        assert_eq!(
            message(parse_capture_bytes("63")),
            "\"63\" is below the minimum; accepted: 64 to 4096 bytes"
        );
        assert_eq!(
            message(parse_capture_bytes("-64")),
            "\"-64\" is negative; accepted: 64 to 4096 bytes"
        );
        assert_eq!(
            message(parse_capture_bytes(
                "99999999999999999999999999999999999999999"
            )),
            "\"99999999999999999999999999999999999999999\" is above the maximum; \
             accepted: 64 to 4096 bytes"
        );
        assert_eq!(
            message(parse_capture_bytes("2048.5")),
            "\"2048.5\" is not a whole number; accepted: 64 to 4096 bytes"
        );
        assert_eq!(parse_capture_bytes("2048"), Ok(2048));

        let range = "accepted: a power of two from 1 to 2048 MiB";
        assert_eq!(
            message(parse_ring_buffer_mib("3")),
            format!("\"3\" is not a power of two; {range}")
        );
        assert_eq!(
            message(parse_ring_buffer_mib("4096")),
            format!("\"4096\" is above the maximum; {range}")
        );
        assert_eq!(
            message(parse_ring_buffer_mib("0")),
            format!("\"0\" is zero; {range}")
        );
        assert_eq!(parse_ring_buffer_mib("8"), Ok(8 << 20));
        assert_eq!(parse_ring_buffer_mib("2048"), Ok(1 << 31));

        assert_eq!(
            message(parse_wakeup_bytes("512")),
            "\"512\" is below the minimum; accepted: 1024 bytes up to half the ring buffer \
             (--ring-buffer-mib)"
        );
        assert_eq!(
            message(parse_wakeup_bytes("4294967296")),
            "\"4294967296\" is above the maximum; accepted: 1024 bytes up to half the ring \
             buffer (--ring-buffer-mib)"
        );
        assert_eq!(parse_wakeup_bytes("16384"), Ok(16384));

        assert_eq!(
            message(parse_wakeup_gap_us("1000001")),
            "\"1000001\" is above the maximum; accepted: 0 to 1000000 µs (1 second)"
        );
        assert_eq!(parse_wakeup_gap_us("0"), Ok(0));
        assert_eq!(parse_wakeup_gap_us("50"), Ok(50));

        assert_eq!(
            message(parse_quiet_ms("18446744073709551615")),
            "\"18446744073709551615\" is above the maximum; accepted: 0 to 3600000 ms (1 hour)"
        );
        assert_eq!(parse_quiet_ms("1000"), Ok(Duration::from_secs(1)));

        assert_eq!(
            message(parse_metric_export_interval("0")),
            "\"0\" is zero; accepted: 1 to 86400000 ms (1 day)"
        );
        assert_eq!(
            message(parse_metric_export_interval("86400001")),
            "\"86400001\" is above the maximum; accepted: 1 to 86400000 ms (1 day)"
        );
    }
}
