//! PostgreSQL frontend/backend protocol v3, from the client's point of view.
//!
//! One span per exchange:
//! - a simple `Query` ('Q'), from the query to its `ReadyForQuery`, with every statement
//!   of the query string in the summary;
//! - an extended-protocol execution: the `Parse`/`Bind`/`Describe` messages leading to an
//!   `Execute`, up to the `CommandComplete` (or error) answering it. Pipelines (several
//!   executions before one `Sync`) give one span per `Execute`. A statement prepared
//!   before the agent attached is reported by name (`EXECUTE <name>`, attribute
//!   `sonde.db.statement_name`), never with a guessed query. A `Parse` without `Execute`
//!   (preparing only) gives a span only when the server rejects it.
//!
//! Startup: the `database` parameter (or `user`, the server's default) becomes
//! `db.namespace`. An SSLRequest or GSSENCRequest accepted by the server ends parsing of
//! the socket's bytes (counted in `tls_upgrades`): what follows is ciphertext. When a
//! probed TLS library reports the plaintext ([`DbParser::tls_started`]), parsing starts
//! over on it, at the client's startup message, as on a new connection; authentication
//! messages are skipped unread.
//!
//! Lost sync: messages are length-framed, so bytes in a gap are skipped by count. A
//! header inside a gap loses sync: pending exchanges are dropped (counted) and the client
//! side resyncs at the next client segment that starts with a whole, valid client
//! message (see [`sniff_mid_stream`]); the server side then resyncs at its next segment
//! that starts with a valid server message header.
//!
//! Layout: `detect` recognises PostgreSQL bytes; `client` reads the client's messages into
//! exchanges, with the prepared statements and portals they name; `server` matches the
//! responses to them; `exchange` is one exchange and the call it becomes.

mod client;
mod detect;
mod exchange;
mod server;

use std::collections::VecDeque;

use super::framing::Framer;
use super::sql::Analysis;
use super::{DbCall, DbParser, ParseOptions, ParserStats, Side};
use crate::protocols::Segment;
use exchange::{Query, Unit};

pub use detect::{sniff, sniff_mid_stream};

/// Largest message length accepted as sane (the server's limit is 1 GiB).
const MAX_MESSAGE: u64 = 1 << 30;

/// How the next client message is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientPhase {
    /// Nothing seen yet: a startup message or (joined mid-stream) a typed message.
    First,
    /// Startup phase: untyped messages.
    Startup,
    Typed,
}

/// A one-byte server answer the next server byte is (not length-framed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    SslAnswer,
    GssAnswer,
}

/// One connection's PostgreSQL parser.
#[derive(Debug)]
pub struct PostgresParser {
    opts: ParseOptions,
    stats: ParserStats,
    client: Framer,
    server: Framer,
    client_phase: ClientPhase,
    awaiting: Awaiting,
    /// TLS or GSS encryption: nothing more of the socket's bytes is readable.
    encrypted: bool,
    namespace: Option<String>,
    units: VecDeque<Unit>,
    statements: Vec<(String, Analysis)>,
    portals: Vec<(String, Query)>,
}

impl PostgresParser {
    pub fn new(opts: ParseOptions) -> Self {
        Self {
            opts,
            stats: ParserStats::default(),
            client: Framer::new(MAX_MESSAGE),
            server: Framer::new(MAX_MESSAGE),
            client_phase: ClientPhase::First,
            awaiting: Awaiting::Nothing,
            encrypted: false,
            namespace: None,
            units: VecDeque::new(),
            statements: Vec::new(),
            portals: Vec::new(),
        }
    }

    /// A header fell into a gap: pending exchanges can no longer be paired.
    fn lose_sync(&mut self, rest: u64) {
        self.stats.desync_bytes += rest;
        self.client.lose();
        self.server.lose();
        self.drop_units();
    }

    fn drop_units(&mut self) {
        let dropped = self.units.iter().filter(|u| u.reports()).count();
        self.stats.dropped_calls += dropped as u64;
        self.units.clear();
    }
}

impl DbParser for PostgresParser {
    fn push(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        if self.encrypted {
            return;
        }
        match side {
            Side::Client => self.client_segment(seg),
            Side::Server => self.server_segment(seg, out),
        }
    }

    fn finish(&mut self, _out: &mut Vec<DbCall>) {
        // Unanswered exchanges have no end: dropped, not guessed.
        self.drop_units();
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }

    /// After the server's 'S' the client starts over inside TLS with its startup
    /// message: nothing before it carries over (the namespace comes with that message).
    fn tls_started(&mut self) {
        self.drop_units();
        *self = Self {
            stats: self.stats,
            ..Self::new(self.opts)
        };
    }
}

#[cfg(test)]
mod tests;
