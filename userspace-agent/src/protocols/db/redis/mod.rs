//! Redis (and Valkey, KeyDB...) wire protocol: RESP2, RESP3 and inline commands.
//!
//! One [`DbCall`] per command, ended by its reply. Replies come back in command order, so
//! pipelines (many commands in one write) pair by a FIFO of pending commands.
//!
//! Semantics chosen here:
//! - `db.operation.name` and the span name are the command, upper-case (`GET`); commands
//!   with subcommands take two words (`CLIENT SETNAME`, `CONFIG GET`).
//! - `db.query.text` is the command with every argument, keys included, replaced by `?`
//!   (`SET ? ?`): keys often carry user data. With obfuscation off the arguments are
//!   shown, except credentials: `AUTH` arguments, what follows `AUTH`/`AUTH2` in `HELLO`
//!   and `MIGRATE`, and the arguments of `ACL` and `CONFIG SET` are always `?`.
//! - `db.namespace` is the db index once a `SELECT n` succeeded (`RESET` makes it `0`);
//!   unknown before, since a connection may have selected a db before the agent came.
//! - Errors: `db.response.status_code` and `error.type` are the error prefix (`ERR`,
//!   `WRONGTYPE`, `NOAUTH`); the message is kept, without the arguments Redis echoes in
//!   "unknown command" errors when obfuscating.
//! - `MULTI`/`EXEC`: one span per command. A queued command's span ends at its `QUEUED`
//!   reply and carries `sonde.db.redis.queued=true`; its result is inside `EXEC`'s reply,
//!   which is `EXEC`'s span (an aborted transaction is an `EXECABORT` error there).
//! - Pub/sub: `(P|S)SUBSCRIBE a b` ends at its last confirmation. Published messages
//!   (RESP2 arrays once subscribed, RESP3 `>` pushes) and other pushes are not replies
//!   and are skipped, never paired.
//! - `CLIENT REPLY OFF|SKIP`: commands that get no reply are reported with a zero
//!   duration, in order. After `MONITOR` the connection only carries the server's feed:
//!   it is no longer parsed (counted in `unparsed_bytes`).
//!
//! Loss: bulk strings are length-prefixed, so a gap inside one is counted through. A
//! gap anywhere else (or bytes that are not RESP) loses sync: the pending commands are
//! dropped (`dropped_calls`), skipped bytes counted (`desync_bytes`), and parsing
//! resumes at the next client segment that starts with a command.
//!
//! Detection ([`sniff`]) works mid-stream: any command boundary on the client side will
//! do, so the agent can pick up pooled connections opened before it attached.
//!
//! Layout: `detect` recognises Redis bytes; `command` names a command and finds its
//! effect; `text` renders `db.query.text` and error messages, redacted; `client` and
//! `server` read the two sides over `resp` (RESP framing); `pairing` matches replies to
//! pending commands and builds the calls; `pubsub` follows subscription confirmations.

mod client;
mod command;
mod detect;
mod pairing;
mod pubsub;
mod resp;
mod server;
mod text;

use std::collections::VecDeque;

use super::{DbCall, DbParser, ParseOptions, ParserStats, Side};
use crate::protocols::Segment;
use client::ClientState;
use command::{Partial, Pending, ReplyMode};
use resp::Reader;
use server::Reply;

pub use detect::sniff;

/// One connection's Redis parser.
#[derive(Debug)]
pub struct RedisParser {
    client: Reader,
    server: Reader,
    conn: Conn,
}

/// Everything but the two readers, so a reader can borrow it as its visitor.
#[derive(Debug)]
struct Conn {
    opts: ParseOptions,
    stats: ParserStats,
    client_state: ClientState,
    /// Inline command line being read.
    inline: Vec<u8>,
    inline_len: usize,
    partial: Option<Partial>,
    pending: VecDeque<Pending>,
    reply_mode: ReplyMode,
    /// Server framing unknown: its bytes are skipped until the client's next command.
    server_lost: bool,
    /// The server side resyncs: its reader must start afresh.
    server_resynced: bool,
    reply: Reply,
    /// Timestamp of the segment being read.
    ts_ns: u64,
    namespace: Option<String>,
    resp3: bool,
    /// RESP2 subscribed mode: arrays may be published messages.
    subscribed: bool,
    /// After MONITOR: nothing more is parsed.
    monitoring: bool,
    /// Set by a reader callback that found the stream inconsistent (e.g. a reply with
    /// nothing pending); acted on after the feed.
    lost_here: bool,
}

impl RedisParser {
    pub fn new(opts: ParseOptions) -> Self {
        Self {
            client: Reader::default(),
            server: Reader::default(),
            conn: Conn {
                opts,
                stats: ParserStats::default(),
                // A parser is created at a command boundary (where sniff said yes).
                client_state: ClientState::Resp,
                inline: Vec::new(),
                inline_len: 0,
                partial: None,
                pending: VecDeque::new(),
                reply_mode: ReplyMode::On,
                server_lost: false,
                server_resynced: false,
                reply: Reply::default(),
                ts_ns: 0,
                namespace: None,
                resp3: false,
                subscribed: false,
                monitoring: false,
                lost_here: false,
            },
        }
    }
}

impl DbParser for RedisParser {
    fn push(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        if self.conn.monitoring {
            self.conn.stats.unparsed_bytes += seg.len.max(seg.head.len() as u64);
            return;
        }
        self.conn.ts_ns = seg.ts_ns;
        match side {
            Side::Client => self.push_client(seg, out),
            Side::Server => self.push_server(seg, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<DbCall>) {
        let conn = &mut self.conn;
        conn.end_open_unsubscribe(out);
        conn.emit_unanswered(out);
        conn.stats.dropped_calls += conn.pending.len() as u64;
        conn.pending.clear();
        conn.partial = None;
    }

    fn stats(&self) -> ParserStats {
        self.conn.stats
    }
}

#[cfg(test)]
mod tests;
