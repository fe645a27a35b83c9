//! The span builder: capture's consumer. Each connection's bytes go to its protocol's
//! parser (picked once by `protocols::registry::detect`); the messages it reports are
//! paired, given their identity and parents, and finished exchanges become spans,
//! emitted in order with the requests seen start (for the pipeline).

use std::net::SocketAddr;
use std::sync::Arc;

use super::Batch;
use super::identity::{ParentLink, ParentSource, SpanIdentity};
use super::marks::KernelMarks;
use super::model::{Resource, Span};
use super::pairing::{Exchange, Outcome, Pairing};
use super::role::Role;
use super::semconv::{self, Repeated};
use super::session::{Active, Session};
use super::trace_join::{AwaitingClient, CallJoin, HeldCall, ServerCall, TraceJoin};
use crate::abi::{CtxFormat, InjectStatus};
use crate::capture::held::Prefix;
use crate::capture::{
    Conn, ConnId, ConnSegment, Consumer, Endpoints, IdleClient, Source, TlsSource,
};
use crate::metrics::Counters;
use crate::propagation::tracestate;
use crate::protocols::db::{DbCall, ParseOptions};
use crate::protocols::parser::{
    CallOf, Message, ParserStats, Reply, Report, RequestHeadOf, Side, StreamId,
};
use crate::protocols::registry::{self, Detection, PROTOCOLS, Protocol};
use crate::protocols::{Parser, Segment, tls_record};

/// Limits that keep the span builder's memory bounded.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests in flight per connection (pipelining depth).
    pub max_pending: usize,
    /// A request without a complete response after this long is dropped and counted.
    pub request_timeout_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pending: 64,
            request_timeout_ns: 30_000_000_000,
        }
    }
}

/// How long a traced database server's span waits for the span of the traced client
/// that sent its query before it is reported on its own.
const DB_JOIN_WAIT_NS: u64 = 2_000_000_000;

/// How long a finished TLS server span waits for the request of a client on this host
/// that may be traced but not reported yet (`trace_join::awaiting`).
const CLIENT_WAIT_NS: u64 = 200_000_000;

/// Processes noted between two `take_encrypted_processes` at most (the rest are noted
/// again with their next connection).
const MAX_ENCRYPTED_NOTES: usize = 1024;

/// Supplies the resource of a traced process (the process cache in production).
pub type ResourceFn = Box<dyn FnMut(u32) -> Arc<Resource> + Send>;

pub struct SpanBuilder {
    protocols: &'static [Protocol],
    parse_options: ParseOptions,
    join: TraceJoin,
    calls: CallJoin,
    limits: Limits,
    resources: ResourceFn,
    counters: Arc<Counters>,
    /// What was built since the pipeline last took it.
    batch: Batch,
    /// Re-enrolment candidates since the last `take_idle_clients` (None: injection off).
    idle_clients: Option<Vec<IdleClient>>,
    /// Scratch for server spans released unjoined (database calls, TLS awaiting clients).
    released: Vec<HeldCall>,
    /// Processes whose sockets carried TLS ciphertext no library call claimed.
    encrypted_processes: Vec<u32>,
    /// Finished server spans waiting for their client's request to be reported.
    awaiting: AwaitingClient,
}

impl SpanBuilder {
    pub fn new(limits: Limits, resources: ResourceFn, counters: Arc<Counters>) -> Self {
        Self {
            protocols: PROTOCOLS,
            parse_options: ParseOptions::default(),
            join: TraceJoin::default(),
            calls: CallJoin::default(),
            limits,
            resources,
            counters,
            batch: Batch::default(),
            idle_clients: None,
            released: Vec::new(),
            encrypted_processes: Vec::new(),
            awaiting: AwaitingClient::default(),
        }
    }

    /// Options for the parsers (query text obfuscation).
    pub fn with_parse_options(mut self, opts: ParseOptions) -> Self {
        self.parse_options = opts;
        self
    }

    /// Another protocol registry (tests: a toy protocol).
    pub fn with_protocols(mut self, protocols: &'static [Protocol]) -> Self {
        self.protocols = protocols;
        self
    }

