//! When to look for TLS libraries in traced processes: each process when it is first
//! seen, again on every tick for a while after it starts a program (the dynamic loader
//! maps libraries right after exec, and `dlopen` soon after), and every second after
//! that (libraries loaded later). And what to tell the operator about a process whose
//! sockets carry TLS that no probed library reads.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::attach::probes::Probes;
use crate::attach::tls::Scanned;
use crate::process::ResourceCache;

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
    /// Processes already warned about: TLS, and no library to read it in.
    warned: HashSet<u32>,
}

#[derive(Clone, Copy)]
struct Scan {
    last: Instant,
    eager_until: Instant,
    /// The last scan found a probed TLS library mapped.
    maps_probed: bool,
}

impl TlsScan {
    /// `pid` starts a program (or was just added): scan it now and eagerly for a while.
    pub(super) fn started(&mut self, probes: &mut Probes, pid: u32) {
        let now = Instant::now();
        self.scan(probes, pid, now, now + EAGER);
    }

    /// Periodic: scans the traced processes that are due.
    pub(super) fn tick(&mut self, probes: &mut Probes) {
        let now = Instant::now();
        for pid in probes.traced_processes() {
            let due = match self.processes.get(&pid) {
                None => true,
                Some(scan) => now < scan.eager_until || now.duration_since(scan.last) >= PERIOD,
            };
            if due {
                let eager_until = self
                    .processes
                    .get(&pid)
                    .map_or(now + EAGER, |s| s.eager_until);
                self.scan(probes, pid, now, eager_until);
            }
        }
    }

    /// Whether `pid` maps a probed TLS library; for a process gone, what its last scan
    /// said. None when TLS probes are off, or a process gone was never scanned.
    fn scan(
        &mut self,
        probes: &mut Probes,
        pid: u32,
        now: Instant,
        eager_until: Instant,
    ) -> Option<bool> {
        let Scanned {
            read, maps_probed, ..
        } = probes.scan_tls(pid)?;
        if !read {
            return self.processes.get(&pid).map(|s| s.maps_probed);
        }
        if self.processes.len() >= MAX_TRACKED {
            self.processes.clear();
        }
        self.processes.insert(
            pid,
            Scan {
                last: now,
                eager_until,
                maps_probed,
            },
        );
        Some(maps_probed)
    }

    /// `pid`'s sockets carried TLS ciphertext that no library call claimed. Expected
    /// now and then of a process with a probed library (a library working on memory
    /// shows its first flight before it is known to); otherwise its TLS cannot be read,
    /// which the operator is told once per process.
    pub(super) fn ciphertext_unclaimed(
        &mut self,
        probes: &mut Probes,
        resources: &ResourceCache,
        pid: u32,
    ) {
        if self.warned.contains(&pid) || self.processes.get(&pid).is_some_and(|s| s.maps_probed) {
            return;
        }
        // Scanned now, in case the library was mapped since the last scan.
        let now = Instant::now();
        let eager_until = self.processes.get(&pid).map_or(now, |s| s.eager_until);
        // None: TLS probes are off (`--no-tls`, the operator's choice), or the process
        // exited unscanned (its libraries cannot be told any more).
        if self.scan(probes, pid, now, eager_until) != Some(false) {
            return;
        }
        if self.warned.len() >= MAX_TRACKED {
            self.warned.clear();
        }
        self.warned.insert(pid);
        let resource = resources.get_or_load(pid);
        let exe = resource
            .get("process.executable.path")
            .or_else(|| resource.get("process.executable.name"))
            .map_or_else(|| "?".to_owned(), |v| v.to_string());
        eprintln!(
            "sonde: pid {pid} ({exe}) speaks TLS, but no TLS library Sonde can probe was found \
             in it (OpenSSL linked in statically and stripped, or a library not supported \
             yet): its encrypted traffic makes no spans (counter tls_unreadable_connections)"
        );
    }

    /// A traced process exited. Its last scan stays (bounded by `MAX_TRACKED`): its
    /// unclaimed ciphertext may be reported after its exit, and judged by it then.
    pub(super) fn exited(&mut self, pid: u32) {
        self.warned.remove(&pid);
    }
}
