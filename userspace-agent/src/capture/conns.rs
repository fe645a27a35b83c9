//! The connection table: every TCP connection that carried data, by kernel socket, with
//! what capture keeps of it (endpoints, process, bytes sent, folded egress) and the
//! state its consumer keeps beside (`S`, one lookup for both).
//!
//! The table is bounded: when full, the least recently seen 1/64 goes in one pass, so a
//! flood of new connections costs O(1) each; connections quiet for the idle timeout with
//! nothing in flight are forgotten. Both are counted.

use std::net::SocketAddr;

use super::endpoints::Endpoints;
use super::segment::{ConnSegment, KernelMark, Origin, Source};
use crate::abi::Direction;
use crate::metrics::Counters;
use crate::protocols::Segment;

/// A connection, by the kernel address of its socket.
pub type ConnId = u64;

/// Limits that keep the table bounded.
#[derive(Clone, Copy, Debug)]
pub struct TableLimits {
    pub max_connections: usize,
    /// A connection with nothing in flight is forgotten after this long (ns).
    pub idle_timeout_ns: u64,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            idle_timeout_ns: 300_000_000_000,
        }
    }
}

/// One connection as capture knows it, with its consumer's state.
#[derive(Debug)]
pub struct Conn<S> {
    pub ends: Endpoints,
    /// The process that moved the first bytes seen.
    pub tgid: u32,
    /// The descriptor the process last used for this socket.
    pub fd: i32,
    /// Bytes written so far, as of the last egress record.
    pub sent_bytes: u64,
    /// Unix ns of the last bytes or state change seen.
    pub last_seen_ns: u64,
    /// How much of the socket's folded egress has been handed on as segments.
    folded_seen: u64,
    pub state: S,
}

/// A client connection with nothing in flight after a complete exchange: what
/// injection needs to put it back in its sockhash, if the process has written nothing
/// since (`sent_bytes` still matches; checked by `attach`'s re-enrolment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleClient {
    pub tgid: u32,
    pub fd: i32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub sent_bytes: u64,
}

impl<S> Conn<S> {
    /// Folded egress (sendfile, splice: no bytes to show) up to the kernel's running
    /// `total`, sent by `ts_ns`: the part not handed on yet, as one payload-less
    /// segment; nothing if the kernel's count started again (its entry was evicted).
    fn catch_up_folded(&mut self, total: u64, ts_ns: u64) -> Option<Segment<'static>> {
        let len = match total.checked_sub(self.folded_seen) {
            Some(0) => return None,
            Some(len) => len,
            None => {
                self.folded_seen = total;
                return None;
            }
        };
        self.folded_seen = total;
        self.sent_bytes += len;
        self.last_seen_ns = self.last_seen_ns.max(ts_ns);
        Some(Segment {
            ts_ns,
            len,
            head: &[],
            tail: &[],
        })
    }
}

/// Per-connection state of the consumer, as far as capture needs to know it.
pub trait ConnState: Default {
    /// The connection is in the middle of sending something whose end may be folded
    /// egress that no later record will carry (a sendfile'd response body).
    fn awaits_folded_egress(&self) -> bool;
}

