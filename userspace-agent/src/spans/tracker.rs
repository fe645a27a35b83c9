//! Connections to spans: each TCP connection's two byte streams are parsed, requests
//! are paired with responses in order (keep-alive, pipelining), and every finished
//! exchange becomes a span.
//!
//! Which side the traced process is on is decided from the bytes, not from accept or
//! connect, so connections that were open before the agent attached are traced too:
//! a process that reads a request is the server, one that writes a request the client.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::db_conn::{self, DbConn, Held, Protocols};
use super::db_span;
use super::http_span::{Endpoints, Exchange, Outcome, build_span};
use super::identity::{ParentLink, ParentSource, SpanIdentity};
use super::model::{Resource, Span, SpanKind};
use super::sdk::SdkProcesses;
use super::trace_join::{CallJoin, ServerCall, TraceJoin, take_first_named};
use crate::abi::{CtxFormat, CtxRole, DataEvent, Direction, InjectStatus, RawSockInfo};
use crate::metrics::Counters;
use crate::propagation::tracestate;
use crate::protocols::db::{DbCall, ParseOptions};
use crate::protocols::http1::{self, Http1Event, RequestStream, ResponseStream, Segment};

/// Limits that keep the tracker's memory bounded.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Requests in flight per connection (pipelining depth).
    pub max_pending: usize,
    /// A request without a complete response after this long is dropped and counted.
    pub request_timeout_ns: u64,
    /// A connection with nothing in flight is forgotten after this long.
    pub idle_timeout_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            max_pending: 64,
            request_timeout_ns: 30_000_000_000,
            idle_timeout_ns: 300_000_000_000,
        }
    }
}

/// TCP states from include/net/tcp_states.h that matter here.
mod tcp_state {
    pub const FIN_WAIT1: u8 = 4;
    pub const CLOSE: u8 = 7;
    pub const LAST_ACK: u8 = 9;
}

/// Which side of the protocol the traced process is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub(super) fn kind(self) -> SpanKind {
        match self {
            Role::Server => SpanKind::Server,
            Role::Client => SpanKind::Client,
        }
    }

    /// Does this direction carry requests for this role?
    pub(super) fn carries_requests(self, dir: Direction) -> bool {
        matches!(
            (self, dir),
            (Role::Server, Direction::Ingress) | (Role::Client, Direction::Egress)
        )
    }
}

/// The protocol state of one HTTP/1 connection.
struct HttpConn {
    role: Role,
    ends: Endpoints,
    tgid: u32,
    requests: RequestStream,
    responses: ResponseStream,
    /// In order: the front is the oldest request still waiting for (the end of) its response.
    pending: VecDeque<Exchange>,
    last_seen_ns: u64,
    /// The kernel's trace decision for the request whose first bytes it saw, kept until
    /// that request's head is complete (it may take several reads).
    kernel_ident: Option<SpanIdentity>,
    /// What the sk_msg program did to that request (client side).
    kernel_inject: InjectStatus,
    /// The descriptor the process last used for this socket.
    fd: i32,
    /// Bytes written so far, as of the last egress event (see `ReenrolRequest`).
    sent_bytes: u64,
    /// How much of the socket's folded egress (`RawSockInfo`) has been fed as segments.
    folded_seen: u64,
}

/// A client connection whose last exchange just completed with nothing else in flight:
/// it may go back into the injection sockhash for its next request, if the process has
/// written nothing since (`sent_bytes` still matches; checked by propagation::reenrol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReenrolRequest {
    pub tgid: u32,
    pub fd: i32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub sent_bytes: u64,
}

/// The first bytes of a connection, kept while they are too short to tell whether
/// they start an HTTP/1 message ("GET" arriving alone).
struct Undecided {
    dir: Direction,
    first_ts_ns: u64,
    bytes: Vec<u8>,
}

/// Longest prefix kept undecided: every request or status line is told apart by then.
const MAX_UNDECIDED: usize = 16;

/// How long a traced database server's span waits for the span of the traced client
/// that sent its query before it is reported on its own.
const DB_JOIN_WAIT_NS: u64 = 2_000_000_000;

/// A connection is HTTP/1, a database or cache protocol, or not (yet) recognised.
enum Conn {
    Unknown {
        counted: bool,
        last_seen_ns: u64,
        undecided: Option<Undecided>,
    },
    Http(Box<HttpConn>),
    Db(Box<DbConn>),
}

impl Conn {
    fn last_seen(&self) -> u64 {
        match self {
            Conn::Unknown { last_seen_ns, .. } => *last_seen_ns,
            Conn::Http(c) => c.last_seen_ns,
            Conn::Db(c) => c.last_seen_ns,
        }
    }

    fn ends(&self) -> Option<&Endpoints> {
        match self {
            Conn::Unknown { .. } => None,
            Conn::Http(c) => Some(&c.ends),
            Conn::Db(c) => Some(&c.ends),
        }
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
enum Detection {
    Http(Role),
    NotHttp,
    /// Too short to tell, but could still become a request or status line.
    NeedMore,
}

/// Decides the role from the first bytes seen.
fn detect(dir: Direction, head: &[u8]) -> Detection {
    match (
        dir,
        http1::looks_like_request(head),
        http1::looks_like_response(head),
    ) {
        (Direction::Ingress, true, _) | (Direction::Egress, _, true) => {
            Detection::Http(Role::Server)
        }
        (Direction::Egress, true, _) | (Direction::Ingress, _, true) => {
            Detection::Http(Role::Client)
        }
        _ if could_become_start_line(head) => Detection::NeedMore,
        _ => Detection::NotHttp,
    }
}

fn could_become_start_line(bytes: &[u8]) -> bool {
    const STARTS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"HTTP/1.",
    ];
    bytes.len() < MAX_UNDECIDED
        && STARTS
            .iter()
            .any(|s| s.starts_with(bytes) || (bytes.starts_with(s) && bytes.len() < s.len() + 5))
}

fn socket_addr(family: u8, addr: &[u8; 16], port: u16) -> SocketAddr {
    const AF_INET6: u8 = 10;
    let ip = if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    // A dual-stack server ([::]:port) sees IPv4 peers as ::ffff:a.b.c.d; the same-host
    // join compares with the client's plain IPv4 tuple.
    SocketAddr::new(ip.to_canonical(), port)
}

/// Supplies the resource of a traced process (the process cache in production).
pub type ResourceFn = Box<dyn FnMut(u32) -> Arc<Resource> + Send>;

pub struct Tracker {
    /// By kernel socket address: foldhash, not SipHash (the keys are not chosen by peers).
    conns: foldhash::HashMap<u64, Conn>,
    join: TraceJoin,
    calls: CallJoin,
    db_options: ParseOptions,
    db_protocols: Protocols,
    /// Spans `tick` released (database server spans that waited in vain for their
    /// client's); reported with the next event's.
    released: Vec<Span>,
    /// Processes whose own OpenTelemetry SDK makes their spans.
    sdk: SdkProcesses,
    limits: Limits,
    resources: ResourceFn,
    counters: Arc<Counters>,
    /// Reused between events to avoid an allocation per segment.
    scratch: Vec<Http1Event>,
    /// Re-enrolment candidates since the last `take_reenrol_requests` (None: injection off).
    reenrol: Option<Vec<ReenrolRequest>>,
}

/// The [`Ctx`] for `apply`, borrowed from the tracker field by field, so that a connection
/// borrowed from `conns` can be used beside it.
macro_rules! tracker_ctx {
    ($tracker:ident, $to_unix:expr, $out:expr) => {
        Ctx {
            join: &mut $tracker.join,
            sdk: &mut $tracker.sdk,
            resources: &mut $tracker.resources,
            counters: &$tracker.counters,
            limits: &$tracker.limits,
            to_unix: $to_unix,
            out: $out,
            reenrol: $tracker.reenrol.as_mut(),
        }
    };
}

impl Tracker {
    pub fn new(limits: Limits, resources: ResourceFn, counters: Arc<Counters>) -> Self {
        Self {
            conns: foldhash::HashMap::default(),
            join: TraceJoin::default(),
            calls: CallJoin::default(),
            db_options: ParseOptions::default(),
            db_protocols: Protocols::default(),
            released: Vec::new(),
            sdk: SdkProcesses::default(),
            limits,
            resources,
            counters,
            scratch: Vec::new(),
            reenrol: None,
        }
    }

