//! Putting keep-alive client sockets back into the injection sockhash.
//!
//! The kernel takes a socket out of the sockhash as soon as its request is transmitted
//! (`ebpf-probes/inject.bpf.c`: a response must never be queued on an enrolled socket,
//! or FIONREAD lies to the application). For the next request on the same connection to
//! carry a `traceparent` too, the socket has to go back in, and only userspace can do that
//! (the kernel allows sockhash updates from sock_ops only at connection setup).
//!
//! It is safe only while the connection is idle: the previous response fully read and no
//! new request written. The tracker proposes a connection when a client exchange has
//! completed with nothing else in flight; this worker then checks, on a duplicate of the
//! application's descriptor (pidfd_getfd), that
//! - it is still the same connection (same 4-tuple),
//! - it was armed: enrolled at connect by our sock_ops program, which also removes it on
//!   its next transmitted segment; a socket opened before the agent attached has no such
//!   callback, so it is first armed by the tcp iterator ([`ArmIterator`],
//!   kernels that allow it) or else left out,
//! - the application has written nothing since (bytes written equals the `sent_bytes` the
//!   kernel reported with the request) and nothing is waiting to be read (FIONREAD),
//!
//! then enrols it and checks again: if anything moved meanwhile, it takes the socket back
//! out at once. The duplicate descriptor is closed before the next request is looked at.
//!
//! Each check takes the socket's lock several times (getsockname, TCP_INFO, ioctls), and
//! the application may be waiting for that lock. A connection that is busy every time it
//! is looked at (requests sent back to back) is therefore looked at less and less often:
//! after [`BUSY_GRACE`] + n busy verdicts in a row, the next 2^n - 1 proposals are passed
//! over (at most [`MAX_BACKOFF`]), until one attempt succeeds.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use aya::maps::{HashMap as BpfHashMap, MapData, SkStorage, SockHash};
use socket2::SockRef;

use super::{ArmIterator, InjectionMaps};
use crate::capture::IdleClient as ReenrolRequest;
use crate::metrics::Counters;
use crate::sys::{pidfd, socket};

/// Requests waiting for the worker; more are dropped (and counted).
const QUEUE: usize = 4096;
/// pidfds kept open; the cache is cleared when it grows past this.
const MAX_PIDFDS: usize = 4096;
/// Sockets the arming iterator was asked about; cleared when it grows past this.
const MAX_ARM_TRIED: usize = 4096;
/// `inject_marks` value of a socket enrolled at connect with its transmit callback armed
/// (MARK_ARMED in inject.bpf.c).
const MARK_ARMED: u8 = 2;
/// Busy verdicts in a row that cost nothing yet: a connection that is idle now and then
/// is still looked at every time.
const BUSY_GRACE: u32 = 3;
/// Proposals passed over at most, after busy verdicts in a row (see the module docs).
const MAX_BACKOFF: u32 = 15;
/// Connections with a backoff remembered; the table is cleared when it grows past this.
const MAX_BACKOFFS: usize = 4096;
/// `BPF_NOEXIST`: never replace an entry the kernel made.
const BPF_NOEXIST: u64 = 1;

/// Why a proposed connection was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    /// The process or the descriptor is gone, or now names another socket.
    Gone,
    /// Not armed (opened before the agent attached); carries its cookie.
    NotOurs(u64),
    /// The application wrote or received something since the exchange ended.
    Busy,
}

/// Busy connections, by 4-tuple: shared so that the event loop passes over them without
/// waking the worker.
type Backoffs = Arc<Mutex<HashMap<(SocketAddr, SocketAddr), Backoff>>>;

pub struct Reenroller {
    tx: SyncSender<ReenrolRequest>,
    counters: Arc<Counters>,
    backoff: Backoffs,
}

