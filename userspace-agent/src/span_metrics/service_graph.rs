//! Service-graph edges (client service -> server service) from pairs of spans, the way
//! the OpenTelemetry Collector's servicegraph connector and Tempo build them.
//!
//! A SERVER span whose parent is a CLIENT span is one request over one edge. The two
//! arrive in any order (the client usually ends, hence arrives, after its server
//! child), so the first one waits in a bounded store keyed by the client's span ID:
//!
//! - matched pair: edge `client.service -> server.service`, both durations;
//! - CLIENT span still alone after `wait`: its server is not traced (another host, or
//!   an untraced process); edge `client.service -> "<server.address>:<server.port>"`
//!   (the peer as the client named it), client duration only. The collector calls
//!   this a virtual node; the peer form keeps distinct upstreams apart without
//!   inventing service names;
//! - SERVER span with no parent: a request from outside; edge `"user" -> service`,
//!   server duration only (emitted at once: there is nothing to wait for);
//! - SERVER span still alone after `wait` (its parent client is not on this host):
//!   counted as expired, no edge, since the caller is unknown.
//!
//! The store holds at most `max_pending` spans; when full, the oldest is expired early
//! (and counted as evicted) to make room. Edges between two processes of the same
//! service are kept (a service calling itself is worth seeing).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::spans::{Resource, Span, SpanId, SpanKind, Status, Value};

/// The `client` label of requests from outside (no parent span), as Tempo names it.
pub const USER_NODE: &str = "user";

/// Bounds of the pending store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceGraphConfig {
    /// Spans waiting for their counterpart, at most.
    pub max_pending: usize,
    /// How long a span waits for its counterpart (driver time, ns).
    pub wait_nanos: u64,
}

impl Default for ServiceGraphConfig {
    fn default() -> Self {
        Self {
            max_pending: 10_000,
            wait_nanos: 10_000_000_000,
        }
    }
}

/// How an edge was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// A traced client paired with its traced server.
    Paired,
    /// A traced client whose server is not traced: the server is its peer address.
    Peer,
    /// A root server span: the client is [`USER_NODE`].
    User,
}

/// One request over one edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub client: String,
    pub server: String,
    pub kind: EdgeKind,
    /// Either side's span has status ERROR.
    pub failed: bool,
    pub client_seconds: Option<f64>,
    pub server_seconds: Option<f64>,
}

/// What happened to spans that did not pair, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceGraphStats {
    /// Spans that waited the full window without their counterpart.
    pub expired: u64,
    /// Spans expired before their window ended because the store was full.
    pub evicted: u64,
}

/// One side of an edge, waiting.
#[derive(Clone, Debug)]
struct Side {
    resource: Arc<Resource>,
    seconds: f64,
    failed: bool,
    /// Client only: `server.address[:server.port]`.
    peer: Option<String>,
}

#[derive(Clone, Debug)]
enum Pending {
    Client(Side),
    Server(Side),
}

#[derive(Debug)]
struct Entry {
    pending: Pending,
    /// Key into `deadlines`.
    due: (u64, u64),
}

/// Pairs spans into edges; bounded in memory.
#[derive(Debug)]
pub struct ServiceGraph {
    config: ServiceGraphConfig,
    /// By the client's span ID (a server waits under its parent span ID).
    pending: HashMap<SpanId, Entry>,
    /// (deadline, sequence) -> key: expiry in deadline order, ties by arrival.
    deadlines: BTreeMap<(u64, u64), SpanId>,
    seq: u64,
    stats: ServiceGraphStats,
}

impl ServiceGraph {
    pub fn new(config: ServiceGraphConfig) -> Self {
        Self {
            config,
            pending: HashMap::new(),
            deadlines: BTreeMap::new(),
            seq: 0,
            stats: ServiceGraphStats::default(),
        }
    }

    pub fn stats(&self) -> ServiceGraphStats {
        self.stats
    }

