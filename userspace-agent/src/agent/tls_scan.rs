//! When to look for TLS libraries in traced processes: each process when it is first
//! seen, again on every tick for a while after it starts a program (the dynamic loader
//! maps libraries right after exec, and `dlopen` soon after), and every second after
//! that (libraries loaded later).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::attach::probes::Probes;

/// After an exec (or first sight), a process is scanned on every tick for this long.
const EAGER: Duration = Duration::from_secs(2);
/// Otherwise at most this often.
const PERIOD: Duration = Duration::from_secs(1);
/// Processes remembered at most (the oldest scan times are forgotten beyond).
const MAX_TRACKED: usize = 16_384;

#[derive(Default)]
pub(super) struct TlsScan {
    /// When each process was last scanned, and until when it is scanned eagerly.
    processes: HashMap<u32, Scan>,
}

#[derive(Clone, Copy)]
struct Scan {
    last: Instant,
    eager_until: Instant,
}

impl TlsScan {
    /// `pid` starts a program (or was just added): scan it now and eagerly for a while.
    pub(super) fn started(&mut self, probes: &mut Probes, pid: u32) {
        let now = Instant::now();
        if self.processes.len() >= MAX_TRACKED {
            self.processes.clear();
        }
        self.processes.insert(
            pid,
            Scan {
                last: now,
                eager_until: now + EAGER,
            },
        );
        probes.scan_tls(pid);
    }

    /// Periodic: scans the traced processes that are due.
    pub(super) fn tick(&mut self, probes: &mut Probes) {
        let now = Instant::now();
        for pid in probes.traced_processes() {
            let due = match self.processes.get(&pid) {
                None => true,
                Some(scan) => now < scan.eager_until || now.duration_since(scan.last) >= PERIOD,
            };
            if !due {
                continue;
            }
            let eager_until = self
                .processes
                .get(&pid)
                .map_or(now + EAGER, |s| s.eager_until);
            if self.processes.len() >= MAX_TRACKED {
                self.processes.clear();
            }
            self.processes.insert(
                pid,
                Scan {
                    last: now,
                    eager_until,
                },
            );
            probes.scan_tls(pid);
        }
    }

    /// A traced process exited.
    pub(super) fn exited(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }
}
