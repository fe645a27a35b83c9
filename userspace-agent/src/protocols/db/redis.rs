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

mod resp;

use std::collections::VecDeque;

use super::{DbCall, DbParser, ParseOptions, ParserStats, Side, sql};
use crate::protocols::Segment;
use resp::{Reader, Visit};

/// Most commands awaiting a reply; beyond that pairing is abandoned (as a loss of sync).
const MAX_PENDING: usize = 1024;
/// Most arguments of one command kept for its text; the rest are only counted.
const MAX_KEPT_ARGS: usize = 64;
/// Longest command name accepted as such.
const MAX_NAME: usize = 64;
/// Bytes of a segment start examined to resync (a command array header or inline line).
const MAX_PROBE: usize = 64;
/// Longest error message kept.
const MAX_ERROR: usize = 256;
/// Longest first element of a push kept (`message`, `subscribe`, ...).
const MAX_PUSH_KIND: usize = 16;

/// Commands whose first argument is a subcommand, part of the operation name.
const CONTAINERS: [&str; 16] = [
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO", "DEBUG",
];

/// Commands trusted by [`sniff`] when sent inline (upper-case only: lower-case lines are
/// memcached's, and `GET / HTTP/1.1` is refused separately).
const INLINE_COMMANDS: [&[u8]; 24] = [
    b"PING", b"ECHO", b"GET", b"SET", b"DEL", b"EXISTS", b"INCR", b"DECR", b"KEYS", b"TTL",
    b"EXPIRE", b"HGET", b"HSET", b"HGETALL", b"LPUSH", b"RPUSH", b"LRANGE", b"SADD", b"MGET",
    b"SELECT", b"INFO", b"AUTH", b"HELLO", b"QUIT",
];

/// True when these first bytes a connection carried on `side` look like Redis.
///
/// Client: a RESP array of bulk strings (`*<n>\r\n$`), or a whole upper-case inline
/// command line from a short list. Server: one RESP value header whose line is well
/// formed (weaker: prefer client bytes). Works at any command boundary, not only at a
/// connection's start.
pub fn sniff(side: Side, bytes: &[u8]) -> bool {
    match side {
        Side::Client => starts_command(bytes),
        Side::Server => starts_reply(bytes),
    }
}

/// `*<count>\r\n$` or a known inline command line.
fn starts_command(bytes: &[u8]) -> bool {
    if let Some(rest) = bytes.strip_prefix(b"*") {
        let Some(end) = rest.iter().position(|&b| b == b'\r').filter(|&e| e <= 7) else {
            return false;
        };
        let count = rest.get(..end).and_then(resp::parse_decimal);
        return count.is_some_and(|n| n > 0) && rest.get(end..end + 3) == Some(b"\r\n$");
    }
    let Some(line_end) = memchr::memmem::find(bytes, b"\r\n") else {
        return false;
    };
    let line = bytes.get(..line_end).unwrap_or_default();
    let word_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let word = line.get(..word_end).unwrap_or_default();
    INLINE_COMMANDS.contains(&word)
        && memchr::memmem::find(line, b" HTTP/").is_none()
        && line.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
}

/// One RESP value header with a well-formed line.
fn starts_reply(bytes: &[u8]) -> bool {
    let Some((&kind, rest)) = bytes.split_first() else {
        return false;
    };
    let Some(end) = memchr::memmem::find(rest, b"\r\n") else {
        return false;
    };
    let line = rest.get(..end).unwrap_or_default();
    let digits = |l: &[u8]| l == b"-1" || resp::parse_decimal(l).is_some();
    match kind {
        b'+' => !line.is_empty() && line.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
        b'-' => {
            let word = line.split(|&b| b == b' ').next().unwrap_or_default();
            !word.is_empty() && word.iter().all(|b| b.is_ascii_uppercase())
        }
        b':' => resp::integer(line).is_some(),
        b'$' | b'*' | b'%' | b'~' | b'>' => digits(line),
        b'_' => line.is_empty(),
        b'#' => line == b"t" || line == b"f",
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// One argument as captured.
#[derive(Debug, Default)]
struct Arg {
    bytes: Vec<u8>,
    /// Some of its bytes were not kept (capture budget or a gap).
    cut: bool,
}

/// A command whose bytes are still arriving.
#[derive(Debug)]
struct Partial {
    start_ns: u64,
    args: Vec<Arg>,
    /// Arguments announced by the array header.
    argc: u64,
    /// Arguments started so far (kept or not).
    seen: u64,
    /// Bytes of argument payload still allowed in `args`.
    budget: usize,
    /// An element that is not a bulk string: not a client command.
    malformed: bool,
}

/// What a command's reply means for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    None,
    /// `SELECT n`: the namespace once it succeeds.
    Select(String),
    /// `HELLO <protover>`.
    Hello(Option<u8>),
    /// `(P|S)(UN)SUBSCRIBE`: confirmed by pushes, one per channel named; `None` for an
    /// unsubscribe from all, whose count is unknown.
    Subscribe {
        confirmations: Option<u64>,
        /// Timestamp of the last confirmation seen so far.
        confirmed_at: Option<u64>,
    },
    Monitor,
    Reset,
}

/// A complete command, waiting for its reply.
#[derive(Debug)]
struct Pending {
    start_ns: u64,
    operation: String,
    text: Option<String>,
    effect: Effect,
    /// `CLIENT REPLY OFF/SKIP` in force: the server will not answer.
    no_reply: bool,
}

/// The client's `CLIENT REPLY` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ReplyMode {
    #[default]
    On,
    Off,
    SkipNext,
}