    /// Spans waiting for their counterpart.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes one finished span; pushes the edges it completes onto `out`.
    pub fn on_span(&mut self, span: &Span, now: u64, out: &mut Vec<Edge>) {
        let side = Side {
            resource: Arc::clone(&span.resource),
            seconds: span.duration_nanos() as f64 / 1e9,
            failed: matches!(span.status, Status::Error { .. }),
            peer: match span.kind {
                SpanKind::Client => peer_name(span),
                SpanKind::Server => None,
            },
        };
        let (key, pending) = match (span.kind, span.parent_span_id) {
            (SpanKind::Server, None) => {
                out.push(Edge {
                    client: USER_NODE.to_owned(),
                    server: side.resource.service_name.clone(),
                    kind: EdgeKind::User,
                    failed: side.failed,
                    client_seconds: None,
                    server_seconds: Some(side.seconds),
                });
                return;
            }
            (SpanKind::Server, Some(parent)) => (parent, Pending::Server(side)),
            (SpanKind::Client, _) => (span.span_id, Pending::Client(side)),
        };
        match (self.take(key), pending) {
            (Some(Pending::Client(client)), Pending::Server(server))
            | (Some(Pending::Server(server)), Pending::Client(client)) => {
                out.push(paired(&client, &server));
            }
            // Nothing waiting, or a duplicate of the same side: this one waits (a
            // duplicate replaces the earlier span, which is counted as expired).
            (previous, pending) => {
                if previous.is_some() {
                    self.stats.expired += 1;
                }
                self.insert(key, pending, now, out);
            }
        }
    }

    /// Expires every span whose window ended at `now`.
    pub fn expire(&mut self, now: u64, out: &mut Vec<Edge>) {
        while let Some((&due, _)) = self.deadlines.first_key_value() {
            if due.0 > now {
                break;
            }
            self.expire_first(out);
            self.stats.expired += 1;
        }
    }

    /// Expires everything still waiting (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<Edge>) {
        while !self.deadlines.is_empty() {
            self.expire_first(out);
            self.stats.expired += 1;
        }
    }

    fn take(&mut self, key: SpanId) -> Option<Pending> {
        let entry = self.pending.remove(&key)?;
        self.deadlines.remove(&entry.due);
        Some(entry.pending)
    }

    fn insert(&mut self, key: SpanId, pending: Pending, now: u64, out: &mut Vec<Edge>) {
        if self.config.max_pending == 0 {
            self.stats.evicted += 1;
            expired_edge(pending, out);
            return;
        }
        while self.pending.len() >= self.config.max_pending {
            self.expire_first(out);
            self.stats.evicted += 1;
        }
        self.seq += 1;
        let due = (now.saturating_add(self.config.wait_nanos), self.seq);
        self.deadlines.insert(due, key);
        self.pending.insert(key, Entry { pending, due });
    }

    /// Removes the entry with the earliest deadline, emitting its edge if it has one.
    fn expire_first(&mut self, out: &mut Vec<Edge>) {
        let Some((_, key)) = self.deadlines.pop_first() else {
            return;
        };
        if let Some(entry) = self.pending.remove(&key) {
            expired_edge(entry.pending, out);
        }
    }
}

fn paired(client: &Side, server: &Side) -> Edge {
    Edge {
        client: client.resource.service_name.clone(),
        server: server.resource.service_name.clone(),
        kind: EdgeKind::Paired,
        failed: client.failed || server.failed,
        client_seconds: Some(client.seconds),
        server_seconds: Some(server.seconds),
    }
}

/// A client alone becomes a peer edge; a server alone has no known caller.
fn expired_edge(pending: Pending, out: &mut Vec<Edge>) {
    if let Pending::Client(client) = pending {
        out.push(Edge {
            client: client.resource.service_name.clone(),
            server: client.peer.unwrap_or_else(|| "unknown".to_owned()),
            kind: EdgeKind::Peer,
            failed: client.failed,
            client_seconds: Some(client.seconds),
            server_seconds: None,
        });
    }
}