/// What capture hands its output to.
pub trait Consumer<S> {
    /// Bytes of one direction of `conn`, in order.
    fn segment(&mut self, id: ConnId, conn: &mut Conn<S>, seg: &ConnSegment<'_>);
    /// The traced process shut its side of the connection down (FIN sent).
    fn write_closed(&mut self, id: ConnId, conn: &mut Conn<S>, ts_ns: u64);
    /// The connection is gone (closed, reset, or its socket reused unseen).
    fn closed(&mut self, id: ConnId, conn: Conn<S>, ts_ns: u64);
    /// Periodic housekeeping at `now_ns`; true while something is in flight (the
    /// connection is then never forgotten as idle).
    fn tick(&mut self, conn: &mut Conn<S>, now_ns: u64) -> bool;
    /// The agent stops: account for whatever is still in flight.
    fn shutdown(&mut self, conn: Conn<S>);
}

/// Every connection that carried data.
pub struct ConnTable<S> {
    /// foldhash, not SipHash: the keys are kernel addresses, not chosen by peers.
    conns: foldhash::HashMap<ConnId, Conn<S>>,
    limits: TableLimits,
}

impl<S: ConnState> ConnTable<S> {
    pub fn new(limits: TableLimits) -> Self {
        Self {
            conns: foldhash::HashMap::default(),
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Bytes of a data record: to the connection's consumer, after whatever folded egress
    /// the record says came before them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn data(
        &mut self,
        id: ConnId,
        (local, remote): (SocketAddr, SocketAddr),
        origin: Origin,
        sent_bytes: u64,
        folded: (u64, u64),
        seg: ConnSegment<'_>,
        counters: &Counters,
        consumer: &mut impl Consumer<S>,
    ) {
        let ts_ns = seg.seg.ts_ns;
        // The kernel reuses a closed socket's memory; if its close was missed (ring
        // full), a different 4-tuple at the same address is a new connection.
        if self
            .conns
            .get(&id)
            .is_some_and(|c| !c.ends.are(local, remote))
            && let Some(stale) = self.conns.remove(&id)
        {
            Counters::inc(&counters.stale_connections);
            consumer.closed(id, stale, ts_ns);
        }
        if !self.conns.contains_key(&id) {
            self.make_room(counters);
            Counters::inc(&counters.connections_tracked);
            self.conns.insert(
                id,
                Conn {
                    ends: Endpoints::new(local, remote),
                    tgid: origin.tgid,
                    fd: origin.fd,
                    sent_bytes: 0,
                    last_seen_ns: ts_ns,
                    // Folded before the connection was seen: not part of its messages.
                    folded_seen: folded.0,
                    state: S::default(),
                },
            );
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        Self::fold(id, conn, folded, origin, consumer);
        conn.last_seen_ns = ts_ns;
        conn.fd = origin.fd;
        if seg.direction == Direction::Egress {
            conn.sent_bytes = sent_bytes;
        }
        consumer.segment(id, conn, &seg);
    }

    /// A TCP state change: folded egress first, then the change.
    pub(super) fn state_change(
        &mut self,
        id: ConnId,
        change: StateChange,
        ts_ns: u64,
        folded: (u64, u64),
        consumer: &mut impl Consumer<S>,
    ) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let origin = Origin {
            tgid: conn.tgid,
            tid: conn.tgid,
            fd: conn.fd,
        };
        Self::fold(id, conn, folded, origin, consumer);
        match change {
            StateChange::WriteClosed => consumer.write_closed(id, conn, ts_ns),
            StateChange::Closed => {
                if let Some(conn) = self.conns.remove(&id) {
                    consumer.closed(id, conn, ts_ns);
                }
            }
        }
    }

    /// The kernel's folded total for `id`, read by userspace for a quiet connection:
    /// caught up if it still describes the same connection.
    pub(super) fn folded_read(
        &mut self,
        id: ConnId,
        (local, remote): (SocketAddr, SocketAddr),
        folded: (u64, u64),
        consumer: &mut impl Consumer<S>,
    ) {
        if let Some(conn) = self.conns.get_mut(&id)
            && conn.ends.are(local, remote)
        {
            let origin = Origin {
                tgid: conn.tgid,
                tid: conn.tgid,
                fd: conn.fd,
            };
            Self::fold(id, conn, folded, origin, consumer);
        }
    }

    fn fold(
        id: ConnId,
        conn: &mut Conn<S>,
        (total, ts_ns): (u64, u64),
        origin: Origin,
        consumer: &mut impl Consumer<S>,
    ) {
        if let Some(seg) = conn.catch_up_folded(total, ts_ns) {
            let seg = ConnSegment {
                direction: Direction::Egress,
                origin,
                seg,
                mark: KernelMark::NONE,
                source: Source::Socket,
            };
            consumer.segment(id, conn, &seg);
        }
    }

    /// Connections quiet for `quiet_ns` at `now_ns` whose consumer awaits folded egress
    /// (at most `limit`).
    pub fn quiet_awaiting_folded(&self, now_ns: u64, quiet_ns: u64, limit: usize) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| {
                c.state.awaits_folded_egress() && now_ns.saturating_sub(c.last_seen_ns) >= quiet_ns
            })
            .map(|(id, _)| *id)
            .take(limit)
            .collect()
    }

    /// Housekeeping at `now_ns`: the consumer's timeouts, then idle connections go.
    pub fn tick(&mut self, now_ns: u64, consumer: &mut impl Consumer<S>) {
        let idle_ns = self.limits.idle_timeout_ns;
        self.conns.retain(|_, conn| {
            consumer.tick(conn, now_ns) || now_ns.saturating_sub(conn.last_seen_ns) <= idle_ns
        });
    }

    /// When the table is full, drops the least recently used 1/64 of it in one pass.
    fn make_room(&mut self, counters: &Counters) {
        if self.conns.len() < self.limits.max_connections {
            return;
        }
        let mut ages: Vec<(u64, ConnId)> = self
            .conns
            .iter()
            .map(|(k, c)| (c.last_seen_ns, *k))
            .collect();
        let evict = (ages.len() / 64).max(1);
        ages.select_nth_unstable(evict - 1);
        for (_, k) in &ages[..evict] {
            self.conns.remove(k);
            Counters::inc(&counters.connections_evicted);
        }
    }

    /// The agent stops: every connection goes to the consumer's shutdown.
    pub fn shutdown(&mut self, consumer: &mut impl Consumer<S>) {
        for (_, conn) in self.conns.drain() {
            consumer.shutdown(conn);
        }
    }
}

/// The TCP state changes that matter to a connection's consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// Our side stopped writing (FIN_WAIT1).
    WriteClosed,
    /// Closed or reset (CLOSE, LAST_ACK).
    Closed,
}

impl StateChange {
    /// From a new TCP state (include/net/tcp_states.h); `None` for the others.
    pub fn from_tcp_state(state: u8) -> Option<Self> {
        const FIN_WAIT1: u8 = 4;
        const CLOSE: u8 = 7;
        const LAST_ACK: u8 = 9;
        match state {
            FIN_WAIT1 => Some(StateChange::WriteClosed),
            CLOSE | LAST_ACK => Some(StateChange::Closed),
            _ => None,
        }
    }
}
