//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to Unix time.

/// Maps the kernel's monotonic nanoseconds to Unix nanoseconds with an offset sampled once.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i128,
}

use crate::sys::host::clock_ns as now_ns;

impl WallClock {
    /// Samples both clocks; the monotonic one twice, to bracket the realtime read.
    pub fn sample() -> Self {
        let m1 = now_ns(libc::CLOCK_MONOTONIC);
        let real = now_ns(libc::CLOCK_REALTIME);
        let m2 = now_ns(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: real - (m1 + m2) / 2,
        }
    }

    /// A clock whose "Unix" time is the kernel's: tests feed timestamps they can read back.
    #[cfg(test)]
    pub(crate) fn identity() -> Self {
        Self { offset_ns: 0 }
    }

    pub fn to_unix_nanos(&self, mono_ns: u64) -> u64 {
        u64::try_from(i128::from(mono_ns) + self.offset_ns).unwrap_or(0)
    }

    /// Current monotonic time in ns (the kernel's clock for events).
    pub fn mono_now() -> u64 {
        u64::try_from(now_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_monotonic_now_close_to_system_time() {
        let clock = WallClock::sample();
        let unix = clock.to_unix_nanos(WallClock::mono_now());
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        assert!(unix.abs_diff(sys) < 50_000_000, "unix {unix} sys {sys}");
    }
}