/// How the client side is being read.
#[derive(Debug)]
enum ClientState {
    /// Framing unknown: waiting for a segment that starts with a command. Holds the
    /// first bytes of the segment being tried (`None` until a segment starts).
    Lost(Option<Vec<u8>>),
    /// Reading RESP arrays (or idle between commands).
    Resp,
    /// Reading an inline command line.
    Inline,
}

// ---------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------

/// What is kept of the reply being read.
#[derive(Debug, Default)]
struct Reply {
    kind: u8,
    /// Simple string or error text (cut at `MAX_ERROR`).
    line: Vec<u8>,
    /// First element of an array or push, if a string (cut at `MAX_PUSH_KIND`).
    first: Vec<u8>,
    elements: u64,
    /// Last integer element (the subscription count of a pub/sub confirmation).
    last_int: Option<i64>,
}

impl Reply {
    fn is_error(&self) -> bool {
        matches!(self.kind, b'-' | b'!')
    }
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

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

    fn push_client(&mut self, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        let (head, gap, tail) = seg.parts();
        if let ClientState::Lost(probe) = &mut self.conn.client_state
            && probe.is_none()
        {
            // Resync is tried only where a segment starts.
            *probe = Some(Vec::new());
        }
        for (i, bytes) in [head, tail].into_iter().enumerate() {
            if i == 1 && gap > 0 && !self.client_gap(gap, out) {
                self.conn.stats.desync_bytes += tail.len() as u64;
                return;
            }
            self.client_bytes(bytes, out);
        }
    }

    /// Reads client bytes; lost bytes are counted.
    fn client_bytes(&mut self, mut bytes: &[u8], out: &mut Vec<DbCall>) {
        while !bytes.is_empty() {
            let conn = &mut self.conn;
            match &mut conn.client_state {
                ClientState::Lost(probe) => {
                    let Some(buf) = probe.as_mut() else {
                        conn.stats.desync_bytes += bytes.len() as u64;
                        return;
                    };
                    let take = (MAX_PROBE - buf.len()).min(bytes.len());
                    buf.extend_from_slice(bytes.get(..take).unwrap_or_default());
                    bytes = bytes.get(take..).unwrap_or_default();
                    match command_start(buf) {
                        None if buf.len() < MAX_PROBE => {}
                        Some(true) => {
                            let found = std::mem::take(buf);
                            conn.client_state = ClientState::Resp;
                            self.client.reset();
                            self.client_bytes(&found, out);
                        }
                        None | Some(false) => {
                            conn.stats.desync_bytes += buf.len() as u64;
                            *probe = None;
                        }
                    }
                }
                ClientState::Inline => {
                    let used = conn.inline_step(bytes, out);
                    bytes = bytes.get(used..).unwrap_or_default();
                }
                ClientState::Resp if self.client.at_boundary() && bytes.first() != Some(&b'*') => {
                    conn.client_state = ClientState::Inline;
                    conn.inline.clear();
                    conn.inline_len = 0;
                    conn.partial = Some(Partial::new(conn.ts_ns, conn.opts));
                }
                ClientState::Resp => {
                    let mut visit = ClientVisit { conn, out };
                    let result = self.client.feed(bytes, &mut visit);
                    let conn = visit.conn;
                    if let Err(e) = result {
                        let lost = bytes.len().saturating_sub(e.consumed);
                        conn.stats.desync_bytes += lost as u64;
                        conn.lose_client();
                        return;
                    }
                    bytes = &[];
                }
            }
            let conn = &mut self.conn;
            if conn.lost_here {
                conn.lost_here = false;
                conn.stats.desync_bytes += bytes.len() as u64;
                conn.lose_client();
                return;
            }
        }
    }

