//! Database and cache wire protocols: PostgreSQL, MySQL/MariaDB, Redis, memcached.
//!
//! Every parser here follows one connection from the client's point of view: it is fed the
//! bytes the client sent ([`Side::Client`]) and the bytes the server sent
//! ([`Side::Server`]), in the order the probes saw them, and returns each finished
//! request/response exchange as a [`DbCall`]. Parsers are pure (no I/O, no clocks): the
//! timestamps in a call are the segments' own.
//!
//! Shared rules (the same as `http1`):
//! - Captures are lossy: a [`Segment`] carries a prefix of what the syscall moved, maybe its
//!   last bytes, and the true length. Length-framed messages survive the gap; anything
//!   else resynchronises at the next message the parser can prove, and the loss is counted
//!   in [`ParserStats`], never guessed over.
//! - Memory per connection is bounded whatever the input, and no input panics.
//! - Privacy: query text is obfuscated (literals become `?`) unless the caller turns that
//!   off; passwords and authentication messages never leave the parser.

use super::Segment;
use super::parser::{CallOf, Message, Parser, Report};
pub use super::parser::{ParserStats, Side};

/// `db.system.name` values (OpenTelemetry database semantic conventions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DbSystem {
    Postgresql,
    Mysql,
    Mariadb,
    Redis,
    Memcached,
}

impl DbSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            DbSystem::Postgresql => "postgresql",
            DbSystem::Mysql => "mysql",
            DbSystem::Mariadb => "mariadb",
            DbSystem::Redis => "redis",
            DbSystem::Memcached => "memcached",
        }
    }
}

/// Options every parser honours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Replace literals in query text with `?` (default on).
    pub obfuscate_literals: bool,
    /// Longest `db.query.text` kept, in bytes (cut on a char boundary).
    pub max_query_text: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            obfuscate_literals: true,
            max_query_text: 2048,
        }
    }
}

/// One finished request/response exchange, with the attributes of its CLIENT span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbCall {
    /// Timestamp of the first client segment of the request.
    pub start_ns: u64,
    /// Timestamp of the server segment that completed the response.
    pub end_ns: u64,
    /// `db.operation.name`: `SELECT`, `INSERT`, `GET`, `HSET`, `EXECUTE`, ...
    pub operation: Option<String>,
    /// `db.collection.name`: the table or collection, when the query names exactly one.
    pub collection: Option<String>,
    /// `db.query.summary`, also the span name: `SELECT users`, `GET`, `COPY orders`.
    pub summary: String,
    /// `db.query.text`: obfuscated unless `ParseOptions::obfuscate_literals` is off.
    pub query_text: Option<String>,
    /// `db.namespace`: the database (startup message, COM_INIT_DB, `USE`), or the Redis
    /// db index after `SELECT n`, when known.
    pub namespace: Option<String>,
    /// `db.response.status_code`: SQLSTATE, MySQL error number, Redis error prefix.
    pub status_code: Option<String>,
    /// `error.type` when the server answered with an error (for example the SQLSTATE
    /// class or Redis error prefix); `None` on success.
    pub error_type: Option<String>,
    /// The server's error message, for the span status description.
    pub error_message: Option<String>,
    /// Further attributes, semconv or `sonde.*` (for example `db.response.returned_rows`,
    /// `sonde.db.statement_name` for statements prepared before the agent attached).
    pub extra: Vec<(&'static str, String)>,
}

/// One connection's parser, reporting finished calls.
pub trait DbParser: Send {
    /// Feeds one segment; finished exchanges are appended to `out`.
    fn push(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<DbCall>);
    /// The connection closed: flush what can be reported (never a guess).
    fn finish(&mut self, out: &mut Vec<DbCall>);
    fn stats(&self) -> ParserStats;
    /// See [`Parser::tls_started`].
    fn tls_started(&mut self) {}
}

/// A database parser as a [`Parser`]: each finished call is one [`Message::Call`], and
/// what it counted is reported as it grows.
pub struct CallParser<P> {
    inner: P,
    /// Reused between segments.
    calls: Vec<DbCall>,
    /// What was reported of the inner parser's counts.
    reported: ParserStats,
}

impl<P: DbParser + 'static> CallParser<P> {
    pub fn boxed(inner: P) -> Box<dyn Parser> {
        Box::new(Self {
            inner,
            calls: Vec::new(),
            reported: ParserStats::default(),
        })
    }

    fn report(&mut self, out: &mut dyn Report) {
        for call in self.calls.drain(..) {
            out.message(Message::Call(CallOf::Db(Box::new(call))));
        }
        let now = self.inner.stats();
        if now != self.reported {
            out.message(Message::Counted(now.since(&self.reported)));
            self.reported = now;
        }
    }
}

impl<P: DbParser + 'static> Parser for CallParser<P> {
    fn push(&mut self, from: Side, seg: &Segment<'_>, out: &mut dyn Report) {
        self.inner.push(from, seg, &mut self.calls);
        self.report(out);
    }

    /// Database protocols end their messages by framing, never by a half-close.
    fn end_of_stream(&mut self, _from: Side, _out: &mut dyn Report) {}

    fn finish(&mut self, out: &mut dyn Report) {
        self.inner.finish(&mut self.calls);
        self.report(out);
    }

    fn stats(&self) -> ParserStats {
        self.inner.stats()
    }

    fn tls_started(&mut self) {
        self.inner.tls_started();
    }
}

mod framing;
pub mod memcached;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;
#[cfg(test)]
mod testutil;
