//! Joining traces across processes on one host without any header: when both ends of a
//! connection are traced, the server span becomes the child of the client span that
//! sent the request (matched by 4-tuple), and the trace the kernel started for the
//! server is renamed to the client's trace everywhere it appears. A span whose parent
//! the kernel already took from a context header keeps it.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::identity::{ParentLink, ParentSource, SpanIdentity};
use super::model::{Span, SpanId, TraceId};
use crate::abi::CtxFormat;
use crate::metrics::Counters;

/// Bounded map with two generations: when the young one is full it becomes the old
/// one and the previous old one is dropped. Recent entries always survive. Keys are
/// tuples, pids and IDs the kernel or Sonde chose, never bytes a peer chose: foldhash.
#[derive(Debug)]
pub struct TwoGen<K, V> {
    young: foldhash::HashMap<K, V>,
    old: foldhash::HashMap<K, V>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq, V> TwoGen<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            young: foldhash::HashMap::default(),
            old: foldhash::HashMap::default(),
            cap,
        }
    }

    pub fn insert(&mut self, k: K, v: V) {
        if self.young.len() >= self.cap {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(k, v);
    }

    pub fn remove(&mut self, k: &K) {
        self.young.remove(k);
        self.old.remove(k);
    }
}

impl<K: std::hash::Hash + Eq, V: Copy> TwoGen<K, V> {
    pub fn get(&self, k: &K) -> Option<V> {
        self.young.get(k).or_else(|| self.old.get(k)).copied()
    }
}

impl<K: std::hash::Hash + Eq + Copy, V: Default> TwoGen<K, V> {
    /// The value for `k`, created if absent; an entry found in the old generation moves
    /// to the young one.
    pub fn entry(&mut self, k: K) -> &mut V {
        if !self.young.contains_key(&k) {
            let v = self.old.remove(&k).unwrap_or_default();
            if self.young.len() >= self.cap {
                self.old = std::mem::take(&mut self.young);
            }
            self.young.insert(k, v);
        }
        self.young.entry(k).or_default()
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        match self.young.get_mut(k) {
            Some(v) => Some(v),
            None => self.old.get_mut(k),
        }
    }
}

/// Requests a pipelining client may have in flight on one connection.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// (local, remote) as the client sees its connection.
type Tuple = (SocketAddr, SocketAddr);

/// A client request in flight, as the server side will look for it.
#[derive(Clone, Copy, Debug)]
struct ClientRequest {
    trace_id: TraceId,
    span_id: SpanId,
    /// Sonde inserted a `traceparent` naming this span into the request.
    injected: bool,
}

#[derive(Debug)]
pub struct TraceJoin {
    /// In-flight client requests by the client's (local, remote), oldest first: with
    /// pipelining the server reads them in this order.
    clients: TwoGen<Tuple, VecDeque<ClientRequest>>,
    /// Kernel-chosen trace IDs renamed to the trace they joined.
    renamed: TwoGen<TraceId, TraceId>,
}

impl Default for TraceJoin {
    fn default() -> Self {
        Self::new(32_768)
    }
}

impl TraceJoin {
    pub fn new(cap: usize) -> Self {
        Self {
            clients: TwoGen::new(cap),
            renamed: TwoGen::new(cap),
        }
    }

    /// The trace ID a span must carry, after renames (chains are short; bounded anyway).
    pub fn resolve(&self, mut trace_id: TraceId) -> TraceId {
        for _ in 0..8 {
            match self.renamed.get(&trace_id) {
                Some(next) if next != trace_id => trace_id = next,
                _ => break,
            }
        }
        trace_id
    }

    /// A client request left on (local, remote); `injected`: it carries our traceparent.
    pub fn client_request(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        ident: &SpanIdentity,
        injected: bool,
    ) {
        let queue = self.clients.entry((local, remote));
        if queue.len() >= MAX_IN_FLIGHT_PER_CONNECTION {
            queue.pop_front();
        }
        queue.push_back(ClientRequest {
            trace_id: ident.trace_id,
            span_id: ident.span_id,
            injected,
        });
    }

    /// The client span finished; forget it unless the server already took it.
    pub fn client_done(&mut self, local: SocketAddr, remote: SocketAddr, span_id: SpanId) {
        let key = (local, remote);
        if let Some(queue) = self.clients.get_mut(&key) {
            queue.retain(|r| r.span_id != span_id);
            if queue.is_empty() {
                self.clients.remove(&key);
            }
        }
    }