impl Reenroller {
    pub fn spawn(maps: InjectionMaps, counters: Arc<Counters>) -> io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let backoff = Backoffs::default();
        let worker = Worker::new(maps, Arc::clone(&counters), Arc::clone(&backoff));
        thread::Builder::new()
            .name("sonde-reenrol".into())
            .spawn(move || worker.run(rx))?;
        Ok(Self {
            tx,
            counters,
            backoff,
        })
    }

    /// Queues a connection, unless it is being passed over; never blocks the event loop.
    pub fn submit(&self, req: ReenrolRequest) {
        if passed_over(&self.backoff, (req.local, req.remote), &self.counters) {
            return;
        }
        match self.tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Counters::inc(&self.counters.reenrol_dropped),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

struct Worker {
    sockhash: SockHash<MapData, u64>,
    marks: SkStorage<MapData, u8>,
    arming: Option<(BpfHashMap<MapData, u64, u8>, ArmIterator)>,
    /// Cookies already put to the arming iterator: each socket is tried once.
    arm_tried: HashSet<u64>,
    counters: Arc<Counters>,
    pidfds: HashMap<u32, OwnedFd>,
    /// Connections found busy (see the module docs).
    backoff: Backoffs,
}

/// Whether the connection is being passed over this time (one pass-over is then used up
/// and counted).
fn passed_over(backoff: &Backoffs, key: (SocketAddr, SocketAddr), counters: &Counters) -> bool {
    let passed = lock(backoff).get_mut(&key).is_some_and(|b| !b.attempt());
    if passed {
        Counters::inc(&counters.reenrol_backoff);
    }
    passed
}

/// The backoff table, also after a panic elsewhere (it holds no invariant to protect).
fn lock(
    backoff: &Backoffs,
) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, SocketAddr), Backoff>> {
    backoff
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How often a connection was busy in a row, and how many proposals to pass over still.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Backoff {
    busy_streak: u32,
    pass_over: u32,
}

impl Backoff {
    /// Whether to look at the connection this time (if not, one pass-over is used up).
    fn attempt(&mut self) -> bool {
        if self.pass_over == 0 {
            return true;
        }
        self.pass_over -= 1;
        false
    }

    /// Found busy: past the grace, pass over twice as many proposals as last time.
    fn busy(&mut self) {
        self.busy_streak = self.busy_streak.saturating_add(1);
        // 2^4 - 1 already reaches MAX_BACKOFF; the min keeps the shift in range.
        let n = self.busy_streak.saturating_sub(BUSY_GRACE).min(4);
        self.pass_over = ((1u32 << n) - 1).min(MAX_BACKOFF);
    }
}

impl Worker {
    fn new(maps: InjectionMaps, counters: Arc<Counters>, backoff: Backoffs) -> Self {
        Self {
            sockhash: maps.sockhash,
            marks: maps.marks,
            arming: maps.arming,
            arm_tried: HashSet::new(),
            counters,
            pidfds: HashMap::new(),
            backoff,
        }
    }

    fn run(mut self, rx: Receiver<ReenrolRequest>) {
        let mut latest: HashMap<(SocketAddr, SocketAddr), ReenrolRequest> = HashMap::new();
        while let Ok(first) = rx.recv() {
            // Everything queued meanwhile: per connection only the newest proposal can
            // still match (an older one's sent_bytes is stale), so the rest are dropped.
            latest.clear();
            for req in std::iter::once(first).chain(rx.try_iter()) {
                if latest.insert((req.local, req.remote), req).is_some() {
                    Counters::inc(&self.counters.reenrol_skipped);
                }
            }
            for (key, req) in latest.drain() {
                self.handle(key, &req);
            }
        }
    }

    fn handle(&mut self, key: (SocketAddr, SocketAddr), req: &ReenrolRequest) {
        // Checked again here: a busy verdict may have come after the proposal was queued.
        if passed_over(&self.backoff, key, &self.counters) {
            return;
        }
        let mut outcome = self.reenrol(req);
        if let Err(Skip::NotOurs(cookie)) = outcome
            && self.arm(cookie)
        {
            outcome = self.reenrol(req);
        }
        log::debug!("re-enrol {req:?}: {outcome:?}");
        match outcome {
            Ok(()) => {
                lock(&self.backoff).remove(&key);
                Counters::inc(&self.counters.reenrolled);
            }
            Err(Skip::Gone) => {
                lock(&self.backoff).remove(&key);
                self.pidfds.remove(&req.tgid);
                Counters::inc(&self.counters.reenrol_skipped);
            }
            Err(Skip::Busy) => {
                let mut backoff = lock(&self.backoff);
                if backoff.len() >= MAX_BACKOFFS {
                    backoff.clear();
                }
                backoff.entry(key).or_default().busy();
                drop(backoff);
                Counters::inc(&self.counters.reenrol_skipped);
            }
            Err(Skip::NotOurs(_)) => Counters::inc(&self.counters.reenrol_skipped),
        }
    }

    fn reenrol(&mut self, req: &ReenrolRequest) -> Result<(), Skip> {
        let sock = self.duplicate(req.tgid, req.fd)?;
        let sref = SockRef::from(&sock);
        let same = sref.local_addr().ok().and_then(|a| a.as_socket()) == Some(req.local)
            && sref.peer_addr().ok().and_then(|a| a.as_socket()) == Some(req.remote);
        if !same {
            return Err(Skip::Gone);
        }
        let cookie = socket::cookie(sock.as_fd()).map_err(|_| Skip::Gone)?;
        if self.marks.get(&sock, 0).ok() != Some(MARK_ARMED) {
            return Err(Skip::NotOurs(cookie));
        }
        let before = Activity::read(sock.as_fd()).ok_or(Skip::Gone)?;
        if before.written != req.sent_bytes || before.unread != 0 {
            return Err(Skip::Busy);
        }
        if self
            .sockhash
            .insert(cookie, sock.as_raw_fd(), BPF_NOEXIST)
            .is_err()
        {
            return Err(Skip::Busy);
        }
        // Anything written or received between the check and the insert: out again.
        let after = Activity::read(sock.as_fd());
        if after.is_none_or(|a| a.written != before.written || a.received != before.received) {
            let _ = self.sockhash.remove(&cookie);
            return Err(Skip::Busy);
        }
        Ok(())
    }

    /// Asks the tcp iterator to arm the socket (once per socket); true if it ran.
    fn arm(&mut self, cookie: u64) -> bool {
        let Some((requests, iter)) = self.arming.as_mut() else {
            return false;
        };
        if self.arm_tried.len() >= MAX_ARM_TRIED {
            self.arm_tried.clear();
        }
        if !self.arm_tried.insert(cookie) || requests.insert(cookie, 1, 0).is_err() {
            return false;
        }
        if let Err(e) = iter.run() {
            log::debug!("arming iterator: {e}");
            let _ = requests.remove(&cookie);
            return false;
        }
        true
    }

    /// Our own descriptor for `fd` of process `tgid`.
    fn duplicate(&mut self, tgid: u32, fd: RawFd) -> Result<OwnedFd, Skip> {
        if !self.pidfds.contains_key(&tgid) {
            if self.pidfds.len() >= MAX_PIDFDS {
                self.pidfds.clear();
            }
            let pidfd = pidfd::open(tgid).map_err(|_| Skip::Gone)?;
            self.pidfds.insert(tgid, pidfd);
        }
        let pidfd = self.pidfds.get(&tgid).ok_or(Skip::Gone)?;
        pidfd::get_fd(pidfd.as_fd(), fd).map_err(|_| Skip::Gone)
    }
}

/// What has moved on a TCP socket, as userspace can read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Activity {
    /// Bytes the application has written (bytes acked + still in the send queue): the
    /// kernel's `sent_bytes` for a data event.
    written: u64,
    /// Bytes received from the peer so far.
    received: u64,
    /// Bytes received and not yet read (FIONREAD; meaningful only while not enrolled).
    unread: u32,
}