/// `server.address:server.port` (IPv6 in brackets), or the address alone.
fn peer_name(span: &Span) -> Option<String> {
    let address = match span.attr("server.address")? {
        Value::Str(s) if s.contains(':') => format!("[{s}]"),
        other => other.to_string(),
    };
    Some(match span.attr("server.port") {
        Some(port) => format!("{address}:{port}"),
        None => address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::test_support::{SpanExt, span, span_id, trace_id};

    const SEC: u64 = 1_000_000_000;

    fn client(id: u64, service: &str) -> Span {
        span(trace_id(1), span_id(id), None, service)
            .kind(SpanKind::Client)
            .timed(0, 30_000_000)
            .attr("server.address", "backend.local")
            .attr("server.port", 8080)
    }

    fn server(id: u64, parent: u64, service: &str) -> Span {
        span(trace_id(1), span_id(id), Some(span_id(parent)), service)
            .kind(SpanKind::Server)
            .timed(1_000_000, 20_000_000)
    }

    fn graph() -> ServiceGraph {
        ServiceGraph::new(ServiceGraphConfig::default())
    }

    #[test]
    fn pairs_in_both_arrival_orders() {
        for client_first in [true, false] {
            let mut g = graph();
            let mut out = Vec::new();
            let (c, s) = (
                client(1, "frontend"),
                server(2, 1, "backend").error("HTTP 500"),
            );
            let (first, second) = if client_first { (&c, &s) } else { (&s, &c) };
            g.on_span(first, 0, &mut out);
            assert!(out.is_empty());
            assert_eq!(g.pending_len(), 1);
            g.on_span(second, SEC, &mut out);
            assert_eq!(g.pending_len(), 0);
            assert_eq!(
                out,
                [Edge {
                    client: "frontend".into(),
                    server: "backend".into(),
                    kind: EdgeKind::Paired,
                    failed: true,
                    client_seconds: Some(0.03),
                    server_seconds: Some(0.02),
                }]
            );
        }
    }

    #[test]
    fn lonely_client_becomes_a_peer_edge_after_the_window() {
        let mut g = graph();
        let mut out = Vec::new();
        g.on_span(&client(1, "frontend"), 0, &mut out);
        g.expire(10 * SEC - 1, &mut out);
        assert!(out.is_empty());
        g.expire(10 * SEC, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].server, "backend.local:8080");
        assert_eq!(out[0].kind, EdgeKind::Peer);
        assert_eq!(out[0].server_seconds, None);
        assert_eq!(g.stats().expired, 1);
    }

    #[test]
    fn lonely_server_expires_without_an_edge_and_late_client_then_waits() {
        let mut g = graph();
        let mut out = Vec::new();
        g.on_span(&server(2, 1, "backend"), 0, &mut out);
        g.expire(11 * SEC, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            g.stats(),
            ServiceGraphStats {
                expired: 1,
                evicted: 0
            }
        );
        g.on_span(&client(1, "frontend"), 11 * SEC, &mut out);
        assert_eq!(g.pending_len(), 1);
    }

    #[test]
    fn root_server_is_a_user_edge_at_once() {
        let mut g = graph();
        let mut out = Vec::new();
        let root = span(trace_id(1), span_id(5), None, "web").kind(SpanKind::Server);
        g.on_span(&root, 0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].client.as_str(), out[0].server.as_str()),
            ("user", "web")
        );
        assert_eq!(out[0].client_seconds, None);
        assert_eq!(g.pending_len(), 0);
    }

    #[test]
    fn full_store_evicts_the_oldest() {
        let mut g = ServiceGraph::new(ServiceGraphConfig {
            max_pending: 2,
            wait_nanos: 10 * SEC,
        });
        let mut out = Vec::new();
        for id in 1..=3 {
            g.on_span(&client(id, "frontend"), id, &mut out);
        }
        assert_eq!(g.pending_len(), 2);
        assert_eq!(g.stats().evicted, 1);
        assert_eq!(
            out.len(),
            1,
            "the evicted client still counts as a peer edge"
        );
        // The evicted one (id 1) no longer pairs; id 2 still does.
        g.on_span(&server(10, 2, "backend"), 5, &mut out);
        assert_eq!(out.last().map(|e| e.kind), Some(EdgeKind::Paired));
        g.flush(&mut out);
        assert_eq!(g.pending_len(), 0);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn ipv6_peer_is_bracketed() {
        let s = span(trace_id(1), span_id(1), None, "a")
            .kind(SpanKind::Client)
            .attr("server.address", "::1")
            .attr("server.port", 80);
        assert_eq!(peer_name(&s).as_deref(), Some("[::1]:80"));
    }
}