    /// A server request arrived on (local, remote): adopt the traced client's span as
    /// parent when there is one. A parent the kernel already took from a header stays;
    /// if that header is the one Sonde inserted for this client span, it says so.
    pub fn server_request(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        ident: &mut SpanIdentity,
    ) {
        let Some(queue) = self.clients.get_mut(&(remote, local)) else {
            return;
        };
        let Some(client) = queue.pop_front() else {
            return;
        };
        match ident.parent.as_mut() {
            Some(parent)
                if client.injected
                    && parent.span_id == client.span_id
                    && parent.source == ParentSource::Header(CtxFormat::W3c) =>
            {
                parent.source = ParentSource::Injected;
            }
            Some(_) => {}
            None => self.adopt(
                ident,
                client.trace_id,
                client.span_id,
                ParentSource::LocalPeer,
            ),
        }
    }

    /// Makes `ident` a child of (trace_id, parent) unless it already has a parent; the
    /// trace the kernel had started for it is renamed, so its subtree follows.
    fn adopt(
        &mut self,
        ident: &mut SpanIdentity,
        trace_id: TraceId,
        parent: SpanId,
        source: ParentSource,
    ) {
        if ident.parent.is_some() {
            return;
        }
        if ident.trace_id != trace_id {
            self.renamed.insert(ident.trace_id, trace_id);
            ident.trace_id = trace_id;
        }
        ident.parent = Some(ParentLink {
            span_id: parent,
            source,
        });
    }
}

/// Same-host join for calls whose spans exist only once they complete (database and
/// cache calls): either side may finish first, so each side's finished calls wait, in
/// order, for the other's. Calls are matched by name too (both parsers read the same
/// bytes), so a call one side lost cannot shift every later pair.
#[derive(Debug)]
pub struct CallJoin {
    /// Traced database servers, by the client's (local, remote), with their finished
    /// calls waiting for the traced client's span, oldest first.
    servers: foldhash::HashMap<Tuple, VecDeque<HeldCall>>,
    /// Traced database clients, by (local, remote), with their finished calls that no
    /// server span has claimed yet (kept only while the server is traced too).
    clients: TwoGen<Tuple, VecDeque<FinishedCall>>,
}

/// Traced server connections remembered at most; beyond, one is forgotten (its waiting
/// spans released, counted) for each new one.
const MAX_SERVERS: usize = 32_768;

/// A traced server's span waiting for the span of the traced client that sent its call.
#[derive(Debug)]
pub struct HeldCall {
    /// The process the span belongs to.
    pub tgid: u32,
    pub span: Span,
    /// Unix ns when it started waiting.
    pub since_ns: u64,
}

#[derive(Debug)]
struct FinishedCall {
    name: String,
    trace_id: TraceId,
    span_id: SpanId,
}

/// What a finished server call should do.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerCall {
    /// The traced client's span: become its child.
    Parent(TraceId, ParentLink),
    /// The client is traced but its span is not finished: wait for it.
    Wait,
    /// The client is not traced: a root span.
    Root,
}

impl Default for CallJoin {
    fn default() -> Self {
        Self {
            servers: foldhash::HashMap::default(),
            clients: TwoGen::new(32_768),
        }
    }
}

impl CallJoin {
    pub fn client_seen(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.clients.entry((local, remote));
    }

    /// A traced server's connection (its local, remote). Spans it had waiting when the
    /// table was full are `released` (counted).
    pub fn server_seen(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        counters: &Counters,
        released: &mut Vec<HeldCall>,
    ) {
        let key = (remote, local);
        if self.servers.len() >= MAX_SERVERS
            && !self.servers.contains_key(&key)
            && let Some(evict) = self.servers.keys().next().copied()
        {
            self.server_gone(evict, counters, released);
        }
        self.servers.entry(key).or_default();
    }

    pub fn client_closed(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.clients.remove(&(local, remote));
    }

    /// The traced server's connection closed: its waiting spans go out unjoined.
    pub fn server_closed(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        counters: &Counters,
        released: &mut Vec<HeldCall>,
    ) {
        self.server_gone((remote, local), counters, released);
    }

    fn server_gone(&mut self, key: Tuple, counters: &Counters, released: &mut Vec<HeldCall>) {
        if let Some(held) = self.servers.remove(&key) {
            Counters::add(&counters.db_unjoined_server_calls, held.len() as u64);
            released.extend(held);
        }
    }