impl Activity {
    fn read(sock: BorrowedFd<'_>) -> Option<Self> {
        let info = socket::tcp_info(sock).ok()?;
        let outq = socket::unacked_bytes(sock).ok()?;
        let unread = socket::unread_bytes(sock).ok()?;
        Some(Self {
            written: info.tcpi_bytes_acked + u64::from(outq),
            received: info.tcpi_bytes_received,
            unread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proposals attempted out of `n`, for a connection that is busy every time.
    fn attempts_when_always_busy(n: usize) -> usize {
        let mut b = Backoff::default();
        let mut attempts = 0;
        for _ in 0..n {
            if b.attempt() {
                attempts += 1;
                b.busy();
            }
        }
        attempts
    }

    #[test]
    fn busy_connections_are_looked_at_less_and_less() {
        let mut b = Backoff::default();
        for _ in 0..BUSY_GRACE {
            assert!(b.attempt(), "within the grace, every proposal is looked at");
            b.busy();
        }
        assert!(b.attempt());
        b.busy();
        assert!(
            !b.attempt(),
            "one pass-over after the first busy verdict past the grace"
        );
        assert!(b.attempt());
        b.busy();
        assert_eq!((0..3).filter(|_| !b.attempt()).count(), 3);
        assert!(b.attempt());
        // Back-to-back traffic: looked at on proposals 0, 1, 2, 3, 5, 9, 17, then one in 16.
        assert_eq!(attempts_when_always_busy(18), 7);
        let many = attempts_when_always_busy(16 * 1000);
        assert!((1000..=1010).contains(&many), "{many}");
    }
}