    /// Collect client connections that went idle (injection is on: they may be
    /// re-enrolled).
    pub fn enable_idle_clients(&mut self) {
        self.idle_clients.get_or_insert_with(Vec::new);
    }

    /// Idle clients collected since the last call, oldest first.
    pub fn take_idle_clients(&mut self, into: &mut Vec<IdleClient>) {
        if let Some(list) = self.idle_clients.as_mut() {
            into.append(list);
        }
    }

    /// What was built since the pipeline last took it: the pipeline runs on it in place,
    /// then the sinks take its spans.
    pub fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// Housekeeping not tied to one connection: database server spans that waited in
    /// vain for their client's go out on their own.
    pub fn tick(&mut self, now_ns: u64) {
        self.calls
            .release_expired(now_ns, DB_JOIN_WAIT_NS, &self.counters, &mut self.released);
        self.awaiting
            .release_expired(now_ns, CLIENT_WAIT_NS, &mut self.released);
        self.emit_released();
    }

    /// The agent stops: spans waiting for their other side go out as they are.
    pub fn release_waiting(&mut self) {
        self.calls
            .release_expired(u64::MAX, 0, &self.counters, &mut self.released);
        self.awaiting
            .release_expired(u64::MAX, 0, &mut self.released);
        self.emit_released();
    }

    fn emit_released(&mut self) {
        for held in self.released.drain(..) {
            self.batch.push_span(held.tgid, held.span);
        }
    }

    /// A client request on (local, remote) whose server span is already finished and
    /// waiting for it: the span becomes its child and goes out. False when none waits.
    fn claim_awaiting(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        client: &SpanIdentity,
    ) -> bool {
        let Some(mut awaiting) = self.awaiting.claim((local, remote)) else {
            return false;
        };
        self.join.rename(awaiting.span.trace_id, client.trace_id);
        let link = ParentLink {
            span_id: client.span_id,
            source: ParentSource::LocalPeer,
        };
        semconv::adopt(&mut awaiting.span, client.trace_id, link);
        self.batch.push_span(awaiting.tgid, awaiting.span);
        true
    }

    /// A finished server span whose client is not known: a TLS client on this host may
    /// be traced but not reported yet (`trace_join::awaiting`), so its span waits for
    /// that client; any other goes out now, a root.
    fn await_tls_client(&mut self, conn: &ConnInfo<'_>, tls: Option<TlsSource>, span: Span) {
        let (local, remote) = (conn.ends.local, conn.ends.remote);
        let span = if tls.is_some() && conn.ends.peer_on_this_host() {
            match self
                .awaiting
                .hold((remote, local), conn.tgid, span, conn.last_seen_ns)
            {
                Some(no_room) => no_room,
                None => return,
            }
        } else {
            span
        };
        self.batch.push_span(conn.tgid, span);
    }

    /// The first bytes of a connection whose protocol is not known yet.
    fn detect(&mut self, conn: &mut Conn<Session>, seg: &ConnSegment<'_>) {
        // Folded egress has no bytes to recognise anything by.
        if seg.seg.head.is_empty() {
            return;
        }
        let (held, counted) = match std::mem::take(&mut conn.state) {
            Session::Holding(held) => (Some(held), false),
            Session::Unknown => (None, true),
            Session::Undetected | Session::Encrypted | Session::Active(_) => (None, false),
        };
        let prefix = Prefix::new(held, seg);
        if seg.source == Source::Socket && tls_record::begins_record(prefix.bytes()) {
            self.encrypted(conn);
            return;
        }
        let (local_port, remote_port) = (conn.ends.local.port(), conn.ends.remote.port());
        let dir = seg.direction;
        let server_port = |sender| match Role::of_process(dir, sender) {
            Role::Client => remote_port,
            Role::Server => local_port,
        };
        match registry::detect(
            self.protocols,
            prefix.bytes(),
            server_port,
            seg.fully_captured(),
        ) {
            Detection::Found { protocol, sender } => {
                self.start(conn, protocol, Role::of_process(dir, sender), seg.source);
                let replay = prefix.segment(seg);
                self.feed(conn, seg, &replay);
            }
            Detection::NeedMore => conn.state = Session::Holding(prefix.hold(seg)),
            Detection::Unknown => {
                if !counted {
                    Counters::inc(&self.counters.unknown_protocol_connections);
                }
                conn.state = Session::Unknown;
            }
        }
    }

