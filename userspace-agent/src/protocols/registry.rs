//! Every protocol Sonde parses, and the one detection step that picks a connection's.
//!
//! Adding a protocol is one module beside this file plus one [`Protocol`] line in
//! [`PROTOCOLS`]. Detection tries the entries in order on a connection's first bytes:
//! the first protocol that recognises them wins, except that a protocol served on its
//! usual port beats one that is not (ports only break ties: a service on another port is
//! still recognised by its bytes). The bias is towards certainty: bytes no protocol
//! claims leave the connection unparsed (counted), never parsed as a guess.

use super::db::{self, DbSystem, ParseOptions, memcached, mysql, postgres, redis};
use super::http1;
use super::parser::{Parser, Side};

/// What a protocol's sniffer says of a connection's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// These bytes start a message that this side sends.
    SentBy(Side),
    /// Too short to tell, but they could still become such a message.
    NeedMore,
    /// Not this protocol.
    No,
}

/// What the probes know of a protocol's requests, which decides where a request span's
/// identity comes from (see `spans`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelView {
    /// The probes recognise request starts (`ebpf-probes/protocols/http1.h`) and decide, as each
    /// arrives or leaves, the IDs of its span (and inject them).
    Requests,
    /// The probes only mark bytes a thread sends while it serves a request, naming that
    /// request's span as the parent of whatever the bytes turn out to be.
    InSpan,
}

/// One protocol: how to recognise it and how to parse it.
pub struct Protocol {
    /// Short name, for logs.
    pub name: &'static str,
    /// The usual server port: breaks ties between protocols, never decides alone.
    pub usual_port: Option<u16>,
    pub kernel_view: KernelView,
    /// `db.system.name` for database and cache protocols.
    pub db_system: Option<DbSystem>,
    pub sniff: fn(&[u8]) -> Sniff,
    pub parser: fn(ParseOptions) -> Box<dyn Parser>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The protocols Sonde parses, in detection order.
pub static PROTOCOLS: &[Protocol] = &[
    Protocol {
        name: "http1",
        usual_port: None,
        kernel_view: KernelView::Requests,
        db_system: None,
        sniff: http1::sniff,
        parser: |_| Box::new(http1::Http1Conn::new()),
    },
    Protocol {
        name: "postgresql",
        usual_port: Some(5432),
        kernel_view: KernelView::InSpan,
        db_system: Some(DbSystem::Postgresql),
        sniff: |b| {
            sniff_calls(b, |s, b| {
                postgres::sniff(s, b) || postgres::sniff_mid_stream(s, b)
            })
        },
        parser: |o| db::CallParser::boxed(postgres::PostgresParser::new(o)),
    },
    Protocol {
        name: "mysql",
        usual_port: Some(3306),
        kernel_view: KernelView::InSpan,
        db_system: Some(DbSystem::Mysql),
        sniff: |b| {
            sniff_calls(b, |s, b| {
                mysql::sniff(s, b) || mysql::sniff_mid_stream(s, b)
            })
        },
        parser: |o| db::CallParser::boxed(mysql::MysqlParser::new(o)),
    },
    Protocol {
        name: "redis",
        usual_port: Some(6379),
        kernel_view: KernelView::InSpan,
        db_system: Some(DbSystem::Redis),
        sniff: |b| sniff_calls(b, redis::sniff),
        parser: |o| db::CallParser::boxed(redis::RedisParser::new(o)),
    },
    Protocol {
        name: "memcached",
        usual_port: Some(11211),
        kernel_view: KernelView::InSpan,
        db_system: Some(DbSystem::Memcached),
        sniff: |b| sniff_calls(b, memcached::sniff),
        parser: |o| db::CallParser::boxed(memcached::MemcachedParser::new(o)),
    },
];

/// A sniffer that asks "could a client send this?", then "could a server?".
fn sniff_calls(bytes: &[u8], sniff: impl Fn(Side, &[u8]) -> bool) -> Sniff {
    [Side::Client, Side::Server]
        .into_iter()
        .find(|side| sniff(*side, bytes))
        .map_or(Sniff::No, Sniff::SentBy)
}

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Detection {
    /// `protocol`, and these bytes were sent by its `sender`.
    Found {
        protocol: &'static Protocol,
        sender: Side,
    },
    /// Too short to tell yet: hold them and look again with the next bytes.
    NeedMore,
    /// No protocol Sonde parses.
    Unknown,
}

impl PartialEq for Protocol {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Protocol {}

/// Picks the protocol of a connection from its first bytes.
///
/// `server_port(sender)` is the server's port if `sender` sent these bytes (the caller
/// knows which end of the connection is the traced process). `more_may_come`: the bytes
/// are all a syscall moved, so a short prefix may still grow into a message; a
/// protocol that needs more then holds the decision.
pub fn detect(
    protocols: &'static [Protocol],
    bytes: &[u8],
    server_port: impl Fn(Side) -> u16,
    more_may_come: bool,
) -> Detection {
    let mut found = None;
    for protocol in protocols {
        match (protocol.sniff)(bytes) {
            Sniff::SentBy(sender) => {
                let on_usual_port = protocol
                    .usual_port
                    .is_none_or(|port| port == server_port(sender));
                if on_usual_port {
                    return Detection::Found { protocol, sender };
                }
                found = found.or(Some(Detection::Found { protocol, sender }));
            }
            Sniff::NeedMore if more_may_come && found.is_none() => return Detection::NeedMore,
            Sniff::NeedMore | Sniff::No => {}
        }
    }
    found.unwrap_or(Detection::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(d: &Detection) -> Option<(&'static str, Side)> {
        match d {
            Detection::Found { protocol, sender } => Some((protocol.name, *sender)),
            _ => None,
        }
    }

    #[test]
    fn http_is_recognised_from_either_side() {
        let port = |_| 8080;
        let d = detect(PROTOCOLS, b"GET / HTTP/1.1\r\n", port, true);
        assert_eq!(found(&d), Some(("http1", Side::Client)));
        let d = detect(PROTOCOLS, b"HTTP/1.1 200 OK\r\n", port, true);
        assert_eq!(found(&d), Some(("http1", Side::Server)));
    }

    #[test]
    fn a_short_start_is_held_only_while_more_may_come() {
        assert_eq!(detect(PROTOCOLS, b"GE", |_| 80, true), Detection::NeedMore);
        assert_eq!(detect(PROTOCOLS, b"GE", |_| 80, false), Detection::Unknown);
        assert_eq!(
            detect(PROTOCOLS, b"\x16\x03\x01garbage", |_| 443, true),
            Detection::Unknown
        );
    }

    #[test]
    fn database_protocols_are_recognised_on_any_port() {
        // (Ties between protocols that both claim bytes: spans/tests/db.rs.)
        for port in [11211, 9999] {
            let d = detect(PROTOCOLS, b"get key\r\n", |_| port, true);
            assert_eq!(found(&d), Some(("memcached", Side::Client)));
        }
        let d = detect(PROTOCOLS, b"*1\r\n$4\r\nPING\r\n", |_| 7000, true);
        assert_eq!(found(&d), Some(("redis", Side::Client)));
    }
}
