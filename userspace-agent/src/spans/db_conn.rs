//! One database or cache connection: which protocol it speaks, which side the traced
//! process is on, its parser, and the parents the kernel named for its requests.
//!
//! Calls are reported by the parser only once they complete, so the trace context the
//! kernel attached to a request's first bytes is kept (by timestamp) until then.

use std::collections::VecDeque;
use std::sync::Arc;

use super::db_span;
use super::http_span::Endpoints;
use super::identity::SpanIdentity;
use super::model::{Resource, Span};
use super::tracker::Role;
use crate::abi::{CtxRole, DataEvent, Direction};
use crate::metrics::Counters;
use crate::protocols::Segment;
use crate::protocols::db::{
    DbCall, DbParser, DbSystem, ParseOptions, ParserStats, Side, memcached, mysql, postgres, redis,
};

/// The wire protocols Sonde parses on database and cache connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbProtocol {
    Postgres,
    Mysql,
    Redis,
    Memcached,
}

impl DbProtocol {
    const ALL: [DbProtocol; 4] = [
        DbProtocol::Postgres,
        DbProtocol::Mysql,
        DbProtocol::Redis,
        DbProtocol::Memcached,
    ];

    pub fn sniff(self, side: Side, bytes: &[u8]) -> bool {
        match self {
            DbProtocol::Postgres => {
                postgres::sniff(side, bytes) || postgres::sniff_mid_stream(side, bytes)
            }
            DbProtocol::Mysql => mysql::sniff(side, bytes) || mysql::sniff_mid_stream(side, bytes),
            DbProtocol::Redis => redis::sniff(side, bytes),
            DbProtocol::Memcached => memcached::sniff(side, bytes),
        }
    }

    /// The usual server port: a hint that breaks ties, never a decision on its own.
    fn default_port(self) -> u16 {
        match self {
            DbProtocol::Postgres => 5432,
            DbProtocol::Mysql => 3306,
            DbProtocol::Redis => 6379,
            DbProtocol::Memcached => 11211,
        }
    }

    /// `db.system.name` unless the parser says better (MariaDB speaks the MySQL protocol).
    pub fn system(self) -> DbSystem {
        match self {
            DbProtocol::Postgres => DbSystem::Postgresql,
            DbProtocol::Mysql => DbSystem::Mysql,
            DbProtocol::Redis => DbSystem::Redis,
            DbProtocol::Memcached => DbSystem::Memcached,
        }
    }

    pub fn parser(self, opts: ParseOptions) -> Box<dyn DbParser + Send> {
        match self {
            DbProtocol::Postgres => Box::new(postgres::PostgresParser::new(opts)),
            DbProtocol::Mysql => Box::new(mysql::MysqlParser::new(opts)),
            DbProtocol::Redis => Box::new(redis::RedisParser::new(opts)),
            DbProtocol::Memcached => Box::new(memcached::MemcachedParser::new(opts)),
        }
    }
}

/// The sniffers and parsers in use: the real ones, or a toy protocol in tests.
#[derive(Clone, Copy)]
pub struct Protocols {
    pub sniff: fn(DbProtocol, Side, &[u8]) -> bool,
    pub parser: fn(DbProtocol, ParseOptions) -> Box<dyn DbParser + Send>,
}

impl Default for Protocols {
    fn default() -> Self {
        Self {
            sniff: DbProtocol::sniff,
            parser: DbProtocol::parser,
        }
    }
}

/// Which protocol these bytes speak and which side the traced process is on: bytes a
/// client would send, written by the process, make it the client. A protocol served on
/// its usual port is tried first.
pub fn detect(
    protocols: &Protocols,
    dir: Direction,
    bytes: &[u8],
    local_port: u16,
    remote_port: u16,
) -> Option<(DbProtocol, Role)> {
    let mut found = None;
    for protocol in DbProtocol::ALL {
        for (side, role) in [
            (Side::Client, role_of_sender(dir, Role::Client)),
            (Side::Server, role_of_sender(dir, Role::Server)),
        ] {
            if !(protocols.sniff)(protocol, side, bytes) {
                continue;
            }
            let server_port = match role {
                Role::Client => remote_port,
                Role::Server => local_port,
            };
            if server_port == protocol.default_port() {
                return Some((protocol, role));
            }
            found = found.or(Some((protocol, role)));
        }
    }
    found
}

/// The traced process's role when the bytes moving in `dir` were sent by `sender`.
fn role_of_sender(dir: Direction, sender: Role) -> Role {
    match (dir, sender) {
        (Direction::Egress, r) => r,
        (Direction::Ingress, Role::Client) => Role::Server,
        (Direction::Ingress, Role::Server) => Role::Client,
    }
}

