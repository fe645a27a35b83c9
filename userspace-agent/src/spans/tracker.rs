//! Connections to spans: each TCP connection's two byte streams are parsed, requests
//! are paired with responses in order (keep-alive, pipelining), and every finished
//! exchange becomes a span.
//!
//! Which side the traced process is on is decided from the bytes, not from accept or
//! connect, so connections that were open before the agent attached are traced too:
//! a process that reads a request is the server, one that writes a request the client.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::http_span::{Endpoints, Exchange, Outcome, build_span};
use super::identity::SpanIdentity;
use super::model::{Resource, Span, SpanKind};
use super::trace_join::TraceJoin;
use crate::abi::{CtxRole, DataEvent, Direction};
use crate::metrics::Counters;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

impl Role {
    fn kind(self) -> SpanKind {
        match self {
            Role::Server => SpanKind::Server,
            Role::Client => SpanKind::Client,
        }
    }

    /// Does this direction carry requests for this role?
    fn carries_requests(self, dir: Direction) -> bool {
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
}

/// A connection is HTTP/1 or not (yet) recognised.
enum Conn {
    Unknown { counted: bool, last_seen_ns: u64 },
    Http(Box<HttpConn>),
}

impl Conn {
    fn last_seen(&self) -> u64 {
        match self {
            Conn::Unknown { last_seen_ns, .. } => *last_seen_ns,
            Conn::Http(c) => c.last_seen_ns,
        }
    }
}

/// Decides the role from the first bytes seen, or `None` if they are not HTTP/1.
fn detect_role(dir: Direction, head: &[u8]) -> Option<Role> {
    match (dir, http1::looks_like_request(head), http1::looks_like_response(head)) {
        (Direction::Ingress, true, _) | (Direction::Egress, _, true) => Some(Role::Server),
        (Direction::Egress, true, _) | (Direction::Ingress, _, true) => Some(Role::Client),
        _ => None,
    }
}

fn socket_addr(family: u8, addr: &[u8; 16], port: u16) -> SocketAddr {
    const AF_INET6: u8 = 10;
    let ip = if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    SocketAddr::new(ip, port)
}

/// Supplies the resource of a traced process (the process cache in production).
pub type ResourceFn = Box<dyn FnMut(u32) -> Arc<Resource> + Send>;

pub struct Tracker {
    conns: HashMap<u64, Conn>,
    join: TraceJoin,
    limits: Limits,
    resources: ResourceFn,
    counters: Arc<Counters>,
    /// Reused between events to avoid an allocation per segment.
    scratch: Vec<Http1Event>,
}

impl Tracker {
    pub fn new(limits: Limits, resources: ResourceFn, counters: Arc<Counters>) -> Self {
        Self {
            conns: HashMap::new(),
            join: TraceJoin::default(),
            limits,
            resources,
            counters,
            scratch: Vec::new(),
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one data event; finished spans are pushed to `out` (trace IDs mapped to wall
    /// clock by `to_unix`).
    pub fn on_data(&mut self, ev: &DataEvent<'_>, to_unix: &dyn Fn(u64) -> u64, out: &mut Vec<Span>) {
        let h = &ev.header;
        let sock = h.sock_id;
        if !self.conns.contains_key(&sock) {
            self.make_room(h.ts_ns);
            Counters::inc(&self.counters.connections_tracked);
            self.conns.insert(
                sock,
                Conn::Unknown {
                    counted: false,
                    last_seen_ns: h.ts_ns,
                },
            );
        }
        let Some(conn) = self.conns.get_mut(&sock) else {
            return;
        };

        if let Conn::Unknown {
            counted,
            last_seen_ns,
        } = conn
        {
            *last_seen_ns = h.ts_ns;
            let Some(role) = detect_role(ev.direction, ev.data) else {
                if !*counted {
                    *counted = true;
                    Counters::inc(&self.counters.unknown_protocol_connections);
                }
                return;
            };
            let ends = Endpoints {
                local: socket_addr(h.family, &h.local_addr, h.local_port),
                remote: socket_addr(h.family, &h.remote_addr, h.remote_port),
            };
            *conn = Conn::Http(Box::new(HttpConn {
                role,
                ends,
                tgid: h.tgid,
                requests: RequestStream::new(),
                responses: ResponseStream::new(),
                pending: VecDeque::new(),
                last_seen_ns: h.ts_ns,
            }));
        }
        let Conn::Http(c) = conn else { return };
        c.last_seen_ns = h.ts_ns;

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
        let mut kernel_ident = (ev.ctx_role == expected_role)
            .then(|| SpanIdentity::from_kernel(&h.ctx, ev.parent_source))
            .flatten();

        let mut events = std::mem::take(&mut self.scratch);
        events.clear();
        if request_side {
            c.requests.push(&seg, &mut events);
        } else {
            c.responses.push(&seg, &mut events);
        }
        for event in events.drain(..) {
            Self::apply(
                c,
                request_side,
                event,
                &mut kernel_ident,
                Ctx {
                    join: &mut self.join,
                    resources: &mut self.resources,
                    counters: &self.counters,
                    limits: &self.limits,
                    to_unix,
                    out,
                },
            );
        }
        self.scratch = events;
    }

    fn apply(
        c: &mut HttpConn,
        request_side: bool,
        event: Http1Event,
        kernel_ident: &mut Option<SpanIdentity>,
        mut ctx: Ctx<'_>,
    ) {
        match event {
            Http1Event::RequestStart { ts_ns, head } => {
                // A response of unknown length ends when the next request starts.
                let mut ended = Vec::new();
                c.responses.end_at_peer_turn(&mut ended);
                for e in ended {
                    Self::apply(c, false, e, &mut None, ctx.reborrow());
                }
                let mut ident = kernel_ident.take().unwrap_or_else(SpanIdentity::new_root);
                ident.trace_id = ctx.join.resolve(ident.trace_id);
                match c.role {
                    Role::Server => ctx.join.server_request(c.ends.local, c.ends.remote, &mut ident),
                    Role::Client => ctx.join.client_request(c.ends.local, c.ends.remote, &ident),
                }
                c.responses.expect_response(&head.method);
                if c.pending.len() >= ctx.limits.max_pending {
                    c.pending.pop_front();
                    Counters::inc(&ctx.counters.pending_dropped);
                }
                c.pending.push_back(Exchange {
                    ident,
                    resource: (ctx.resources)(c.tgid),
                    request: head,
                    start_ns: ts_ns,
                    request_body_bytes: None,
                    response: None,
                    response_body_bytes: None,
                });
            }
            Http1Event::ResponseStart { ts_ns: _, head } => {
                let mut ended = Vec::new();
                c.requests.end_at_peer_turn(&mut ended);
                for e in ended {
                    Self::apply(c, true, e, &mut None, ctx.reborrow());
                }
                match c.pending.iter_mut().find(|ex| ex.response.is_none()) {
                    Some(ex) => ex.response = Some(head),
                    None => Counters::inc(&ctx.counters.unpaired_responses),
                }
            }
            Http1Event::MessageEnd { ts_ns, body_bytes } if request_side => {
                if let Some(ex) = c.pending.back_mut() {
                    ex.request_body_bytes = Some(body_bytes);
                }
            }
            Http1Event::MessageEnd { ts_ns, body_bytes } => {
                if c.pending.front().is_some_and(|ex| ex.response.is_some()) {
                    if let Some(mut ex) = c.pending.pop_front() {
                        ex.response_body_bytes = Some(body_bytes);
                        Self::finish(c, ex, Outcome::Complete { end_ns: ts_ns }, &mut ctx);
                    }
                }
            }
            Http1Event::NotHttp { .. } => Counters::inc(&ctx.counters.http_desyncs),
        }
    }

    fn finish(c: &HttpConn, ex: Exchange, outcome: Outcome, ctx: &mut Ctx<'_>) {
        if c.role == Role::Client {
            ctx.join.client_done(c.ends.local, c.ends.remote);
        }
        let mut span = build_span(ex, c.role.kind(), c.ends, outcome, ctx.to_unix);
        span.trace_id = ctx.join.resolve(span.trace_id);
        Counters::inc(&ctx.counters.spans_built);
        ctx.out.push(span);
    }

    /// A TCP state change of a socket that carried data.
    pub fn on_sock_state(
        &mut self,
        sock: u64,
        old: u8,
        new: u8,
        ts_ns: u64,
        to_unix: &dyn Fn(u64) -> u64,
        out: &mut Vec<Span>,
    ) {
        let _ = old;
        match new {
            tcp_state::CLOSE | tcp_state::LAST_ACK => {
                if let Some(conn) = self.conns.remove(&sock) {
                    self.close(conn, ts_ns, to_unix, out);
                }
            }
            // Our side stopped writing: a server's response delimited by close ends here.
            tcp_state::FIN_WAIT1 => {
                if let Some(Conn::Http(c)) = self.conns.get_mut(&sock) {
                    if c.role == Role::Server {
                        let mut events = Vec::new();
                        if let Some(cut) = c.responses.finish(&mut events) {
                            let _ = cut;
                        }
                        let mut none = None;
                        for e in events {
                            Self::apply(
                                c,
                                false,
                                e,
                                &mut none,
                                Ctx {
                                    join: &mut self.join,
                                    resources: &mut self.resources,
                                    counters: &self.counters,
                                    limits: &self.limits,
                                    to_unix,
                                    out,
                                },
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The connection is gone: finish what can be finished, fail the rest.
    fn close(&mut self, conn: Conn, ts_ns: u64, to_unix: &dyn Fn(u64) -> u64, out: &mut Vec<Span>) {
        let Conn::Http(mut c) = conn else { return };
        let mut ctx = Ctx {
            join: &mut self.join,
            resources: &mut self.resources,
            counters: &self.counters,
            limits: &self.limits,
            to_unix,
            out,
        };
        let mut events = Vec::new();
        let _ = c.requests.finish(&mut events);
        for e in events.drain(..) {
            Self::apply(&mut c, true, e, &mut None, ctx.reborrow());
        }
        let cut = c.responses.finish(&mut events);
        for e in events.drain(..) {
            Self::apply(&mut c, false, e, &mut None, ctx.reborrow());
        }
        let cut_end = cut.map(|i| i.ts_ns);
        while let Some(ex) = c.pending.pop_front() {
            let response_started = ex.response.is_some();
            let end_ns = cut_end.filter(|_| response_started).unwrap_or(ts_ns.max(c.last_seen_ns));
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

    /// Periodic housekeeping: time out stuck requests and idle connections.
    pub fn tick(&mut self, now_ns: u64) {
        let limits = self.limits;
        let counters = &self.counters;
        self.conns.retain(|_, conn| {
            if let Conn::Http(c) = conn {
                while c
                    .pending
                    .front()
                    .is_some_and(|ex| now_ns.saturating_sub(ex.start_ns) > limits.request_timeout_ns)
                {
                    c.pending.pop_front();
                    Counters::inc(&counters.requests_timed_out);
                }
                if !c.pending.is_empty() {
                    return true;
                }
            }
            now_ns.saturating_sub(conn.last_seen()) <= limits.idle_timeout_ns
        });
    }

    /// Drops the least recently used connection when the table is full.
    fn make_room(&mut self, _now_ns: u64) {
        if self.conns.len() < self.limits.max_connections {
            return;
        }
        let oldest = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last_seen())
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.conns.remove(&k);
            Counters::inc(&self.counters.connections_evicted);
        }
    }

    /// Agent shutdown: requests still in flight are counted as timed out, not guessed.
    pub fn shutdown(&mut self) {
        for conn in self.conns.values() {
            if let Conn::Http(c) = conn {
                for _ in &c.pending {
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
    resources: &'a mut ResourceFn,
    counters: &'a Counters,
    limits: &'a Limits,
    to_unix: &'a dyn Fn(u64) -> u64,
    out: &'a mut Vec<Span>,
}

impl Ctx<'_> {
    fn reborrow(&mut self) -> Ctx<'_> {
        Ctx {
            join: self.join,
            resources: self.resources,
            counters: self.counters,
            limits: self.limits,
            to_unix: self.to_unix,
            out: self.out,
        }
    }
}