    /// A traced client's call named `name` finished on (local, remote): the traced
    /// server's span of it, if it is waiting. `None` when the server is traced but has
    /// not finished it (see [`Self::client_finished`]) or is not traced.
    pub fn take_waiting(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        name: &str,
        counters: &Counters,
    ) -> Option<HeldCall> {
        let queue = self.servers.get_mut(&(local, remote))?;
        let before = queue.len();
        let found = take_first_named(queue, name, |h| &h.span.name)?;
        // The calls before it were lost by this side's parser: they can never match.
        Counters::add(
            &counters.db_unjoined_server_calls,
            (before - queue.len() - 1) as u64,
        );
        Some(found)
    }

    /// Whether the server of a client connection (local, remote) is traced.
    pub fn server_traced(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.servers.contains_key(&(local, remote))
    }

    /// A client call finished and no server span was waiting for it: keep it for the
    /// server's (bounded; the oldest goes first).
    pub fn client_finished(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        name: &str,
        ident: &SpanIdentity,
    ) {
        let Some(queue) = self.clients.get_mut(&(local, remote)) else {
            return;
        };
        if queue.len() >= MAX_IN_FLIGHT_PER_CONNECTION {
            queue.pop_front();
        }
        queue.push_back(FinishedCall {
            name: name.to_owned(),
            trace_id: ident.trace_id,
            span_id: ident.span_id,
        });
    }

    /// A server call named `name` finished on (local, remote).
    pub fn server_finished(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        name: &str,
    ) -> ServerCall {
        let Some(queue) = self.clients.get_mut(&(remote, local)) else {
            return ServerCall::Root;
        };
        match take_first_named(queue, name, |c| &c.name) {
            Some(c) => ServerCall::Parent(
                c.trace_id,
                ParentLink {
                    span_id: c.span_id,
                    source: ParentSource::LocalPeer,
                },
            ),
            None => ServerCall::Wait,
        }
    }

    /// A server span waits on its connection (local, remote) for its client's; beyond
    /// `max_waiting` the oldest is released unjoined (counted).
    pub fn hold(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        call: HeldCall,
        max_waiting: usize,
        counters: &Counters,
        released: &mut Vec<HeldCall>,
    ) {
        let queue = self.servers.entry((remote, local)).or_default();
        if queue.len() >= max_waiting
            && let Some(oldest) = queue.pop_front()
        {
            Counters::inc(&counters.db_unjoined_server_calls);
            released.push(oldest);
        }
        queue.push_back(call);
    }

    /// Server spans that waited longer than `wait_ns` at `now_ns` go out unjoined.
    pub fn release_expired(
        &mut self,
        now_ns: u64,
        wait_ns: u64,
        counters: &Counters,
        released: &mut Vec<HeldCall>,
    ) {
        for queue in self.servers.values_mut() {
            while queue
                .front()
                .is_some_and(|h| now_ns.saturating_sub(h.since_ns) > wait_ns)
                && let Some(h) = queue.pop_front()
            {
                Counters::inc(&counters.db_unjoined_server_calls);
                released.push(h);
            }
        }
    }
}