    /// Unseen client bytes; false when they cost the framing.
    fn client_gap(&mut self, gap: u64, out: &mut Vec<DbCall>) -> bool {
        let conn = &mut self.conn;
        match &mut conn.client_state {
            ClientState::Lost(probe) => {
                // A probe must be contiguous.
                *probe = None;
                conn.stats.desync_bytes += gap;
                false
            }
            ClientState::Inline => {
                conn.stats.desync_bytes += gap;
                conn.lose_client();
                false
            }
            ClientState::Resp => {
                let mut visit = ClientVisit { conn, out };
                if self.client.skip(gap, &mut visit).is_ok() {
                    return true;
                }
                conn.stats.desync_bytes += gap;
                conn.lose_client();
                false
            }
        }
    }

    fn push_server(&mut self, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        let (head, gap, tail) = seg.parts();
        if std::mem::take(&mut self.conn.server_resynced) {
            self.server.reset();
        }
        for (i, bytes) in [head, tail].into_iter().enumerate() {
            if i == 1 && gap > 0 {
                let conn = &mut self.conn;
                let ok = !conn.server_lost && {
                    let mut visit = ServerVisit { conn, out };
                    self.server.skip(gap, &mut visit).is_ok()
                };
                if !ok {
                    let conn = &mut self.conn;
                    conn.stats.desync_bytes += gap + tail.len() as u64;
                    conn.lose_server();
                    return;
                }
            }
            if !self.server_bytes(bytes, out) {
                if i == 0 {
                    self.conn.stats.desync_bytes += gap + tail.len() as u64;
                }
                return;
            }
        }
    }

    /// Reads server bytes; false once sync is lost (the lost bytes are counted).
    fn server_bytes(&mut self, bytes: &[u8], out: &mut Vec<DbCall>) -> bool {
        let conn = &mut self.conn;
        if conn.server_lost {
            conn.stats.desync_bytes += bytes.len() as u64;
            return false;
        }
        let mut visit = ServerVisit { conn, out };
        let result = self.server.feed(bytes, &mut visit);
        let conn = visit.conn;
        let lost = match result {
            Ok(()) => None,
            Err(e) => Some(e.consumed),
        };
        // A callback may have found a reply nothing asked for, or MONITOR began.
        if conn.monitoring {
            return false;
        }
        if let Some(consumed) = lost {
            conn.stats.desync_bytes += bytes.len().saturating_sub(consumed) as u64;
            conn.lose_server();
            return false;
        }
        if conn.lost_here {
            // A reply nothing asked for: count the piece it came in.
            conn.lost_here = false;
            conn.stats.desync_bytes += bytes.len() as u64;
            conn.lose_server();
            return false;
        }
        true
    }
}

