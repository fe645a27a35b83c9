//! Same-host join of database and cache calls, whose spans exist only once complete.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::{MAX_IN_FLIGHT_PER_CONNECTION, Tuple, TwoGen};
use crate::metrics::Counters;
use crate::spans::identity::{ParentLink, ParentSource, SpanIdentity};
use crate::spans::model::{Span, SpanId, TraceId};
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

/// A traced server's span waiting for the span (or request) of the traced client that
/// sent its call.
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
fn take_first_named<T>(
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
}