    /// Collect re-enrolment candidates (injection is on).
    pub fn enable_reenrol(&mut self) {
        self.reenrol.get_or_insert_with(Vec::new);
    }

    /// Candidates collected since the last call, oldest first.
    pub fn take_reenrol_requests(&mut self, into: &mut Vec<ReenrolRequest>) {
        if let Some(list) = self.reenrol.as_mut() {
            into.append(list);
        }
    }

    /// Options for the database and cache parsers (query text obfuscation).
    pub fn with_db_options(mut self, opts: ParseOptions) -> Self {
        self.db_options = opts;
        self
    }

    #[cfg(test)]
    fn with_db_protocols(mut self, protocols: Protocols) -> Self {
        self.db_protocols = protocols;
        self
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one data event; finished spans are pushed to `out` (trace IDs mapped to wall
    /// clock by `to_unix`).
    pub fn on_data(
        &mut self,
        ev: &DataEvent<'_>,
        to_unix: &dyn Fn(u64) -> u64,
        out: &mut Vec<Span>,
    ) {
        out.append(&mut self.released);
        let h = &ev.header;
        let sock = h.sock_id;
        let local = socket_addr(h.family, &h.local_addr, h.local_port);
        let remote = socket_addr(h.family, &h.remote_addr, h.remote_port);
        // The kernel reuses a closed socket's memory; if its close was missed (ring full),
        // a different 4-tuple at the same address is a new connection.
        if let Some(ends) = self.conns.get(&sock).and_then(Conn::ends)
            && (ends.local != local || ends.remote != remote)
            && let Some(stale) = self.conns.remove(&sock)
        {
            Counters::inc(&self.counters.stale_connections);
            self.close(stale, h.ts_ns, to_unix, out);
        }
        if !self.conns.contains_key(&sock) {
            self.make_room();
            Counters::inc(&self.counters.connections_tracked);
            self.conns.insert(
                sock,
                Conn::Unknown {
                    counted: false,
                    last_seen_ns: h.ts_ns,
                    undecided: None,
                },
            );
        }
        self.catch_up_folded(sock, h.folded_bytes, h.folded_ts_ns, to_unix, out);
        let Some(conn) = self.conns.get_mut(&sock) else {
            return;
        };

        // Bytes held back while undecided are replayed as one segment that starts at the
        // first of them, so the span starts at the request's first byte.
        let mut replay: Option<Undecided> = None;
        if let Conn::Unknown {
            counted,
            last_seen_ns,
            undecided,
        } = conn
        {
            *last_seen_ns = h.ts_ns;
            let fully_captured = ev.data.len() as u64 == h.total_len;
            let mut pending = match undecided.take() {
                Some(u) if u.dir == ev.direction && fully_captured => u,
                _ => Undecided {
                    dir: ev.direction,
                    first_ts_ns: h.ts_ns,
                    bytes: Vec::new(),
                },
            };
            let joined = !pending.bytes.is_empty();
            pending
                .bytes
                .extend_from_slice(&ev.data[..ev.data.len().min(MAX_UNDECIDED)]);
            let role = match detect(ev.direction, &pending.bytes) {
                Detection::Http(role) => role,
                Detection::NeedMore if fully_captured => {
                    *undecided = Some(pending);
                    return;
                }
                Detection::NeedMore | Detection::NotHttp => {
                    if let Some((protocol, role)) = db_conn::detect(
                        &self.db_protocols,
                        ev.direction,
                        ev.data,
                        h.local_port,
                        h.remote_port,
                    ) {
                        let ends = Endpoints::new(local, remote);
                        match role {
                            Role::Client => self.calls.client_seen(local, remote),
                            Role::Server => self.calls.server_seen(local, remote, sock),
                        }
                        *conn = Conn::Db(Box::new(DbConn::new(
                            protocol,
                            role,
                            ends,
                            h.tgid,
                            h.ts_ns,
                            (self.db_protocols.parser)(protocol, self.db_options),
                        )));
                        self.on_db_data(sock, ev, to_unix, out);
                        return;
                    }
                    if !*counted {
                        *counted = true;
                        Counters::inc(&self.counters.unknown_protocol_connections);
                    }
                    return;
                }
            };
            if joined {
                // Replay the held bytes plus this event's from the full data below.
                pending
                    .bytes
                    .truncate(pending.bytes.len() - ev.data.len().min(MAX_UNDECIDED));
                replay = Some(pending);
            }
            let ends = Endpoints::new(local, remote);
            *conn = Conn::Http(Box::new(HttpConn {
                role,
                ends,
                tgid: h.tgid,
                requests: RequestStream::new(),
                responses: ResponseStream::new(),
                pending: VecDeque::new(),
                last_seen_ns: h.ts_ns,
                kernel_ident: None,
                kernel_inject: InjectStatus::None,
                fd: h.fd,
                sent_bytes: 0,
                // Folded before the connection was recognised: not part of its messages.
                folded_seen: h.folded_bytes,
            }));
        }
        let c = match conn {
            Conn::Http(c) => c,
            Conn::Db(_) => return self.on_db_data(sock, ev, to_unix, out),
            Conn::Unknown { .. } => return,
        };
        c.last_seen_ns = h.ts_ns;
        c.fd = h.fd;
        if ev.direction == Direction::Egress {
            c.sent_bytes = h.sent_bytes;
        }

        let seg = Segment {
            ts_ns: h.ts_ns,
            len: h.total_len,
            head: ev.data,
            tail: ev.tail,
        };
        let request_side = c.role.carries_requests(ev.direction);
        // The kernel's trace decision belongs to the request that starts this segment.
        let expected_role = match c.role {
            Role::Server => CtxRole::ServerRequest,
            Role::Client => CtxRole::ClientRequest,
        };
        if ev.ctx_role == expected_role {
            c.kernel_ident = SpanIdentity::from_kernel(&h.ctx, ev.parent_source, ev.ctx_format);
            c.kernel_inject = ev.inject_status;
        }

        let joined_bytes;
        let seg = match &replay {
            Some(held) => {
                joined_bytes = [held.bytes.as_slice(), ev.data].concat();
                Segment {
                    ts_ns: held.first_ts_ns,
                    len: held.bytes.len() as u64 + h.total_len,
                    head: &joined_bytes,
                    tail: ev.tail,
                }
            }
            None => seg,
        };
        Self::feed(
            c,
            request_side,
            &seg,
            &mut self.scratch,
            tracker_ctx!(self, to_unix, out),
        );
    }

    /// Feeds one segment to the stream of its direction and applies what it completes;
    /// `events` is scratch space, left empty.
    fn feed(
        c: &mut HttpConn,
        request_side: bool,
        seg: &Segment<'_>,
        events: &mut Vec<Http1Event>,
        mut ctx: Ctx<'_>,
    ) {
        events.clear();
        if request_side {
            c.requests.push(seg, events);
        } else {
            c.responses.push(seg, events);
        }
        for event in events.drain(..) {
            Self::apply(c, request_side, event, ctx.reborrow());
        }
    }

    /// Egress the kernel folded into the socket's running total instead of reporting it
    /// (sendfile, splice: no bytes to show), up to `total`: fed as one segment, sent at
    /// `ts_ns` (the last of them), ahead of whatever the socket reports next.
    pub fn catch_up_folded(
        &mut self,
        sock: u64,
        total: u64,
        ts_ns: u64,
        to_unix: &dyn Fn(u64) -> u64,
        out: &mut Vec<Span>,
    ) {
        let Some(Conn::Http(c)) = self.conns.get_mut(&sock) else {
            return;
        };
        let len = match total.checked_sub(c.folded_seen) {
            Some(0) => return,
            Some(len) => len,
            // The kernel's entry was evicted and started again: nothing to recover.
            None => {
                c.folded_seen = total;
                return;
            }
        };
        c.folded_seen = total;
        c.sent_bytes += len;
        c.last_seen_ns = c.last_seen_ns.max(ts_ns);
        let seg = Segment {
            ts_ns,
            len,
            head: &[],
            tail: &[],
        };
        let request_side = c.role.carries_requests(Direction::Egress);
        Self::feed(
            c,
            request_side,
            &seg,
            &mut self.scratch,
            tracker_ctx!(self, to_unix, out),
        );
    }

    /// Server connections that went quiet (nothing reported for `quiet_ns`) in the middle
    /// of a response: its end may be folded egress no later record will carry, so the
    /// caller reads the kernel's total for them ([`Tracker::on_sock_info`]). A client's
    /// folded request body needs no read: the response that completes its span comes
    /// after it, carrying the total. At most `limit`.
    pub fn quiet_open_exchanges(&self, now_ns: u64, quiet_ns: u64, limit: usize) -> Vec<u64> {
        self.conns
            .iter()
            .filter_map(|(sock, conn)| match conn {
                Conn::Http(c)
                    if c.role == Role::Server
                        && c.pending.front().is_some_and(|ex| ex.response.is_some())
                        && now_ns.saturating_sub(c.last_seen_ns) >= quiet_ns =>
                {
                    Some(*sock)
                }
                _ => None,
            })
            .take(limit)
            .collect()
    }

    /// The kernel's record of socket `sock`, read by userspace: catches up on its folded
    /// egress, if it still describes the same connection.
    pub fn on_sock_info(
        &mut self,
        sock: u64,
        info: &RawSockInfo,
        to_unix: &dyn Fn(u64) -> u64,
        out: &mut Vec<Span>,
    ) {
        let local = socket_addr(info.family, &info.local_addr, info.local_port);
        let remote = socket_addr(info.family, &info.remote_addr, info.remote_port);
        let same = self
            .conns
            .get(&sock)
            .and_then(Conn::ends)
            .is_some_and(|ends| info.sk == sock && ends.local == local && ends.remote == remote);
        if same {
            self.catch_up_folded(sock, info.folded_bytes, info.folded_ts_ns, to_unix, out);
        }
    }

    fn apply(c: &mut HttpConn, request_side: bool, event: Http1Event, mut ctx: Ctx<'_>) {
        match event {
            Http1Event::RequestStart { ts_ns, head } => {
                // A response of unknown length ends when the next request starts.
                let mut ended = Vec::new();
                c.responses.end_at_peer_turn(&mut ended);
                for e in ended {
                    Self::apply(c, false, e, ctx.reborrow());
                }
                let mut ident = c.kernel_ident.take().unwrap_or_else(SpanIdentity::new_root);
                ident.trace_id = ctx.join.resolve(ident.trace_id);
                match c.role {
                    // A parent the kernel took from a header wins over a same-host guess.
                    Role::Server => {
                        ctx.join
                            .server_request(c.ends.local, c.ends.remote, &mut ident)
                    }
                    Role::Client => ctx.join.client_request(
                        c.ends.local,
                        c.ends.remote,
                        &ident,
                        c.kernel_inject == InjectStatus::Injected,
                    ),
                }
                if let Some(evidence) = ctx.sdk.on_request(c.tgid, c.role.kind(), &ident, &head) {
                    log::warn!(
                        "pid {}: {evidence}, so an OpenTelemetry SDK traces it; its spans are \
                         left to that SDK from now on (counter spans_suppressed_sdk)",
                        c.tgid
                    );
                }
                // tracestate travels with a traceparent, and only that one was validated.
                let trace_state = ident
                    .parent
                    .and_then(|p| p.source.header_format())
                    .filter(|f| *f == CtxFormat::W3c)
                    .and_then(|_| {
                        tracestate::from_headers(
                            head.headers
                                .iter()
                                .filter(|(name, _)| *name == "tracestate")
                                .map(|(_, value)| value),
                        )
                    });
                if c.pending.len() >= ctx.limits.max_pending {
                    // The response parser expects one response per request: dropping one
                    // exchange would pair every later response with the wrong request.
                    // Start this connection's pairing over instead.
                    ctx.counters
                        .pending_dropped
                        .fetch_add(c.pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    c.pending.clear();
                    c.responses = ResponseStream::new();
                }
                c.responses.expect_response(&head.method);
                c.pending.push_back(Exchange {
                    ident,
                    trace_state,
                    resource: (ctx.resources)(c.tgid),
                    request: head,
                    start_ns: ts_ns,
                    request_body_bytes: None,
                    response: None,
                    response_body_bytes: None,
                    timed_out: false,
                    inject: std::mem::replace(&mut c.kernel_inject, InjectStatus::None),
                });
            }
            Http1Event::ResponseStart { ts_ns: _, head } => {
                let mut ended = Vec::new();
                c.requests.end_at_peer_turn(&mut ended);
                for e in ended {
                    Self::apply(c, true, e, ctx.reborrow());
                }
                match c.pending.iter_mut().find(|ex| ex.response.is_none()) {
                    Some(ex) => ex.response = Some(head),
                    None => Counters::inc(&ctx.counters.unpaired_responses),
                }
            }
            Http1Event::MessageEnd {
                ts_ns: _,
                body_bytes,
            } if request_side => {
                if let Some(ex) = c.pending.back_mut() {
                    ex.request_body_bytes = Some(body_bytes);
                }
            }
            Http1Event::MessageEnd { ts_ns, body_bytes } => {
                if c.pending.front().is_some_and(|ex| ex.response.is_some())
                    && let Some(mut ex) = c.pending.pop_front()
                {
                    ex.response_body_bytes = Some(body_bytes);
                    Self::finish(c, ex, Outcome::Complete { end_ns: ts_ns }, &mut ctx);
                    if c.role == Role::Client
                        && c.pending.is_empty()
                        && let Some(reenrol) = ctx.reenrol.as_deref_mut()
                    {
                        reenrol.push(ReenrolRequest {
                            tgid: c.tgid,
                            fd: c.fd,
                            local: c.ends.local,
                            remote: c.ends.remote,
                            sent_bytes: c.sent_bytes,
                        });
                    }
                }
            }
            Http1Event::NotHttp { .. } => {
                c.kernel_ident = None;
                Counters::inc(&ctx.counters.http_desyncs);
            }
        }
    }

    fn finish(c: &HttpConn, ex: Exchange, outcome: Outcome, ctx: &mut Ctx<'_>) {
        if c.role == Role::Client {
            ctx.join
                .client_done(c.ends.local, c.ends.remote, ex.ident.span_id);
        }
        // Already counted as timed out: its response only had to be consumed.
        if ex.timed_out {
            return;
        }
        if ctx.sdk.is_recognised(c.tgid) {
            Counters::inc(&ctx.counters.spans_suppressed_sdk);
            return;
        }
        let mut span = build_span(ex, c.role.kind(), &c.ends, outcome, ctx.to_unix);
        span.trace_id = ctx.join.resolve(span.trace_id);
        Counters::inc(&ctx.counters.spans_built);
        ctx.out.push(span);
    }

    fn on_db_data(
        &mut self,
        sock: u64,
        ev: &DataEvent<'_>,
        to_unix: &dyn Fn(u64) -> u64,
        out: &mut Vec<Span>,
    ) {
        let Some(Conn::Db(c)) = self.conns.get_mut(&sock) else {
            return;
        };
        let mut calls = Vec::new();
        c.push(ev, self.limits.max_pending, &self.counters, &mut calls);
        if calls.is_empty() {
            return;
        }
        // Out of the table while its calls are joined with other connections' spans.
        let Some(Conn::Db(mut c)) = self.conns.remove(&sock) else {
            return;
        };
        self.db_calls_done(&mut c, calls, to_unix, out);
        self.conns.insert(sock, Conn::Db(c));
    }

    /// Finished calls of a connection become spans; a traced client's span and the
    /// traced server's span of the same call are joined.
    fn db_calls_done(
        &mut self,
        c: &mut DbConn,
        calls: Vec<DbCall>,
        to_unix: &dyn Fn(u64) -> u64,
        out: &mut Vec<Span>,
    ) {
        // The process's own SDK reports its database calls (spans/sdk.rs).
        if self.sdk.is_recognised(c.tgid) {
            let n = calls.len() as u64;
            Counters::add(&self.counters.db_calls, n);
            Counters::add(&self.counters.spans_suppressed_sdk, n);
            return;
        }
        for call in calls {
            Counters::inc(&self.counters.db_calls);
            Counters::inc(&self.counters.spans_built);
            let (local, remote, role) = (c.ends.local, c.ends.remote, c.role);
            let resource = (self.resources)(c.tgid);
            let ident = match role {
                Role::Client => {
                    let mut ident = c.identity(call.start_ns);
                    ident.trace_id = self.join.resolve(ident.trace_id);
                    ident
                }
                Role::Server => SpanIdentity::new_root(),
            };
            let mut span = c.build_span(call, ident, resource, to_unix);
            match role {
                Role::Client => {
                    self.join_waiting_server(local, remote, &span, out);
                    out.push(span);
                }
                Role::Server => match self.calls.server_finished(local, remote, &span.name) {
                    ServerCall::Parent(trace_id, link) => {
                        db_span::adopt(&mut span, trace_id, link);
                        out.push(span);
                    }
                    ServerCall::Root => out.push(span),
                    ServerCall::Wait => {
                        if c.held.len() >= self.limits.max_pending
                            && let Some(oldest) = c.held.pop_front()
                        {
                            Counters::inc(&self.counters.db_unjoined_server_calls);
                            out.push(oldest.span);
                        }
                        c.held.push_back(Held {
                            span,
                            since_ns: c.last_seen_ns,
                        });
                    }
                },
            }
        }
    }

    /// A traced client's call finished: the traced server's span of it, if it is
    /// waiting, becomes its child; otherwise the server will find it when it finishes.
    fn join_waiting_server(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        client: &Span,
        out: &mut Vec<Span>,
    ) {
        let Some(server_sock) = self.calls.server_of(local, remote) else {
            return;
        };
        let waiting = match self.conns.get_mut(&server_sock) {
            Some(Conn::Db(server)) => {
                let lost_before = server.held.len();
                let found = take_first_named(&mut server.held, &client.name, |h| &h.span.name);
                if let Some(held) = found {
                    let lost = lost_before - server.held.len() - 1;
                    self.counters
                        .db_unjoined_server_calls
                        .fetch_add(lost as u64, std::sync::atomic::Ordering::Relaxed);
                    Some(held)
                } else {
                    None
                }
            }
            _ => None,
        };
        match waiting {
            Some(mut held) => {
                let link = ParentLink {
                    span_id: client.span_id,
                    source: ParentSource::LocalPeer,
                };
                db_span::adopt(&mut held.span, client.trace_id, link);
                out.push(held.span);
            }
            None => {
                let ident = SpanIdentity {
                    trace_id: client.trace_id,
                    span_id: client.span_id,
                    parent: None,
                };
                self.calls
                    .client_finished(local, remote, &client.name, &ident);
            }
        }
    }

    /// A TCP state change of a socket that carried data.
    pub fn on_sock_state(
        &mut self,
        sock: u64,
        new: u8,
        ts_ns: u64,
        to_unix: &dyn Fn(u64) -> u64,
        out: &mut Vec<Span>,
    ) {
        match new {
            tcp_state::CLOSE | tcp_state::LAST_ACK => {
                if let Some(conn) = self.conns.remove(&sock) {
                    self.close(conn, ts_ns, to_unix, out);
                }
            }
            // Our side stopped writing: a server's response delimited by close ends here.
            tcp_state::FIN_WAIT1 => {
                if let Some(Conn::Http(c)) = self.conns.get_mut(&sock)
                    && c.role == Role::Server
                {
                    // A cut-off response stays pending and fails when the socket closes.
                    let mut events = Vec::new();
                    let _cut = c.responses.finish(&mut events);
                    let mut ctx = tracker_ctx!(self, to_unix, out);
                    for e in events {
                        Self::apply(c, false, e, ctx.reborrow());
                    }
                }
            }
            _ => {}
        }
    }

    /// The connection is gone: finish what can be finished, fail the rest.
    fn close(&mut self, conn: Conn, ts_ns: u64, to_unix: &dyn Fn(u64) -> u64, out: &mut Vec<Span>) {
        let mut c = match conn {
            Conn::Http(c) => c,
            Conn::Db(c) => return self.close_db(c, to_unix, out),
            Conn::Unknown { .. } => return,
        };
        let mut ctx = tracker_ctx!(self, to_unix, out);
        let mut events = Vec::new();
        let _ = c.requests.finish(&mut events);
        for e in events.drain(..) {
            Self::apply(&mut c, true, e, ctx.reborrow());
        }
        let cut = c.responses.finish(&mut events);
        for e in events.drain(..) {
            Self::apply(&mut c, false, e, ctx.reborrow());
        }
        let cut_end = cut.map(|i| i.ts_ns);
        while let Some(ex) = c.pending.pop_front() {
            let response_started = ex.response.is_some();
            let end_ns = cut_end
                .filter(|_| response_started)
                .unwrap_or(ts_ns.max(c.last_seen_ns));
            Self::finish(
                &c,
                ex,
                Outcome::Cut {
                    end_ns,
                    response_started,
                },
                &mut ctx,
            );
        }
    }

    /// A database connection is gone: the parser reports what it still can, held server
    /// spans are reported on their own.
    fn close_db(&mut self, mut c: Box<DbConn>, to_unix: &dyn Fn(u64) -> u64, out: &mut Vec<Span>) {
        let mut calls = Vec::new();
        c.finish(&self.counters, &mut calls);
        self.db_calls_done(&mut c, calls, to_unix, out);
        let (local, remote) = (c.ends.local, c.ends.remote);
        match c.role {
            Role::Client => self.calls.client_closed(local, remote),
            Role::Server => self.calls.server_closed(local, remote),
        }
        for held in c.held.drain(..) {
            Counters::inc(&self.counters.db_unjoined_server_calls);
            out.push(held.span);
        }
    }

    /// Periodic housekeeping: time out stuck requests and idle connections.
    pub fn tick(&mut self, now_ns: u64) {
        let limits = self.limits;
        let counters = &self.counters;
        let released = &mut self.released;
        self.conns.retain(|_, conn| {
            if let Conn::Db(c) = conn {
                while c
                    .held
                    .front()
                    .is_some_and(|h| now_ns.saturating_sub(h.since_ns) > DB_JOIN_WAIT_NS)
                    && let Some(h) = c.held.pop_front()
                {
                    Counters::inc(&counters.db_unjoined_server_calls);
                    released.push(h.span);
                }
            }
            if let Conn::Http(c) = conn {
                // Timed-out exchanges stay in line (marked) so a late response still
                // pairs with its own request, never with the next one.
                let mut waiting = false;
                for ex in c.pending.iter_mut().filter(|ex| !ex.timed_out) {
                    if now_ns.saturating_sub(ex.start_ns) > limits.request_timeout_ns {
                        ex.timed_out = true;
                        Counters::inc(&counters.requests_timed_out);
                    } else {
                        waiting = true;
                    }
                }
                if waiting {
                    return true;
                }
            }
            now_ns.saturating_sub(conn.last_seen()) <= limits.idle_timeout_ns
        });
    }

    /// When the table is full, drops the least recently used 1/64 of it in one pass, so
    /// a flood of new connections costs O(1) per connection, not a scan each.
    fn make_room(&mut self) {
        if self.conns.len() < self.limits.max_connections {
            return;
        }
        let mut ages: Vec<(u64, u64)> = self
            .conns
            .iter()
            .map(|(k, c)| (c.last_seen(), *k))
            .collect();
        let evict = (ages.len() / 64).max(1);
        ages.select_nth_unstable(evict - 1);
        for (_, k) in &ages[..evict] {
            self.conns.remove(k);
            Counters::inc(&self.counters.connections_evicted);
        }
    }

    /// A traced process exited (its pid may come back as another program).
    pub fn process_exited(&mut self, tgid: u32) {
        self.sdk.exited(tgid);
    }

    /// Agent shutdown: requests still in flight are counted as timed out, not guessed.
    pub fn shutdown(&mut self) {
        for conn in self.conns.values() {
            if let Conn::Http(c) = conn {
                for _ in c.pending.iter().filter(|ex| !ex.timed_out) {
                    Counters::inc(&self.counters.requests_timed_out);
                }
            }
        }
        self.conns.clear();
    }
}

/// What `apply` needs besides the connection, borrowed from the tracker.
struct Ctx<'a> {
    join: &'a mut TraceJoin,
    sdk: &'a mut SdkProcesses,
    resources: &'a mut ResourceFn,
    counters: &'a Counters,
    limits: &'a Limits,
    to_unix: &'a dyn Fn(u64) -> u64,
    out: &'a mut Vec<Span>,
    /// Where re-enrolment candidates go, when injection is on.
    reenrol: Option<&'a mut Vec<ReenrolRequest>>,
}

impl Ctx<'_> {
    fn reborrow(&mut self) -> Ctx<'_> {
        Ctx {
            join: self.join,
            sdk: self.sdk,
            resources: self.resources,
            counters: self.counters,
            limits: self.limits,
            to_unix: self.to_unix,
            out: self.out,
            reenrol: self.reenrol.as_deref_mut(),
        }
    }
}

#[cfg(test)]
mod db_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{
        CtxFormat, InjectStatus, KernelParentSource, RawDataHeader, RawTraceCtx, TAIL_BYTES,
    };
    use crate::spans::{KeyValue, Status, Value};

