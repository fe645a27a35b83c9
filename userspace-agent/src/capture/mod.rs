//! Capture: from the probes' ring buffer to ordered per-connection byte segments.
//!
//! It owns reading the ring ([`ring`]), decoding records ([`record`]), the connection
//! table ([`conns`]: sockets, stale 4-tuples, folded sendfile bytes) with the bytes held
//! back while a connection's protocol is undecided ([`held`]), and the one time base:
//! kernel time becomes wall time here, once ([`clock`]). Its output is
//! [`ConnSegment`]s, each with its connection's identity and who moved the bytes, handed
//! to a [`Consumer`] (the span builder) in order per connection, whichever source made
//! them: the socket hooks today, TLS plaintext from uprobes tomorrow. Process lifecycle
//! records (exec, exit) go back to the caller.

pub mod clock;
pub mod conns;
pub mod endpoints;
pub mod held;
pub mod record;
pub mod ring;
pub mod segment;

use std::sync::Arc;

pub use clock::WallClock;
pub use conns::{
    Conn, ConnId, ConnState, ConnTable, Consumer, IdleClient, StateChange, TableLimits,
};
pub use endpoints::Endpoints;
pub use record::{DataEvent, DecodeError, Event};
pub use segment::{ConnSegment, KernelMark, Origin, Source, TlsLibrary, TlsSource, TlsVersion};

use crate::abi::{ExecSnapshot, RawSockInfo, RawSockStateEvent};
use crate::metrics::Counters;
use crate::protocols::Segment;
use endpoints::socket_addr;

/// A process lifecycle record, for the caller.
#[derive(Debug)]
pub enum ProcessRecord<'a> {
    /// A process exec'd (Unix ns).
    Exec {
        tgid: u32,
        ts_ns: u64,
        snapshot: ExecSnapshot<'a>,
    },
    /// A traced process's last thread exited.
    Exit { tgid: u32 },
    /// A traced process loaded or unloaded a library (dlopen, dlclose).
    Libraries { tgid: u32 },
}

/// The capture stage: the connection table and the time base.
pub struct Capture<S> {
    table: ConnTable<S>,
    clock: WallClock,
    counters: Arc<Counters>,
}

impl<S: ConnState> Capture<S> {
    pub fn new(limits: TableLimits, clock: WallClock, counters: Arc<Counters>) -> Self {
        Self {
            table: ConnTable::new(limits),
            clock,
            counters,
        }
    }

    /// One ring-buffer record: connection data and state changes go to `consumer`,
    /// process records back to the caller; an undecodable record is counted.
    pub fn record<'r>(
        &mut self,
        record: &'r [u8],
        consumer: &mut impl Consumer<S>,
    ) -> Option<ProcessRecord<'r>> {
        Counters::inc(&self.counters.events_read);
        match Event::decode(record) {
            Ok(Event::Data(ev)) => {
                self.data(&ev, consumer);
                None
            }
            Ok(Event::SockState(s)) => {
                self.sock_state(&s, consumer);
                None
            }
            Ok(Event::Exec {
                tgid,
                ts_ns,
                snapshot,
            }) => Some(ProcessRecord::Exec {
                tgid,
                ts_ns: self.clock.to_unix_nanos(ts_ns),
                snapshot,
            }),
            Ok(Event::Exit { tgid, .. }) => Some(ProcessRecord::Exit { tgid }),
            Ok(Event::Libraries { tgid }) => Some(ProcessRecord::Libraries { tgid }),
            Err(e) => {
                Counters::inc(&self.counters.decode_errors);
                log::debug!("undecodable ring record: {e}");
                None
            }
        }
    }

    /// A decoded data record.
    pub fn data(&mut self, ev: &DataEvent<'_>, consumer: &mut impl Consumer<S>) {
        let h = &ev.header;
        let ends = (
            socket_addr(h.family, &h.local_addr, h.local_port),
            socket_addr(h.family, &h.remote_addr, h.remote_port),
        );
        let origin = Origin {
            tgid: h.tgid,
            tid: h.tid,
            fd: h.fd,
        };
        let seg = ConnSegment {
            direction: ev.direction,
            origin,
            seg: Segment {
                ts_ns: self.clock.to_unix_nanos(h.ts_ns),
                len: h.total_len,
                head: ev.data,
                tail: ev.tail,
            },
            mark: KernelMark {
                role: ev.ctx_role,
                ctx: h.ctx,
                parent_source: ev.parent_source,
                format: ev.ctx_format,
                inject: ev.inject_status,
            },
            source: ev.source,
        };
        let folded = (h.folded_bytes, self.clock.to_unix_nanos(h.folded_ts_ns));
        self.table.data(
            h.sock_id,
            ends,
            origin,
            h.sent_bytes,
            folded,
            seg,
            &self.counters,
            consumer,
        );
    }

    /// A decoded TCP state change of a socket that carried data.
    pub fn sock_state(&mut self, s: &RawSockStateEvent, consumer: &mut impl Consumer<S>) {
        if let Some(change) = StateChange::from_tcp_state(s.new_state) {
            let folded = (s.folded_bytes, self.clock.to_unix_nanos(s.folded_ts_ns));
            let ts_ns = self.clock.to_unix_nanos(s.ts_ns);
            self.table
                .state_change(s.sock_id, change, ts_ns, folded, consumer);
        }
    }

    /// Connections quiet for `quiet_ns` whose end may be folded egress that no later
    /// record will carry (at most `limit`): read their kernel entry
    /// ([`Self::folded_read`]).
    pub fn quiet_awaiting_folded(&self, now_ns: u64, quiet_ns: u64, limit: usize) -> Vec<ConnId> {
        self.table.quiet_awaiting_folded(now_ns, quiet_ns, limit)
    }

    /// A connection's `known_socks` entry, read from the kernel after a drain that emptied
    /// the ring and began at kernel time `drained_from_ns`: folds older than that drain
    /// are caught up (no earlier record of the socket can still be unread), if the entry
    /// still describes the same connection.
    pub fn folded_read(
        &mut self,
        info: &RawSockInfo,
        drained_from_ns: u64,
        consumer: &mut impl Consumer<S>,
    ) {
        if info.folded_ts_ns >= drained_from_ns {
            return;
        }
        let ends = (
            socket_addr(info.family, &info.local_addr, info.local_port),
            socket_addr(info.family, &info.remote_addr, info.remote_port),
        );
        let folded = (
            info.folded_bytes,
            self.clock.to_unix_nanos(info.folded_ts_ns),
        );
        self.table.folded_read(info.sk, ends, folded, consumer);
    }

    /// Housekeeping at `now_ns` (Unix ns): the consumer's timeouts and idle connections.
    pub fn tick(&mut self, now_ns: u64, consumer: &mut impl Consumer<S>) {
        self.table.tick(now_ns, consumer);
    }

    /// The agent stops.
    pub fn shutdown(&mut self, consumer: &mut impl Consumer<S>) {
        self.table.shutdown(consumer);
    }

    /// Now, in the time base of everything capture hands on (Unix ns).
    pub fn now_ns(&self) -> u64 {
        self.clock.to_unix_nanos(WallClock::mono_now())
    }

    pub fn connections(&self) -> usize {
        self.table.len()
    }
}