/// Whether `bytes` (the start of a client segment) start a command, on a connection
/// known to be Redis: a RESP command array or any printable inline line. `None`: too
/// few bytes to tell.
fn command_start(bytes: &[u8]) -> Option<bool> {
    if bytes.first() == Some(&b'*') {
        if starts_command(bytes) {
            return Some(true);
        }
        let rest = bytes.get(1..).unwrap_or_default();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = rest.get(digits..).unwrap_or_default();
        let could_be = digits <= 7 && b"\r\n$".starts_with(after);
        return if could_be { None } else { Some(false) };
    }
    if !bytes.first()?.is_ascii_alphabetic() {
        return Some(false);
    }
    match memchr::memmem::find(bytes, b"\r\n") {
        Some(end) => Some(
            bytes
                .get(..end)
                .is_some_and(|l| l.iter().all(|&b| b == b' ' || b.is_ascii_graphic())),
        ),
        None => {
            let printable = bytes
                .iter()
                .all(|&b| b == b' ' || b == b'\r' || b.is_ascii_graphic());
            if printable { None } else { Some(false) }
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

impl Conn {
    /// Client framing lost: nothing pending can be paired any more.
    fn lose_client(&mut self) {
        self.client_state = ClientState::Lost(None);
        self.partial = None;
        self.lose_server();
    }

    /// Server framing lost (or pairing broken): drop what waits for a reply.
    fn lose_server(&mut self) {
        self.server_lost = true;
        self.reply = Reply::default();
        self.stats.dropped_calls += self.pending.len() as u64;
        self.pending.clear();
    }

    /// Reads part of an inline command line; returns the bytes used.
    fn inline_step(&mut self, bytes: &[u8], out: &mut Vec<DbCall>) -> usize {
        let (used, ended) = match memchr::memchr(b'\n', bytes) {
            Some(i) => (i + 1, true),
            None => (bytes.len(), false),
        };
        let piece = bytes.get(..used).unwrap_or_default();
        let room = resp::LINE_KEEP
            .max(self.opts.max_query_text.saturating_add(2))
            .saturating_sub(self.inline.len());
        self.inline.extend(piece.iter().take(room));
        self.inline_len += used;
        if self.inline_len > resp::MAX_LINE {
            self.stats.desync_bytes += self.inline_len as u64;
            self.lost_here = true;
            return used;
        }
        if ended {
            self.client_state = ClientState::Resp;
            let line = std::mem::take(&mut self.inline);
            let cut = self.inline_len > line.len();
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            let mut partial = self
                .partial
                .take()
                .unwrap_or_else(|| Partial::new(self.ts_ns, self.opts));
            let words: Vec<&[u8]> = body
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .collect();
            partial.argc = words.len() as u64;
            for word in words.into_iter().take(MAX_KEPT_ARGS) {
                partial.args.push(Arg {
                    bytes: word.to_vec(),
                    cut: false,
                });
            }
            if let Some(last) = partial.args.last_mut() {
                last.cut |= cut;
            }
            // An empty line is not a command (Redis ignores it).
            if partial.argc > 0 {
                self.command_done(partial, out);
            }
            self.inline = line;
            self.inline.clear();
        }
        used
    }

    /// A command is complete: queue it for its reply.
    fn command_done(&mut self, partial: Partial, out: &mut Vec<DbCall>) {
        if partial.malformed {
            self.lost_here = true;
            return;
        }
        let Some(pending) = partial.into_pending(self.opts, &mut self.reply_mode) else {
            self.lost_here = true;
            return;
        };
        if self.server_lost {
            // The replies to come start with this command's.
            self.server_lost = false;
            self.server_resynced = true;
            self.reply = Reply::default();
        }
        if self.pending.len() >= MAX_PENDING {
            self.stats.dropped_calls += 1;
            self.lost_here = true;
            return;
        }
        self.pending.push_back(pending);
        self.emit_unanswered(out);
    }

    /// Reports the commands at the front that get no reply.
    fn emit_unanswered(&mut self, out: &mut Vec<DbCall>) {
        while self.pending.front().is_some_and(|p| p.no_reply) {
            if let Some(p) = self.pending.pop_front() {
                let end = p.start_ns;
                out.push(self.call(p, end, None));
            }
        }
    }

    /// An unsubscribe-from-all has no known count of confirmations: it ends at the last
    /// one seen, once something else arrives.
    fn end_open_unsubscribe(&mut self, out: &mut Vec<DbCall>) {
        let open = self.pending.front().and_then(|p| match p.effect {
            Effect::Subscribe {
                confirmations: None,
                confirmed_at: Some(at),
            } => Some(at),
            _ => None,
        });
        if let Some(at) = open
            && let Some(p) = self.pending.pop_front()
        {
            out.push(self.call(p, at, None));
        }
    }

    /// A whole reply has been read.
    fn reply_done(&mut self, out: &mut Vec<DbCall>) {
        if self.monitoring {
            return;
        }
        let reply = std::mem::take(&mut self.reply);
        // RESP3 pushes are never replies. In RESP2 pub/sub arrives as arrays: a
        // confirmation when a (un)subscribe waits, messages once subscribed.
        let push = reply.kind == b'>';
        let subscribing = self
            .pending
            .front()
            .is_some_and(|p| matches!(p.effect, Effect::Subscribe { .. }));
        if push || (reply.kind == b'*' && !self.resp3 && (self.subscribed || subscribing)) {
            let kind = reply.first.to_ascii_lowercase();
            match kind.as_slice() {
                b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
                | b"sunsubscribe" => {
                    self.confirmation(&kind, &reply, out);
                    return;
                }
                b"message" | b"pmessage" | b"smessage" if self.subscribed || push => return,
                // Invalidations and other pushes.
                _ if push => return,
                _ => {}
            }
        }
        self.end_open_unsubscribe(out);
        let Some(pending) = self.pending.pop_front() else {
            // A reply nobody asked for: we missed the command, pairing is off.
            self.lost_here = true;
            return;
        };
        if !reply.is_error() {
            self.apply(&pending.effect, &reply);
        }
        let ts = self.ts_ns;
        let mut call = self.call(pending, ts, Some(&reply));
        if reply.kind == b'+' && reply.line == b"QUEUED" {
            call.extra
                .push(("sonde.db.redis.queued", "true".to_owned()));
        }
        out.push(call);
        self.emit_unanswered(out);
    }

    /// A pub/sub confirmation (`subscribe`, `unsubscribe`, ... push).
    fn confirmation(&mut self, kind: &[u8], reply: &Reply, out: &mut Vec<DbCall>) {
        let count = reply.last_int.unwrap_or(0);
        if !self.resp3 {
            self.subscribed = count > 0;
        }
        let ts = self.ts_ns;
        let Some(front) = self.pending.front_mut() else {
            return;
        };
        let matches = front.operation.as_bytes().eq_ignore_ascii_case(kind);
        let Effect::Subscribe {
            confirmations,
            confirmed_at,
        } = &mut front.effect
        else {
            return;
        };
        if !matches {
            // Another (un)subscribe's confirmation: an open unsubscribe-from-all is over.
            self.end_open_unsubscribe(out);
            return self.confirmation_for_next(kind, reply, out);
        }
        *confirmed_at = Some(ts);
        let finished = match confirmations {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => count == 0,
        };
        if finished && let Some(p) = self.pending.pop_front() {
            out.push(self.call(p, ts, None));
            self.emit_unanswered(out);
        }
    }

    /// After an open unsubscribe-from-all ended, the confirmation is for the next one.
    fn confirmation_for_next(&mut self, kind: &[u8], reply: &Reply, out: &mut Vec<DbCall>) {
        let next_matches = self.pending.front().is_some_and(|p| {
            p.operation.as_bytes().eq_ignore_ascii_case(kind)
                && !matches!(
                    p.effect,
                    Effect::Subscribe {
                        confirmed_at: Some(_),
                        confirmations: None
                    }
                )
        });
        if next_matches {
            self.confirmation(kind, reply, out);
        }
    }

    /// A successful reply changes connection state.
    fn apply(&mut self, effect: &Effect, reply: &Reply) {
        match effect {
            Effect::Select(db) => self.namespace = Some(db.clone()),
            Effect::Hello(Some(version)) => self.resp3 = *version == 3 && reply.kind == b'%',
            Effect::Monitor => self.monitoring = true,
            Effect::Reset => {
                self.namespace = Some("0".to_owned());
                self.resp3 = false;
                self.subscribed = false;
            }
            Effect::Hello(None) | Effect::Subscribe { .. } | Effect::None => {}
        }
    }

    fn call(&self, p: Pending, end_ns: u64, reply: Option<&Reply>) -> DbCall {
        let mut call = DbCall {
            start_ns: p.start_ns,
            end_ns: end_ns.max(p.start_ns),
            summary: p.operation.clone(),
            operation: Some(p.operation),
            query_text: p.text,
            namespace: self.namespace.clone(),
            ..DbCall::default()
        };
        if let Some(reply) = reply.filter(|r| r.is_error()) {
            let (prefix, message) = error_parts(&reply.line, self.opts.obfuscate_literals);
            call.status_code = Some(prefix.clone());
            call.error_type = Some(prefix);
            call.error_message = Some(message);
        }
        call
    }
}

/// `WRONGTYPE Operation against...` -> (`WRONGTYPE`, message). Redis' convention is an
/// upper-case first word; anything else is a generic `ERR`.
fn error_parts(line: &[u8], obfuscate: bool) -> (String, String) {
    let text = String::from_utf8_lossy(line);
    let word = text.split(' ').next().unwrap_or_default();
    let prefix = if !word.is_empty()
        && word.len() <= 32
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        word.to_owned()
    } else {
        "ERR".to_owned()
    };
    let mut message = text.into_owned();
    if obfuscate && let Some(at) = message.find(", with args beginning with:") {
        // Redis echoes the arguments of unknown commands.
        message.truncate(at);
    }
    (prefix, cut(message, MAX_ERROR))
}

/// Cuts `s` to at most `max` bytes on a char boundary.
fn cut(mut s: String, max: usize) -> String {
    s.truncate(sql::cut(&s, max).len());
    s
}

impl Partial {
    fn new(start_ns: u64, opts: ParseOptions) -> Self {
        Self {
            start_ns,
            args: Vec::new(),
            argc: 0,
            seen: 0,
            // Enough for the text, plus the words the parser itself reads.
            budget: opts.max_query_text.saturating_add(2 * MAX_NAME),
            malformed: false,
        }
    }

    /// The command's name, operation, text and effect; `None` if it has no usable name.
    fn into_pending(self, opts: ParseOptions, mode: &mut ReplyMode) -> Option<Pending> {
        let name_arg = self.args.first()?;
        if name_arg.cut
            || name_arg.bytes.is_empty()
            || !name_arg.bytes.iter().all(|&b| b.is_ascii_graphic())
        {
            return None;
        }
        let name = String::from_utf8_lossy(&name_arg.bytes).to_ascii_uppercase();
        let arg_upper = |i: usize| -> Option<String> {
            let a = self.args.get(i).filter(|a| !a.cut)?;
            std::str::from_utf8(&a.bytes)
                .ok()
                .map(str::to_ascii_uppercase)
        };
        let sub = arg_upper(1).filter(|s| {
            CONTAINERS.contains(&name.as_str())
                && !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        let words = if sub.is_some() { 2 } else { 1 };
        let operation = match &sub {
            Some(sub) => format!("{name} {sub}"),
            None => name.clone(),
        };
        let redact_from = match (name.as_str(), sub.as_deref()) {
            ("AUTH", _) => 1,
            ("ACL", _) | ("CONFIG", Some("SET")) => 2,
            ("HELLO" | "MIGRATE", _) => (1..self.args.len())
                .find(|&i| arg_upper(i).is_some_and(|a| a == "AUTH" || a == "AUTH2"))
                .map_or(usize::MAX, |i| i + 1),
            _ => usize::MAX,
        };
        let effect = match (name.as_str(), sub.as_deref()) {
            ("SELECT", _) => arg_upper(1)
                .filter(|db| db.len() <= 10 && resp::parse_decimal(db.as_bytes()).is_some())
                .map_or(Effect::None, Effect::Select),
            ("HELLO", _) => Effect::Hello(arg_upper(1).and_then(|v| v.parse().ok())),
            (
                "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
                | "SUNSUBSCRIBE",
                _,
            ) => Effect::Subscribe {
                confirmations: (self.argc > 1).then(|| self.argc - 1),
                confirmed_at: None,
            },
            ("MONITOR", _) => Effect::Monitor,
            ("RESET", _) => Effect::Reset,
            _ => Effect::None,
        };
        let no_reply = if name == "CLIENT" && sub.as_deref() == Some("REPLY") {
            let setting = arg_upper(2);
            let (new_mode, silent) = match setting.as_deref() {
                Some("OFF") => (ReplyMode::Off, true),
                Some("SKIP") => (ReplyMode::SkipNext, true),
                Some("ON") => (ReplyMode::On, false),
                _ => (*mode, *mode != ReplyMode::On),
            };
            *mode = new_mode;
            silent
        } else {
            match *mode {
                ReplyMode::On => false,
                ReplyMode::Off => true,
                ReplyMode::SkipNext => {
                    *mode = ReplyMode::On;
                    true
                }
            }
        };
        let text = (opts.max_query_text > 0).then(|| self.text(words, redact_from, opts));
        Some(Pending {
            start_ns: self.start_ns,
            operation,
            text,
            effect,
            no_reply,
        })
    }

    /// `db.query.text`: the name words, then each argument or `?`.
    fn text(&self, words: usize, redact_from: usize, opts: ParseOptions) -> String {
        let max = opts.max_query_text;
        let mut text = String::new();
        for i in 0..usize::try_from(self.argc).unwrap_or(usize::MAX) {
            if text.len() > max {
                break;
            }
            if i > 0 {
                text.push(' ');
            }
            let arg = self.args.get(i);
            if i < words {
                let word = arg
                    .map(|a| String::from_utf8_lossy(&a.bytes))
                    .unwrap_or_default();
                text.push_str(&word.to_ascii_uppercase());
            } else if opts.obfuscate_literals || i >= redact_from {
                text.push('?');
            } else {
                match arg {
                    Some(a) => {
                        text.push_str(&String::from_utf8_lossy(&a.bytes));
                        if a.cut {
                            text.push('…');
                        }
                    }
                    None => text.push('…'),
                }
            }
        }
        cut(text, max)
    }
}

// ---------------------------------------------------------------------------------------
// Reader callbacks
// ---------------------------------------------------------------------------------------

/// Builds commands from the client's RESP arrays.
struct ClientVisit<'a> {
    conn: &'a mut Conn,
    out: &'a mut Vec<DbCall>,
}

impl Visit for ClientVisit<'_> {
    fn header(&mut self, depth: usize, kind: u8, line: &[u8]) {
        let conn = &mut *self.conn;
        match depth {
            0 => {
                let mut partial = Partial::new(conn.ts_ns, conn.opts);
                partial.argc = resp::parse_decimal(line).unwrap_or(0);
                partial.malformed = kind != b'*';
                conn.partial = Some(partial);
            }
            1 => {
                if let Some(p) = conn.partial.as_mut() {
                    p.malformed |= kind != b'$';
                    p.seen += 1;
                    if p.args.len() < MAX_KEPT_ARGS {
                        p.args.push(Arg::default());
                    }
                }
            }
            _ => {
                if let Some(p) = conn.partial.as_mut() {
                    p.malformed = true;
                }
            }
        }
    }

    fn bulk(&mut self, depth: usize, bytes: &[u8]) {
        let Some(p) = self.conn.partial.as_mut().filter(|_| depth == 1) else {
            return;
        };
        let kept = p.args.len();
        if p.seen > kept as u64 {
            // Past MAX_KEPT_ARGS: only counted.
            return;
        }
        let Some(arg) = p.args.last_mut() else {
            return;
        };
        // The name and subcommand get their own room; other arguments share the budget.
        let room = if kept <= 2 {
            MAX_NAME.saturating_sub(arg.bytes.len())
        } else {
            p.budget
        };
        let take = room.min(bytes.len());
        arg.bytes
            .extend_from_slice(bytes.get(..take).unwrap_or_default());
        arg.cut |= take < bytes.len();
        if kept > 2 {
            p.budget -= take;
        }
    }

    fn bulk_unseen(&mut self, depth: usize, _count: u64) {
        if let Some(arg) = self
            .conn
            .partial
            .as_mut()
            .filter(|_| depth == 1)
            .and_then(|p| p.args.last_mut())
        {
            arg.cut = true;
        }
    }

    fn done(&mut self) {
        if let Some(partial) = self.conn.partial.take() {
            self.conn.command_done(partial, self.out);
        }
    }
}

/// Reads replies and pairs them with pending commands.
struct ServerVisit<'a> {
    conn: &'a mut Conn,
    out: &'a mut Vec<DbCall>,
}

impl Visit for ServerVisit<'_> {
    fn header(&mut self, depth: usize, kind: u8, line: &[u8]) {
        let reply = &mut self.conn.reply;
        match depth {
            0 => {
                // A top-level attribute is followed by the reply proper: start over.
                *reply = Reply {
                    kind,
                    ..Reply::default()
                };
                if matches!(kind, b'+' | b'-') {
                    reply.line.extend(line.iter().take(MAX_ERROR));
                }
            }
            1 => {
                reply.elements += 1;
                if reply.elements == 1 && matches!(kind, b'+') {
                    reply.first.extend(line.iter().take(MAX_PUSH_KIND));
                }
                if kind == b':' {
                    reply.last_int = resp::integer(line);
                }
            }
            _ => {}
        }
    }

    fn bulk(&mut self, depth: usize, bytes: &[u8]) {
        let reply = &mut self.conn.reply;
        let (buf, max) = match depth {
            0 if reply.kind == b'!' => (&mut reply.line, MAX_ERROR),
            1 if reply.elements == 1 => (&mut reply.first, MAX_PUSH_KIND),
            _ => return,
        };
        let room = max.saturating_sub(buf.len());
        buf.extend(bytes.iter().take(room));
    }

    fn bulk_unseen(&mut self, _depth: usize, _count: u64) {}

    fn done(&mut self) {
        self.conn.reply_done(self.out);
    }
}

#[cfg(test)]
mod tests;