    const SERVER_SOCK: u64 = 0xaaaa;
    const CLIENT_SOCK: u64 = 0xbbbb;

    fn resource(pid: u32) -> Arc<Resource> {
        Arc::new(Resource {
            service_name: format!("svc{pid}"),
            attributes: vec![KeyValue::new("process.pid", i64::from(pid))],
        })
    }

    fn tracker() -> (Tracker, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let t = Tracker::new(Limits::default(), Box::new(resource), Arc::clone(&counters));
        (t, counters)
    }

    pub(super) struct Ev {
        pub sock: u64,
        pub dir: Direction,
        pub ts: u64,
        pub bytes: Vec<u8>,
        pub total: u64,
        pub role: CtxRole,
        pub ctx: RawTraceCtx,
        pub source: KernelParentSource,
        pub format: CtxFormat,
        pub local_port: u16,
        pub remote_port: u16,
        pub tgid: u32,
        /// The socket's folded egress total and its time (`RawSockInfo`).
        pub folded: (u64, u64),
    }

    pub(super) fn ev(sock: u64, dir: Direction, ts: u64, bytes: &[u8]) -> Ev {
        Ev {
            sock,
            dir,
            ts,
            bytes: bytes.to_vec(),
            total: bytes.len() as u64,
            role: CtxRole::None,
            ctx: RawTraceCtx::default(),
            source: KernelParentSource::None,
            format: CtxFormat::None,
            local_port: if sock == SERVER_SOCK { 8080 } else { 40000 },
            remote_port: if sock == SERVER_SOCK { 40000 } else { 8080 },
            tgid: 42,
            folded: (0, 0),
        }
    }