/// Removes and returns the first entry named `name`; the entries before it were lost by
/// the other side's parser and can never match, so they go too.
pub fn take_first_named<T>(
    queue: &mut VecDeque<T>,
    name: &str,
    name_of: impl Fn(&T) -> &str,
) -> Option<T> {
    let i = queue.iter().position(|e| name_of(e) == name)?;
    queue.drain(..i);
    queue.pop_front()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn header_parent_from_our_insertion_reads_injected() {
        let mut join = TraceJoin::default();
        let (client_addr, server_addr) = (addr("127.0.0.1:5000"), addr("127.0.0.1:80"));
        let client = SpanIdentity::new_root();
        join.client_request(client_addr, server_addr, &client, true);
        let header = ParentLink {
            span_id: client.span_id,
            source: ParentSource::Header(CtxFormat::W3c),
        };
        let mut server = SpanIdentity {
            trace_id: client.trace_id,
            span_id: SpanIdentity::new_root().span_id,
            parent: Some(header),
        };
        join.server_request(server_addr, client_addr, &mut server);
        assert_eq!(
            server.parent.map(|p| (p.span_id, p.source)),
            Some((client.span_id, ParentSource::Injected))
        );

        // An application's own header (not ours) keeps reading `header`.
        join.client_request(client_addr, server_addr, &client, false);
        let mut other = SpanIdentity {
            parent: Some(header),
            ..server
        };
        join.server_request(server_addr, client_addr, &mut other);
        assert_eq!(
            other.parent.map(|p| p.source),
            Some(ParentSource::Header(CtxFormat::W3c))
        );
    }

    #[test]
    fn server_adopts_client_and_its_trace_is_renamed() {
        let mut join = TraceJoin::default();
        let client = SpanIdentity::new_root();
        join.client_request(addr("127.0.0.1:5000"), addr("127.0.0.1:80"), &client, false);
        let mut server = SpanIdentity::new_root();
        let kernel_trace = server.trace_id;
        join.server_request(addr("127.0.0.1:80"), addr("127.0.0.1:5000"), &mut server);
        assert_eq!(server.trace_id, client.trace_id);
        assert_eq!(server.parent.map(|p| p.span_id), Some(client.span_id));
        assert_eq!(join.resolve(kernel_trace), client.trace_id);
    }

    #[test]
    fn pipelined_requests_pair_with_their_own_client_spans() {
        let mut join = TraceJoin::default();
        let (c1, c2) = (SpanIdentity::new_root(), SpanIdentity::new_root());
        let (client, server) = (addr("127.0.0.1:5000"), addr("127.0.0.1:80"));
        join.client_request(client, server, &c1, false);
        join.client_request(client, server, &c2, false);
        let (mut s1, mut s2) = (SpanIdentity::new_root(), SpanIdentity::new_root());
        join.server_request(server, client, &mut s1);
        join.server_request(server, client, &mut s2);
        assert_eq!(s1.parent.map(|p| p.span_id), Some(c1.span_id));
        assert_eq!(s2.parent.map(|p| p.span_id), Some(c2.span_id));
        assert_eq!((s1.trace_id, s2.trace_id), (c1.trace_id, c2.trace_id));
    }

    #[test]
    fn a_finished_client_span_is_forgotten() {
        let mut join = TraceJoin::default();
        let c = SpanIdentity::new_root();
        let (client, server) = (addr("127.0.0.1:5000"), addr("127.0.0.1:80"));
        join.client_request(client, server, &c, false);
        join.client_done(client, server, c.span_id);
        let mut s = SpanIdentity::new_root();
        join.server_request(server, client, &mut s);
        assert_eq!(s.parent, None);
    }

    #[test]
    fn unrelated_server_keeps_its_trace() {
        let mut join = TraceJoin::default();
        let client = SpanIdentity::new_root();
        join.client_request(addr("127.0.0.1:5000"), addr("127.0.0.1:80"), &client, false);
        let mut server = SpanIdentity::new_root();
        let before = server;
        join.server_request(addr("127.0.0.1:80"), addr("127.0.0.1:5001"), &mut server);
        assert_eq!(server, before);
    }

    #[test]
    fn db_calls_join_whichever_side_finishes_first() {
        let mut join = CallJoin::default();
        let (client, server) = (addr("127.0.0.1:5000"), addr("127.0.0.1:5432"));
        assert_eq!(
            join.server_finished(server, client, "SELECT t"),
            ServerCall::Root
        );
        join.client_seen(client, server);
        let counters = Counters::default();
        join.server_seen(server, client, &counters, &mut Vec::new());
        assert!(join.server_traced(client, server));
        // The server finished first: it must wait.
        assert_eq!(
            join.server_finished(server, client, "SELECT t"),
            ServerCall::Wait
        );
        // The client finished first: the server takes its span, skipping a call it lost.
        let (lost, c) = (SpanIdentity::new_root(), SpanIdentity::new_root());
        join.client_finished(client, server, "BEGIN", &lost);
        join.client_finished(client, server, "SELECT t", &c);
        let link = ParentLink {
            span_id: c.span_id,
            source: ParentSource::LocalPeer,
        };
        assert_eq!(
            join.server_finished(server, client, "SELECT t"),
            ServerCall::Parent(c.trace_id, link)
        );
        assert_eq!(
            join.server_finished(server, client, "BEGIN"),
            ServerCall::Wait
        );
        join.client_closed(client, server);
        assert_eq!(
            join.server_finished(server, client, "BEGIN"),
            ServerCall::Root
        );
    }

    #[test]
    fn two_generations_bound_memory() {
        let mut g = TwoGen::new(2);
        for i in 0..10 {
            g.insert(i, i);
        }
        assert!(g.young.len() + g.old.len() <= 4);
        assert_eq!(g.get(&9), Some(9));
        assert_eq!(g.get(&0), None);
    }
}