    /// The connection's socket carries TLS ciphertext: skipped, and its process noted
    /// (it may have a TLS library Sonde cannot probe).
    fn encrypted(&mut self, conn: &mut Conn<Session>) {
        conn.state = Session::Encrypted;
        if self.encrypted_processes.last() != Some(&conn.tgid)
            && self.encrypted_processes.len() < MAX_ENCRYPTED_NOTES
        {
            self.encrypted_processes.push(conn.tgid);
        }
    }

    /// Processes whose sockets carried TLS ciphertext no library call claimed, since the
    /// last call (repeats possible).
    pub fn take_encrypted_processes(&mut self, into: &mut Vec<u32>) {
        into.append(&mut self.encrypted_processes);
    }

    fn start(
        &mut self,
        conn: &mut Conn<Session>,
        protocol: &'static Protocol,
        role: Role,
        source: Source,
    ) {
        if protocol.db_system.is_some() {
            let (local, remote) = (conn.ends.local, conn.ends.remote);
            match role {
                Role::Client => self.calls.client_seen(local, remote),
                Role::Server => {
                    self.calls
                        .server_seen(local, remote, &self.counters, &mut self.released);
                    self.emit_released();
                }
            }
        }
        conn.state = Session::Active(Box::new(Active {
            protocol,
            role,
            parser: (protocol.parser)(self.parse_options),
            pairing: Pairing::default(),
            marks: KernelMarks::new(protocol.kernel_view, self.limits.max_pending),
            repeated: Repeated::default(),
            tls: source.tls(),
        }));
    }

    /// Runs `f` with the connection's parser and a handler for what it reports (none
    /// before the protocol is known), then folds the parser's counts into the agent's.
    fn drive<R>(
        &mut self,
        conn: &mut Conn<Session>,
        keep_cuts: bool,
        f: impl FnOnce(&mut dyn Parser, &mut Handler<'_>) -> R,
    ) -> Option<R> {
        let ConnPart { info, active } = ConnPart::of(conn);
        let active = active?;
        let Active {
            protocol,
            role,
            parser,
            pairing,
            marks,
            repeated,
            tls,
        } = &mut **active;
        let mut handler = Handler {
            b: self,
            conn: &info,
            protocol,
            role: *role,
            pairing,
            marks,
            repeated,
            tls: *tls,
            keep_cuts,
            cut_end: None,
        };
        Some(f(parser.as_mut(), &mut handler))
    }

    /// Feeds `seg` (or the held bytes and `seg` as one, `bytes`) to the parser.
    fn feed(&mut self, conn: &mut Conn<Session>, seg: &ConnSegment<'_>, bytes: &Segment<'_>) {
        // Plaintext from a TLS library makes (and keeps) the connection a TLS one; after
        // the socket's own bytes (PostgreSQL's SSLRequest, ...), the protocol resumes in it.
        if let (Session::Active(active), Source::Tls(tls)) = (&mut conn.state, seg.source) {
            let first = active.tls.is_none();
            active.tls = Some(active.tls.map_or(tls, |known| known.then(tls)));
            if first {
                active.parser.tls_started();
            }
        }
        self.drive(conn, false, |parser, h| {
            let request_side = h.role.carries_requests(seg.direction);
            h.marks
                .observe(h.role, request_side, bytes.ts_ns, &seg.mark);
            parser.push(h.role.sender(seg.direction), bytes, h);
        });
    }

    /// Folds what a parser counted into the agent's counters.
    fn count(&self, counted: &ParserStats) {
        let c = &self.counters;
        for (counter, n) in [
            (&c.http_desyncs, counted.desyncs),
            (&c.db_desync_bytes, counted.desync_bytes),
            (&c.db_dropped_calls, counted.dropped_calls),
            (&c.db_tls_connections, counted.tls_upgrades),
        ] {
            if n > 0 {
                Counters::add(counter, n);
            }
        }
    }
}

/// What a message handler needs of the connection, borrowed beside its session.
struct ConnInfo<'a> {
    ends: &'a Endpoints,
    tgid: u32,
    fd: i32,
    sent_bytes: u64,
    last_seen_ns: u64,
}