/// A server span waiting for the span of the traced client that sent its query.
pub struct Held {
    pub span: Span,
    /// Monotonic ns when it started waiting.
    pub since_ns: u64,
}

pub struct DbConn {
    pub protocol: DbProtocol,
    pub role: Role,
    pub ends: Endpoints,
    pub tgid: u32,
    pub last_seen_ns: u64,
    parser: Box<dyn DbParser + Send>,
    /// Client role: parents the kernel named for request bytes, by segment timestamp,
    /// oldest first (a call's `start_ns` is the timestamp of its first segment).
    parents: VecDeque<(u64, SpanIdentity)>,
    /// Server role: spans waiting for the traced client's span (same-host join).
    pub held: VecDeque<Held>,
    reported: ParserStats,
}

impl DbConn {
    pub fn new(
        protocol: DbProtocol,
        role: Role,
        ends: Endpoints,
        tgid: u32,
        ts_ns: u64,
        parser: Box<dyn DbParser + Send>,
    ) -> Self {
        Self {
            protocol,
            role,
            ends,
            tgid,
            last_seen_ns: ts_ns,
            parser,
            parents: VecDeque::new(),
            held: VecDeque::new(),
            reported: ParserStats::default(),
        }
    }

    /// The parser's side for bytes moving in `dir` on this connection.
    fn side(&self, dir: Direction) -> Side {
        if self.role.carries_requests(dir) {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// Feeds one event; calls it completes are appended to `calls`.
    pub fn push(
        &mut self,
        ev: &DataEvent<'_>,
        max_parents: usize,
        counters: &Counters,
        calls: &mut Vec<DbCall>,
    ) {
        let h = &ev.header;
        self.last_seen_ns = h.ts_ns;
        let side = self.side(ev.direction);
        if self.role == Role::Client
            && side == Side::Client
            && ev.ctx_role == CtxRole::InSpan
            && let Some(ident) = SpanIdentity::child_of_kernel(&h.ctx, ev.parent_source)
        {
            if self.parents.len() >= max_parents {
                self.parents.pop_front();
            }
            self.parents.push_back((h.ts_ns, ident));
        }
        let seg = Segment {
            ts_ns: h.ts_ns,
            len: h.total_len,
            head: ev.data,
            tail: ev.tail,
        };
        self.parser.push(side, &seg, calls);
        self.count_stats(counters);
    }

    /// The connection closed: what the parser can still report.
    pub fn finish(&mut self, counters: &Counters, calls: &mut Vec<DbCall>) {
        self.parser.finish(calls);
        self.count_stats(counters);
    }

    /// Adds what the parser counted since last time to the agent's counters.
    fn count_stats(&mut self, counters: &Counters) {
        let now = self.parser.stats();
        let before = std::mem::replace(&mut self.reported, now);
        let add = |c: &std::sync::atomic::AtomicU64, n: u64, m: u64| {
            c.fetch_add(n.saturating_sub(m), std::sync::atomic::Ordering::Relaxed);
        };
        add(
            &counters.db_desync_bytes,
            now.desync_bytes,
            before.desync_bytes,
        );
        add(
            &counters.db_dropped_calls,
            now.dropped_calls,
            before.dropped_calls,
        );
        add(
            &counters.db_tls_connections,
            now.tls_upgrades,
            before.tls_upgrades,
        );
    }

    /// The identity of a call that started at `start_ns`: the kernel's parent for its
    /// first segment, else a new trace. Parents of older segments are no longer needed;
    /// calls sent in one segment (pipelines) share its parent.
    pub fn identity(&mut self, start_ns: u64) -> SpanIdentity {
        while self.parents.front().is_some_and(|(ts, _)| *ts < start_ns) {
            self.parents.pop_front();
        }
        match self.parents.front() {
            Some((ts, ident)) if *ts == start_ns => SpanIdentity {
                span_id: super::model::SpanId::random(),
                ..*ident
            },
            _ => SpanIdentity::new_root(),
        }
    }

    pub fn build_span(
        &self,
        call: DbCall,
        ident: SpanIdentity,
        resource: Arc<Resource>,
        to_unix: &dyn Fn(u64) -> u64,
    ) -> Span {
        db_span::build_span(
            call,
            self.protocol.system(),
            ident,
            self.role.kind(),
            &self.ends,
            resource,
            to_unix,
        )
    }
}
