//! Joining traces across processes on one host without any header: when both ends of a
//! connection are traced, the server span becomes the child of the client span that
//! sent the request (matched by 4-tuple), and the trace the kernel started for the
//! server is renamed to the client's trace everywhere it appears. A span whose parent
//! the kernel already took from a context header keeps it.
//!
//! Either side may be reported first: TLS plaintext is reported when the library call
//! returns, which can be after the server read the request, or even answered it
//! ([`awaiting`]). Database calls have their own join ([`calls`]).

mod awaiting;
mod calls;
mod two_gen;

use std::collections::VecDeque;
use std::net::SocketAddr;

pub use awaiting::AwaitingClient;
pub use calls::{CallJoin, HeldCall, ServerCall};
pub use two_gen::TwoGen;

use super::identity::{ParentLink, ParentSource, SpanIdentity};
use super::model::{SpanId, TraceId};
use crate::abi::CtxFormat;

/// Requests a pipelining client may have in flight on one connection.
pub(super) const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// (local, remote) as the client sees its connection.
pub type Tuple = (SocketAddr, SocketAddr);

/// A client request in flight, as the server side will look for it.
#[derive(Clone, Copy, Debug)]
struct ClientRequest {
    trace_id: TraceId,
    span_id: SpanId,
    /// Sonde inserted a `traceparent` naming this span into the request.
    injected: bool,
}

/// A server request in flight that no client request was seen for (yet).
#[derive(Clone, Copy, Debug)]
struct ServerRequest {
    trace_id: TraceId,
    span_id: SpanId,
}

#[derive(Debug)]
pub struct TraceJoin {
    /// In-flight client requests by the client's (local, remote), oldest first: with
    /// pipelining the server reads them in this order.
    clients: TwoGen<Tuple, VecDeque<ClientRequest>>,
    /// In-flight server requests without a parent, by the client's (local, remote),
    /// oldest first: the client's request may be reported after the server read it
    /// (TLS plaintext is reported when the library call returns).
    servers: TwoGen<Tuple, VecDeque<ServerRequest>>,
    /// Server spans whose client was seen late: the parent they take when built.
    late: TwoGen<SpanId, (TraceId, ParentLink)>,
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
            servers: TwoGen::new(cap),
            late: TwoGen::new(cap),
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
        // The server already read this request: its span becomes this one's child.
        if let Some(server) = self
            .servers
            .get_mut(&(local, remote))
            .and_then(VecDeque::pop_front)
        {
            if server.trace_id != ident.trace_id {
                self.renamed.insert(server.trace_id, ident.trace_id);
            }
            let link = ParentLink {
                span_id: ident.span_id,
                source: ParentSource::LocalPeer,
            };
            self.late.insert(server.span_id, (ident.trace_id, link));
            return;
        }
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
        let Some(client) = self
            .clients
            .get_mut(&(remote, local))
            .and_then(VecDeque::pop_front)
        else {
            // No client request seen (yet): if one comes while this one is in flight,
            // it is this one's parent.
            if ident.parent.is_none() {
                let queue = self.servers.entry((remote, local));
                if queue.len() >= MAX_IN_FLIGHT_PER_CONNECTION {
                    queue.pop_front();
                }
                queue.push_back(ServerRequest {
                    trace_id: ident.trace_id,
                    span_id: ident.span_id,
                });
            }
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

    /// A server request on (local, remote) is finished: if its client came late,
    /// `ident` takes its parent now. True when no client request was seen for it at
    /// all (yet): it was waiting, and still has no parent.
    pub fn server_done(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        ident: &mut SpanIdentity,
    ) -> bool {
        let mut waited = false;
        if let Some(queue) = self.servers.get_mut(&(remote, local)) {
            let before = queue.len();
            queue.retain(|s| s.span_id != ident.span_id);
            waited = queue.len() < before;
        }
        if ident.parent.is_none()
            && let Some((trace_id, link)) = self.late.get(&ident.span_id)
        {
            self.late.remove(&ident.span_id);
            ident.trace_id = trace_id;
            ident.parent = Some(link);
            return false;
        }
        waited
    }

    /// Spans of trace `from` (a finished span's subtree) join trace `to` from now on.
    pub fn rename(&mut self, from: TraceId, to: TraceId) {
        if from != to {
            self.renamed.insert(from, to);
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

    /// TLS plaintext is reported when the library call returns, so the server may read a
    /// request before its client's is reported: the join works in either order.
    #[test]
    fn a_client_seen_after_its_server_still_becomes_the_parent() {
        let mut join = TraceJoin::default();
        let (client_addr, server_addr) = (addr("127.0.0.1:5000"), addr("127.0.0.1:443"));
        let mut server = SpanIdentity::new_root();
        let kernel_trace = server.trace_id;
        join.server_request(server_addr, client_addr, &mut server);
        assert_eq!(server.parent, None, "no client yet");
        let client = SpanIdentity::new_root();
        join.client_request(client_addr, server_addr, &client, false);
        assert!(
            !join.server_done(server_addr, client_addr, &mut server),
            "its client came"
        );
        assert_eq!(
            server.parent,
            Some(ParentLink {
                span_id: client.span_id,
                source: ParentSource::LocalPeer
            })
        );
        assert_eq!(server.trace_id, client.trace_id);
        assert_eq!(
            join.resolve(kernel_trace),
            client.trace_id,
            "its subtree follows"
        );
        // A finished server request waits no more in the join (the span builder may
        // hold its span): the next client request is not its.
        let mut alone = SpanIdentity::new_root();
        join.server_request(server_addr, client_addr, &mut alone);
        assert!(
            join.server_done(server_addr, client_addr, &mut alone),
            "no client seen"
        );
        let next = SpanIdentity::new_root();
        join.client_request(client_addr, server_addr, &next, false);
        let mut later = SpanIdentity::new_root();
        join.server_request(server_addr, client_addr, &mut later);
        assert_eq!(later.parent.map(|p| p.span_id), Some(next.span_id));
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
}