impl ConnInfo<'_> {
    fn idle_client(&self) -> IdleClient {
        IdleClient {
            tgid: self.tgid,
            fd: self.fd,
            local: self.ends.local,
            remote: self.ends.remote,
            sent_bytes: self.sent_bytes,
        }
    }
}

struct ConnPart<'a> {
    info: ConnInfo<'a>,
    active: Option<&'a mut Box<Active>>,
}

impl<'a> ConnPart<'a> {
    fn of(conn: &'a mut Conn<Session>) -> Self {
        let Conn {
            ends,
            tgid,
            fd,
            sent_bytes,
            last_seen_ns,
            state,
            ..
        } = conn;
        let info = ConnInfo {
            ends,
            tgid: *tgid,
            fd: *fd,
            sent_bytes: *sent_bytes,
            last_seen_ns: *last_seen_ns,
        };
        let active = match state {
            Session::Active(a) => Some(a),
            _ => None,
        };
        Self { info, active }
    }
}

impl Consumer<Session> for SpanBuilder {
    fn segment(&mut self, _id: ConnId, conn: &mut Conn<Session>, seg: &ConnSegment<'_>) {
        match (&conn.state, seg.source) {
            // Ciphertext: nothing to read in it. Once a library reported a connection's
            // plaintext, its socket carries only ciphertext.
            (Session::Encrypted, Source::Socket) => {}
            (Session::Active(a), Source::Socket) if a.tls.is_some() => {}
            (Session::Active(_), _) => self.feed(conn, seg, &seg.seg),
            _ => self.detect(conn, seg),
        }
    }

    /// Our side stopped writing: a server's response delimited by close ends here. A
    /// response cut short stays pending and fails when the socket closes.
    fn write_closed(&mut self, _id: ConnId, conn: &mut Conn<Session>, _ts_ns: u64) {
        self.drive(conn, false, |parser, h| {
            if h.role == Role::Server {
                parser.end_of_stream(Side::Server, h);
            }
        });
    }

    /// The connection is gone: finish what can be finished, fail the rest.
    fn closed(&mut self, _id: ConnId, mut conn: Conn<Session>, ts_ns: u64) {
        if matches!(conn.state, Session::Encrypted) {
            Counters::inc(&self.counters.tls_unreadable_connections);
            return;
        }
        let last_seen_ns = conn.last_seen_ns;
        let ended = self.drive(&mut conn, true, |parser, h| {
            parser.finish(h);
            let cut_end = h.cut_end;
            for ex in h.pairing.drain() {
                let response_started = ex.response.is_some();
                let end_ns = cut_end
                    .filter(|_| response_started)
                    .unwrap_or(ts_ns.max(last_seen_ns));
                let outcome = Outcome::Cut {
                    end_ns,
                    response_started,
                };
                finish_exchange(h.b, h.conn, (h.role, h.tls), h.repeated, ex, outcome);
            }
            (h.protocol, h.role)
        });
        let Some((protocol, role)) = ended else {
            return;
        };
        if protocol.db_system.is_some() {
            let (local, remote) = (conn.ends.local, conn.ends.remote);
            match role {
                Role::Client => self.calls.client_closed(local, remote),
                Role::Server => {
                    self.calls
                        .server_closed(local, remote, &self.counters, &mut self.released);
                    self.emit_released();
                }
            }
        }
    }

    fn tick(&mut self, conn: &mut Conn<Session>, now_ns: u64) -> bool {
        match &mut conn.state {
            Session::Active(a) => {
                a.pairing
                    .time_out(now_ns, self.limits.request_timeout_ns, &self.counters)
            }
            _ => false,
        }
    }