    pub(super) fn feed(t: &mut Tracker, e: &Ev, out: &mut Vec<Span>) {
        let mut local_addr = [0u8; 16];
        local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let header = RawDataHeader {
            kind: crate::abi::EV_DATA,
            direction: e.dir as u8,
            syscall: 1,
            family: 2,
            ctx_role: e.role as u8,
            parent_source: e.source as u8,
            tail_len: 0,
            tgid: e.tgid,
            tid: e.tgid,
            ts_ns: e.ts,
            sock_id: e.sock,
            total_len: e.total,
            captured_len: e.bytes.len() as u32,
            local_port: e.local_port,
            remote_port: e.remote_port,
            local_addr,
            remote_addr: local_addr,
            ctx_format: e.format as u8,
            inject_status: 0,
            trace_flags: 1,
            _pad: 0,
            fd: 3,
            sent_bytes: 0,
            folded_bytes: e.folded.0,
            folded_ts_ns: e.folded.1,
            ctx: e.ctx,
            tail: [0; TAIL_BYTES],
        };
        let data = DataEvent {
            header,
            direction: e.dir,
            ctx_role: e.role,
            parent_source: e.source,
            ctx_format: e.format,
            inject_status: InjectStatus::None,
            data: &e.bytes,
            tail: &[],
        };
        t.on_data(&data, &|ns| ns, out);
    }

