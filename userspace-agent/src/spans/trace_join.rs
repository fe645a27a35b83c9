//! Joining traces across processes on one host without any header: when both ends of a
//! connection are traced, the server span becomes the child of the client span that
//! sent the request (matched by 4-tuple), and the trace the kernel started for the
//! server is renamed to the client's trace everywhere it appears. A span whose parent
//! the kernel already took from a context header keeps it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::identity::{ParentLink, ParentSource, SpanIdentity};
use super::model::{SpanId, TraceId};

/// Bounded map with two generations: when the young one is full it becomes the old
/// one and the previous old one is dropped. Recent entries always survive.
#[derive(Debug)]
pub(super) struct TwoGen<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq, V> TwoGen<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            cap,
        }
    }

    pub(super) fn insert(&mut self, k: K, v: V) {
        if self.young.len() >= self.cap {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(k, v);
    }

    pub(super) fn remove(&mut self, k: &K) {
        self.young.remove(k);
        self.old.remove(k);
    }
}

impl<K: std::hash::Hash + Eq, V: Copy> TwoGen<K, V> {
    pub(super) fn get(&self, k: &K) -> Option<V> {
        self.young.get(k).or_else(|| self.old.get(k)).copied()
    }
}

impl<K: std::hash::Hash + Eq + Copy, V: Default> TwoGen<K, V> {
    /// The value for `k`, created if absent; an entry found in the old generation moves
    /// to the young one.
    fn entry(&mut self, k: K) -> &mut V {
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

#[derive(Debug)]
pub struct TraceJoin {
    /// In-flight client requests by the client's (local, remote), oldest first: with
    /// pipelining the server reads them in this order.
    clients: TwoGen<Tuple, VecDeque<(TraceId, SpanId)>>,
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

    /// A client request left on (local, remote).
    pub fn client_request(&mut self, local: SocketAddr, remote: SocketAddr, ident: &SpanIdentity) {
        let queue = self.clients.entry((local, remote));
        if queue.len() >= MAX_IN_FLIGHT_PER_CONNECTION {
            queue.pop_front();
        }
        queue.push_back((ident.trace_id, ident.span_id));
    }

    /// The client span finished; forget it unless the server already took it.
    pub fn client_done(&mut self, local: SocketAddr, remote: SocketAddr, span_id: SpanId) {
        let key = (local, remote);
        if let Some(queue) = self.clients.get_mut(&key) {
            queue.retain(|(_, s)| *s != span_id);
            if queue.is_empty() {
                self.clients.remove(&key);
            }
        }
    }

    /// A server request arrived on (local, remote): adopt the traced client's span as
    /// parent when there is one.
    pub fn server_request(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        ident: &mut SpanIdentity,
    ) {
        let Some(queue) = self.clients.get_mut(&(remote, local)) else {
            return;
        };
        if let Some((trace_id, span_id)) = queue.pop_front() {
            self.adopt(ident, trace_id, span_id, ParentSource::LocalPeer);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn server_adopts_client_and_its_trace_is_renamed() {
        let mut join = TraceJoin::default();
        let client = SpanIdentity::new_root();
        join.client_request(addr("127.0.0.1:5000"), addr("127.0.0.1:80"), &client);
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
        join.client_request(client, server, &c1);
        join.client_request(client, server, &c2);
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
        join.client_request(client, server, &c);
        join.client_done(client, server, c.span_id);
        let mut s = SpanIdentity::new_root();
        join.server_request(server, client, &mut s);
        assert_eq!(s.parent, None);
    }

    #[test]
    fn unrelated_server_keeps_its_trace() {
        let mut join = TraceJoin::default();
        let client = SpanIdentity::new_root();
        join.client_request(addr("127.0.0.1:5000"), addr("127.0.0.1:80"), &client);
        let mut server = SpanIdentity::new_root();
        let before = server;
        join.server_request(addr("127.0.0.1:80"), addr("127.0.0.1:5001"), &mut server);
        assert_eq!(server, before);
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