    fn shutdown(&mut self, conn: Conn<Session>) {
        match &conn.state {
            Session::Active(a) => a.pairing.count_unfinished(&self.counters),
            Session::Encrypted => Counters::inc(&self.counters.tls_unreadable_connections),
            _ => {}
        }
    }
}

/// Applies one connection's messages, as its parser reports them.
struct Handler<'a> {
    b: &'a mut SpanBuilder,
    conn: &'a ConnInfo<'a>,
    protocol: &'static Protocol,
    role: Role,
    pairing: &'a mut Pairing,
    marks: &'a mut KernelMarks,
    repeated: &'a mut Repeated,
    /// The connection's TLS library, if its bytes are TLS plaintext.
    tls: Option<TlsSource>,
    /// The connection closed: where the server's message was cut, if it was.
    keep_cuts: bool,
    cut_end: Option<u64>,
}

impl Handler<'_> {
    fn request(&mut self, stream: StreamId, ts_ns: u64, head: RequestHeadOf) -> Reply {
        let b = &mut *self.b;
        let (ident, inject) = self.marks.for_request();
        let mut ident = ident.unwrap_or_else(SpanIdentity::new_root);
        ident.trace_id = b.join.resolve(ident.trace_id);
        let (local, remote) = (self.conn.ends.local, self.conn.ends.remote);
        match self.role {
            // A parent the kernel took from a header wins over a same-host guess.
            Role::Server => b.join.server_request(local, remote, &mut ident),
            Role::Client => {
                if !b.claim_awaiting(local, remote, &ident) {
                    b.join
                        .client_request(local, remote, &ident, inject == InjectStatus::Injected);
                }
            }
        }
        b.batch.push_request(super::RequestSeen {
            tgid: self.conn.tgid,
            kind: self.role.kind(),
            ident,
            // Only a client exports (a server receiving exports is a collector).
            otlp_trace_export: self.role == Role::Client && semconv::is_otlp_trace_export(&head),
        });
        // tracestate travels with a traceparent, and only that one was validated.
        let trace_state = ident
            .parent
            .and_then(|p| p.source.header_format())
            .filter(|f| *f == CtxFormat::W3c)
            .and_then(|_| tracestate::from_headers(semconv::tracestate(&head)));
        let ex = Exchange {
            stream,
            ident,
            trace_state,
            resource: (b.resources)(self.conn.tgid),
            request: head,
            start_ns: ts_ns,
            request_body_bytes: None,
            response: None,
            response_body_bytes: None,
            timed_out: false,
            inject,
        };
        self.pairing.request(ex, b.limits.max_pending, &b.counters)
    }

    fn response_end(&mut self, stream: StreamId, ts_ns: u64, body_bytes: u64) {
        let Some(ex) = self.pairing.response_end(stream, body_bytes) else {
            return;
        };
        let outcome = Outcome::Complete { end_ns: ts_ns };
        let how = (self.role, self.tls);
        finish_exchange(self.b, self.conn, how, self.repeated, ex, outcome);
        // Injection cannot reach into TLS records: no re-enrolment for TLS connections.
        if self.role == Role::Client
            && self.tls.is_none()
            && self.pairing.is_empty()
            && let Some(idle) = self.b.idle_clients.as_mut()
        {
            idle.push(self.conn.idle_client());
        }
    }

    /// A finished database or cache call becomes a span; a traced client's span and the
    /// traced server's span of the same call are joined.
    fn call(&mut self, call: DbCall, system: crate::protocols::db::DbSystem) {
        let b = &mut *self.b;
        Counters::inc(&b.counters.db_calls);
        let (local, remote) = (self.conn.ends.local, self.conn.ends.remote);
        let tgid = self.conn.tgid;
        let resource = (b.resources)(tgid);
        let ident = match self.role {
            Role::Client => {
                let mut ident = self
                    .marks
                    .for_call(call.start_ns)
                    .unwrap_or_else(SpanIdentity::new_root);
                ident.trace_id = b.join.resolve(ident.trace_id);
                ident
            }
            Role::Server => SpanIdentity::new_root(),
        };
        let mut span = semconv::db::build_span(
            call,
            system,
            ident,
            self.role.kind(),
            self.conn.ends,
            resource,
        );
        semconv::tls_attributes(&mut span, self.tls);
        match self.role {
            Role::Client => {
                self.join_waiting_server(&span);
                self.b.batch.push_span(tgid, span);
            }
            Role::Server => match b.calls.server_finished(local, remote, &span.name) {
                ServerCall::Parent(trace_id, link) => {
                    semconv::adopt(&mut span, trace_id, link);
                    b.batch.push_span(tgid, span);
                }
                ServerCall::Root => b.await_tls_client(self.conn, self.tls, span),
                ServerCall::Wait => {
                    let held = HeldCall {
                        tgid,
                        span,
                        since_ns: self.conn.last_seen_ns,
                    };
                    b.calls.hold(
                        local,
                        remote,
                        held,
                        b.limits.max_pending,
                        &b.counters,
                        &mut b.released,
                    );
                    b.emit_released();
                }
            },
        }
    }

    /// A traced client's call finished: the traced server's span of it, if it is
    /// waiting, becomes its child; otherwise the server will find it when it finishes.
    fn join_waiting_server(&mut self, client: &Span) {
        let b = &mut *self.b;
        let (local, remote) = (self.conn.ends.local, self.conn.ends.remote);
        let ident = SpanIdentity {
            trace_id: client.trace_id,
            span_id: client.span_id,
            parent: None,
        };
        // Finished before this TLS client was seen at all (`SpanBuilder::await_tls_client`).
        if b.claim_awaiting(local, remote, &ident) || !b.calls.server_traced(local, remote) {
            return;
        }
        match b
            .calls
            .take_waiting(local, remote, &client.name, &b.counters)
        {
            Some(mut held) => {
                let link = ParentLink {
                    span_id: client.span_id,
                    source: ParentSource::LocalPeer,
                };
                semconv::adopt(&mut held.span, client.trace_id, link);
                b.batch.push_span(held.tgid, held.span);
            }
            None => b.calls.client_finished(local, remote, &client.name, &ident),
        }
    }
}