    fn attr<'a>(s: &'a Span, k: &str) -> &'a Value {
        s.attr(k).unwrap_or_else(|| panic!("missing {k} in {s:?}"))
    }

    #[test]
    fn keep_alive_server_requests_pair_in_order() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        for (i, path) in ["/a", "/b", "/c"].iter().enumerate() {
            let base = 1000 * (i as u64 + 1);
            let req =
                format!("GET {path} HTTP/1.1\r\nHost: example:8080\r\nUser-Agent: curl/8\r\n\r\n");
            feed(
                &mut t,
                &ev(SERVER_SOCK, Direction::Ingress, base, req.as_bytes()),
                &mut out,
            );
            feed(
                &mut t,
                &ev(
                    SERVER_SOCK,
                    Direction::Egress,
                    base + 10,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                ),
                &mut out,
            );
        }
        assert_eq!(out.len(), 3);
        let names: Vec<_> = out.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["GET /a", "GET /b", "GET /c"]);
        let s = &out[1];
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!((s.start_unix_nano, s.end_unix_nano), (2000, 2010));
        assert_eq!(attr(s, "http.response.status_code"), &Value::Int(200));
        assert_eq!(attr(s, "http.response.body.size"), &Value::Int(5));
        assert_eq!(attr(s, "server.address"), &Value::Str("example".into()));
        assert_eq!(attr(s, "client.port"), &Value::Int(40000));
        assert_eq!(attr(s, "user_agent.original"), &Value::Str("curl/8".into()));
        assert_eq!(s.status, Status::Unset);
    }

    /// sendfile'd bodies reach the tracker as the socket's folded total: carried by the
    /// next record, or read from the kernel for a quiet connection (only when the kernel's
    /// entry still describes the same 4-tuple).
    #[test]
    fn folded_egress_completes_responses() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
        let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Ingress, 1000, req("/a").as_bytes()),
            &mut out,
        );
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 1010, head),
            &mut out,
        );
        assert!(out.is_empty(), "the body is still due");
        // The next request's record carries the first body, sent at 1500.
        let mut next = ev(SERVER_SOCK, Direction::Ingress, 2000, req("/b").as_bytes());
        next.folded = (5000, 1500);
        feed(&mut t, &next, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].start_unix_nano, out[0].end_unix_nano), (1000, 1500));
        assert_eq!(attr(&out[0], "http.response.body.size"), &Value::Int(5000));
        assert_eq!(
            t.quiet_open_exchanges(2000 + 1000, 100, 10),
            Vec::<u64>::new(),
            "no response started: nothing can be folded into it"
        );

        let mut head_b = ev(SERVER_SOCK, Direction::Egress, 2010, head);
        head_b.folded = (5000, 1500);
        feed(&mut t, &head_b, &mut out);
        assert_eq!(out.len(), 1, "nothing new was folded");
        assert_eq!(
            t.quiet_open_exchanges(2010 + 50, 100, 10),
            Vec::<u64>::new()
        );
        assert_eq!(
            t.quiet_open_exchanges(2010 + 100, 100, 10),
            vec![SERVER_SOCK]
        );
        let mut info = RawSockInfo {
            sk: SERVER_SOCK,
            family: 2,
            local_port: 8080,
            remote_port: 40001, // another connection at this address: ignored
            folded_bytes: 10_000,
            folded_ts_ns: 2500,
            ..RawSockInfo::default()
        };
        info.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        info.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t.on_sock_info(SERVER_SOCK, &info, &|ns| ns, &mut out);
        assert_eq!(out.len(), 1);
        info.remote_port = 40000;
        t.on_sock_info(SERVER_SOCK, &info, &|ns| ns, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].name, "GET /b");
        assert_eq!((out[1].start_unix_nano, out[1].end_unix_nano), (2000, 2500));
        assert_eq!(attr(&out[1], "http.response.body.size"), &Value::Int(5000));

        // A smaller total: the kernel's entry started again. Nothing is invented.
        let mut again = ev(SERVER_SOCK, Direction::Ingress, 3000, req("/c").as_bytes());
        again.folded = (100, 2900);
        feed(&mut t, &again, &mut out);
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Egress,
                3010,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(attr(&out[2], "http.response.body.size"), &Value::Int(2));
    }

    #[test]
    fn pipelined_requests_each_get_their_response() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let reqs = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n";
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Ingress, 10, reqs),
            &mut out,
        );
        let resps = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 20, resps),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "GET /one");
        assert_eq!(attr(&out[0], "http.response.status_code"), &Value::Int(200));
        assert_eq!(out[1].name, "GET /two");
        assert_eq!(attr(&out[1], "http.response.status_code"), &Value::Int(404));
        // A 404 is not a server error.
        assert_eq!(out[1].status, Status::Unset);
        assert_ne!(out[0].span_id, out[1].span_id);
    }

    #[test]
    fn kernel_ids_and_parent_are_used() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let ctx = RawTraceCtx {
            trace_id: [7; 16],
            span_id: [8; 8],
            parent_span_id: [9; 8],
        };
        let mut e = ev(
            CLIENT_SOCK,
            Direction::Egress,
            5,
            b"GET /x?token=abc HTTP/1.1\r\nHost: api:8080\r\n\r\n",
        );
        e.role = CtxRole::ClientRequest;
        e.ctx = ctx;
        e.source = KernelParentSource::Thread;
        feed(&mut t, &e, &mut out);
        feed(
            &mut t,
            &ev(
                CLIENT_SOCK,
                Direction::Ingress,
                9,
                b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.trace_id.0, [7; 16]);
        assert_eq!(s.span_id.0, [8; 8]);
        assert_eq!(s.parent_span_id.map(|p| p.0), Some([9; 8]));
        assert_eq!(attr(s, "sonde.parent.source"), &Value::Str("thread".into()));
        assert_eq!(
            attr(s, "url.full"),
            &Value::Str("http://api:8080/x?token=REDACTED".into())
        );
        assert_eq!(attr(s, "url.query"), &Value::Str("token=REDACTED".into()));
        assert!(matches!(s.status, Status::Error { .. }));
    }

    #[test]
    fn close_mid_response_is_an_error_span() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                10,
                b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            &mut out,
        );
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Egress,
                20,
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial",
            ),
            &mut out,
        );
        assert!(out.is_empty());
        t.on_sock_state(SERVER_SOCK, tcp_state::CLOSE, 30, &|ns| ns, &mut out);
        assert_eq!(out.len(), 1);
        assert!(
            matches!(out[0].status, Status::Error { .. }),
            "{:?}",
            out[0].status
        );
        assert_eq!(
            attr(&out[0], "error.type"),
            &Value::Str("connection_closed".into())
        );
        assert_eq!(t.connections(), 0);
    }

    #[test]
    fn unknown_protocol_is_counted_once_and_never_spans() {
        let (mut t, counters) = tracker();
        let mut out = Vec::new();
        for i in 0..3 {
            feed(
                &mut t,
                &ev(
                    SERVER_SOCK,
                    Direction::Ingress,
                    i,
                    b"\x16\x03\x01garbage bytes",
                ),
                &mut out,
            );
        }
        assert!(out.is_empty());
        assert_eq!(
            counters
                .unknown_protocol_connections
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn request_arriving_a_few_bytes_at_a_time_is_detected() {
        let (mut t, counters) = tracker();
        let mut out = Vec::new();
        let req = b"GET /split/path HTTP/1.1\r\nHost: h\r\n\r\n";
        for (i, chunk) in req.chunks(3).enumerate() {
            feed(
                &mut t,
                &ev(SERVER_SOCK, Direction::Ingress, 100 + i as u64, chunk),
                &mut out,
            );
        }
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Egress,
                500,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].name, "GET /split/path");
        assert_eq!(out[0].start_unix_nano, 100);
        assert_eq!(
            counters
                .unknown_protocol_connections
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn detection_is_three_way() {
        assert_eq!(detect(Direction::Ingress, b"GE"), Detection::NeedMore);
        assert_eq!(detect(Direction::Ingress, b"GET "), Detection::NeedMore);
        assert_eq!(
            detect(Direction::Ingress, b"GET /"),
            Detection::Http(Role::Server)
        );
        assert_eq!(
            detect(Direction::Egress, b"HTTP/1.1 2"),
            Detection::NeedMore
        );
        assert_eq!(
            detect(Direction::Egress, b"HTTP/1.1 200 OK"),
            Detection::Http(Role::Server)
        );
        assert_eq!(
            detect(Direction::Ingress, b"\x16\x03\x01"),
            Detection::NotHttp
        );
        assert_eq!(detect(Direction::Ingress, b"GETX"), Detection::NotHttp);
    }

    /// The kernel took the server span's parent from the request's traceparent: the span
    /// keeps the kernel's IDs, says where its parent came from, and keeps tracestate.
    #[test]
    fn a_parent_from_a_header_keeps_its_format_and_tracestate() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let header_trace = [0x4b; 16];
        let mut e = ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /in HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-00f067aa0ba902b7-01\r\ntracestate: rojo=00f067aa0ba902b7\r\ntracestate: congo=t61rcWkgMzE\r\n\r\n",
        );
        e.role = CtxRole::ServerRequest;
        e.source = KernelParentSource::Header;
        e.format = CtxFormat::W3c;
        e.ctx = RawTraceCtx {
            trace_id: header_trace,
            span_id: [6; 8],
            parent_span_id: [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        };
        feed(&mut t, &e, &mut out);
        // The handler's call: the kernel already put it in the header's trace.
        let mut call = ev(
            CLIENT_SOCK,
            Direction::Egress,
            20,
            b"GET /out HTTP/1.1\r\nHost: d\r\n\r\n",
        );
        call.role = CtxRole::ClientRequest;
        call.ctx = RawTraceCtx {
            trace_id: header_trace,
            span_id: [7; 8],
            parent_span_id: [6; 8],
        };
        call.source = KernelParentSource::Thread;
        feed(&mut t, &call, &mut out);
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        feed(
            &mut t,
            &ev(CLIENT_SOCK, Direction::Ingress, 30, ok),
            &mut out,
        );
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 40, ok),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        let (client, server) = (&out[0], &out[1]);
        assert_eq!(server.trace_id.0, header_trace);
        assert_eq!(
            server.parent_span_id.map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(
            attr(server, "sonde.parent.source"),
            &Value::Str("header".into())
        );
        assert_eq!(
            attr(server, "sonde.parent.format"),
            &Value::Str("tracecontext".into())
        );
        assert_eq!(
            server.trace_state.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(client.trace_id, server.trace_id);
        assert_eq!(client.parent_span_id, Some(server.span_id));
        assert!(client.attr("sonde.parent.format").is_none());
        assert_eq!(
            client.trace_state, None,
            "tracestate stays with the header's span"
        );
    }

    /// tracestate belongs to traceparent: a parent from another format does not take it.
    #[test]
    fn tracestate_needs_a_w3c_parent() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let mut e = ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /in HTTP/1.1\r\nb3: 4b4b4b4b4b4b4b4b-00f067aa0ba902b7\r\ntracestate: rojo=1\r\n\r\n",
        );
        e.role = CtxRole::ServerRequest;
        e.source = KernelParentSource::Header;
        e.format = CtxFormat::B3;
        e.ctx = RawTraceCtx {
            trace_id: [0x4b; 16],
            span_id: [6; 8],
            parent_span_id: [1; 8],
        };
        feed(&mut t, &e, &mut out);
        let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 20, ok),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            attr(&out[0], "sonde.parent.format"),
            &Value::Str("b3".into())
        );
        assert_eq!(out[0].trace_state, None);
    }

    /// Userspace no longer adopts headers: what the kernel decided is what the span gets.
    #[test]
    fn a_header_the_kernel_did_not_take_is_not_adopted() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let mut e = ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /in HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: rojo=1\r\n\r\n",
        );
        e.role = CtxRole::ServerRequest;
        e.ctx = RawTraceCtx {
            trace_id: [5; 16],
            span_id: [6; 8],
            parent_span_id: [0; 8],
        };
        feed(&mut t, &e, &mut out);
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Egress,
                20,
                b"HTTP/1.1 204 No Content\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].trace_id.0, [5; 16]);
        assert_eq!(out[0].parent_span_id, None);
        assert!(out[0].attr("sonde.parent.source").is_none());
        assert_eq!(out[0].trace_state, None);
    }

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
        let a = socket_addr(10, &mapped, 80);
        assert_eq!(a, "127.0.0.1:80".parse::<SocketAddr>().expect("addr"));
    }

    #[test]
    fn a_reused_socket_with_another_tuple_is_a_new_connection() {
        let (mut t, counters) = tracker();
        let mut out = Vec::new();
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                10,
                b"GET /old HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            &mut out,
        );
        // The close of that connection was missed; the kernel reused the socket memory.
        let mut fresh = ev(
            SERVER_SOCK,
            Direction::Ingress,
            20,
            b"GET /new HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        fresh.remote_port = 40001;
        feed(&mut t, &fresh, &mut out);
        let mut resp = ev(
            SERVER_SOCK,
            Direction::Egress,
            30,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        resp.remote_port = 40001;
        feed(&mut t, &resp, &mut out);
        let names: Vec<_> = out
            .iter()
            .map(|s| (s.name.as_str(), s.status.otlp_code()))
            .collect();
        assert_eq!(names, [("GET /old", 2), ("GET /new", 0)], "{out:?}");
        assert_eq!(
            counters
                .stale_connections
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn kernel_ids_survive_a_request_head_split_over_reads() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let mut first = ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            b"GET /big HTTP/1.1\r\nCookie: aaaa",
        );
        first.role = CtxRole::ServerRequest;
        first.ctx = RawTraceCtx {
            trace_id: [3; 16],
            span_id: [4; 8],
            parent_span_id: [0; 8],
        };
        feed(&mut t, &first, &mut out);
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                11,
                b"aaaa\r\nHost: h\r\n\r\n",
            ),
            &mut out,
        );
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Egress,
                20,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].span_id.0, [4; 8]);
        assert_eq!(out[0].trace_id.0, [3; 16]);
    }

    #[test]
    fn a_late_response_pairs_with_its_timed_out_request_not_the_next() {
        let (mut t, counters) = tracker();
        let mut out = Vec::new();
        let reqs = b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /fast HTTP/1.1\r\nHost: h\r\n\r\n";
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Ingress, 0, reqs),
            &mut out,
        );
        t.tick(Limits::default().request_timeout_ns + 1);
        assert_eq!(
            counters
                .requests_timed_out
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let resps = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslowHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast";
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 10, resps),
            &mut out,
        );
        assert!(out.is_empty(), "timed-out requests make no spans: {out:?}");
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                20,
                b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            &mut out,
        );
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Egress,
                30,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "GET /next");
        assert_eq!(attr(&out[0], "http.response.status_code"), &Value::Int(404));
    }

    #[test]
    fn requests_through_an_http_proxy_name_the_real_server() {
        let (mut t, _) = tracker();
        let mut out = Vec::new();
        let req = b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
        feed(
            &mut t,
            &ev(CLIENT_SOCK, Direction::Egress, 5, req),
            &mut out,
        );
        feed(
            &mut t,
            &ev(
                CLIENT_SOCK,
                Direction::Ingress,
                9,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.name, "GET /x");
        assert_eq!(attr(s, "url.path"), &Value::Str("/x".into()));
        assert_eq!(
            attr(s, "url.full"),
            &Value::Str("http://example.com/x?y=REDACTED".into())
        );
        assert_eq!(attr(s, "server.address"), &Value::Str("example.com".into()));
        assert_eq!(attr(s, "server.port"), &Value::Int(80));
        assert_eq!(
            attr(s, "network.peer.port"),
            &Value::Int(8080),
            "the proxy we talk to"
        );
    }

    #[test]
    fn timed_out_requests_are_counted() {
        let (mut t, counters) = tracker();
        let mut out = Vec::new();
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                0,
                b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            &mut out,
        );
        t.tick(Limits::default().request_timeout_ns + 1);
        assert_eq!(
            counters
                .requests_timed_out
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(out.is_empty());
    }

    /// The kernel's identity for a request carrying `traceparent` (trace and parent
    /// from the header; ctx_parse.h), as the event reports it.
    fn with_traceparent(mut e: Ev, role: CtxRole, span: u8) -> Ev {
        let text = String::from_utf8_lossy(&e.bytes).into_owned();
        let value = text
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .expect("a traceparent");
        let parts: Vec<&str> = value.split('-').collect();
        let hex = |s: &str, out: &mut [u8]| {
            for (i, b) in out.iter_mut().enumerate() {
                *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
            }
        };
        hex(parts[1], &mut e.ctx.trace_id);
        hex(parts[2], &mut e.ctx.parent_span_id);
        e.ctx.span_id = [span; 8];
        e.role = role;
        e.source = KernelParentSource::Header;
        e.format = CtxFormat::W3c;
        e
    }

    /// A process that sends a context header it made (the OpenTelemetry SDK's, captured)
    /// has its spans left to its SDK, from the request that gives it away on: the SERVER
    /// span still open then and the CLIENT span are both dropped and counted; a span
    /// finished before is not recalled.
    #[test]
    fn sdk_instrumented_process_spans_are_suppressed() {
        use std::sync::atomic::Ordering;
        let (mut t, counters) = tracker();
        let mut out = Vec::new();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        // Before it is recognised: an ordinary span.
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                1,
                b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            &mut out,
        );
        feed(&mut t, &ev(SERVER_SOCK, Direction::Egress, 2, ok), &mut out);
        assert_eq!(out.len(), 1);

        let served = ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            include_bytes!("testdata/curl_traceparent_in.http"),
        );
        feed(
            &mut t,
            &with_traceparent(served, CtxRole::ServerRequest, 1),
            &mut out,
        );
        let sent = ev(
            CLIENT_SOCK,
            Direction::Egress,
            11,
            include_bytes!("testdata/sdk_urllib_out.http"),
        );
        feed(
            &mut t,
            &with_traceparent(sent, CtxRole::ClientRequest, 2),
            &mut out,
        );
        feed(
            &mut t,
            &ev(CLIENT_SOCK, Direction::Ingress, 12, ok),
            &mut out,
        );
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 13, ok),
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(counters.spans_suppressed_sdk.load(Ordering::Relaxed), 2);
        assert_eq!(counters.spans_built.load(Ordering::Relaxed), 1);

        // Once it has exited, its pid is someone else's.
        t.process_exited(42);
        feed(
            &mut t,
            &ev(
                SERVER_SOCK,
                Direction::Ingress,
                20,
                b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            &mut out,
        );
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 21, ok),
            &mut out,
        );
        assert_eq!(out.len(), 2);
    }

    /// A proxy passing the received header on (nginx, captured) is not an SDK.
    #[test]
    fn forwarding_proxy_spans_are_kept() {
        use std::sync::atomic::Ordering;
        let (mut t, counters) = tracker();
        let mut out = Vec::new();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let served = ev(
            SERVER_SOCK,
            Direction::Ingress,
            10,
            include_bytes!("testdata/curl_traceparent_in.http"),
        );
        feed(
            &mut t,
            &with_traceparent(served, CtxRole::ServerRequest, 1),
            &mut out,
        );
        let sent = ev(
            CLIENT_SOCK,
            Direction::Egress,
            11,
            include_bytes!("testdata/nginx_forward_out.http"),
        );
        feed(
            &mut t,
            &with_traceparent(sent, CtxRole::ClientRequest, 2),
            &mut out,
        );
        feed(
            &mut t,
            &ev(CLIENT_SOCK, Direction::Ingress, 12, ok),
            &mut out,
        );
        feed(
            &mut t,
            &ev(SERVER_SOCK, Direction::Egress, 13, ok),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(counters.spans_suppressed_sdk.load(Ordering::Relaxed), 0);
        // The forwarded header names the same parent as the incoming one.
        assert_eq!(out[0].parent_span_id, out[1].parent_span_id);
    }
}