impl Report for Handler<'_> {
    fn message(&mut self, msg: Message) -> Reply {
        match msg {
            Message::Request {
                stream,
                ts_ns,
                head,
            } => return self.request(stream, ts_ns, head),
            Message::Response { stream, head, .. } => {
                self.pairing.response(stream, head, &self.b.counters);
            }
            Message::RequestEnd {
                stream, body_bytes, ..
            } => self.pairing.request_end(stream, body_bytes),
            Message::ResponseEnd {
                stream,
                ts_ns,
                body_bytes,
            } => self.response_end(stream, ts_ns, body_bytes),
            Message::Call(CallOf::Db(call)) => {
                if let Some(system) = self.protocol.db_system {
                    self.call(*call, system);
                }
            }
            Message::Desync { .. } => self.marks.forget(),
            Message::Counted(counted) => self.b.count(&counted),
            Message::Cut { from, ts_ns } => {
                if self.keep_cuts && from == Side::Server {
                    self.cut_end = Some(ts_ns);
                }
            }
        }
        Reply::Continue
    }
}

/// A finished exchange becomes a span (unless it already timed out).
fn finish_exchange(
    b: &mut SpanBuilder,
    conn: &ConnInfo<'_>,
    (role, tls): (Role, Option<TlsSource>),
    repeated: &mut Repeated,
    mut ex: Exchange,
    outcome: Outcome,
) {
    let (local, remote) = (conn.ends.local, conn.ends.remote);
    let awaits_client = match role {
        Role::Client => {
            b.join.client_done(local, remote, ex.ident.span_id);
            false
        }
        Role::Server => b.join.server_done(local, remote, &mut ex.ident),
    };
    // Already counted as timed out: its response only had to be consumed.
    if ex.timed_out {
        return;
    }
    let mut span = semconv::exchange_span(ex, role.kind(), conn.ends, repeated, tls, outcome);
    semconv::tls_attributes(&mut span, tls);
    span.trace_id = b.join.resolve(span.trace_id);
    if awaits_client {
        b.await_tls_client(conn, tls, span);
    } else {
        b.batch.push_span(conn.tgid, span);
    }
}
