//! memcached text protocol (classic and meta commands).
//!
//! One [`DbCall`] per command, ended by its response; responses come back in command
//! order, so pipelined commands pair by a FIFO.
//!
//! Semantics chosen here:
//! - `db.operation.name` and the span name are the command as the protocol spells it
//!   (`get`, `set`, `incr`, `mg`).
//! - `db.query.text` is the command line with every argument, keys included, replaced by
//!   `?` (`set ? ? ? ?`): keys often carry user data. `noreply` stays. With obfuscation
//!   off the command line is shown as sent. Data blocks (values) are never shown.
//! - Retrievals (`get`, `gets`, `gat`, `gats`) report the items returned in
//!   `db.response.returned_rows`; other answers (`STORED`, `NOT_FOUND`, `EXISTS`, `HD`,
//!   `EN`...) in `sonde.db.memcached.result`.
//! - `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR` make an error call: the word is
//!   `db.response.status_code` and `error.type`, the rest the message.
//! - `noreply` commands get no response: they are reported with a zero duration, in
//!   order. Meta commands in quiet mode (`q` flag) answer only sometimes: not supported,
//!   a pipeline of them can mis-pair until the next loss of sync.
//! - The binary protocol (first byte 0x80) is not parsed: [`sniff`] says no.
//!
//! Loss: data blocks are length-framed (`<bytes>` in the command or `VALUE` line), so a
//! gap inside one is counted through. A gap elsewhere loses sync: the pending commands
//! are dropped (`dropped_calls`), skipped bytes counted (`desync_bytes`), and parsing
//! resumes at the next client segment starting with a command line.
//!
//! Detection ([`sniff`]) works mid-stream at any command boundary.

use std::collections::VecDeque;

use super::framing::LineBuf;
use super::sql;
use super::{DbCall, DbParser, ParseOptions, ParserStats, Side};
use crate::protocols::Segment;

/// Most commands awaiting a response; beyond that pairing is abandoned.
const MAX_PENDING: usize = 1024;
/// Longest line accepted (multi-key gets can be long); longer loses sync.
const MAX_LINE: usize = 64 * 1024;
/// Bytes of a line kept (the rest is counted).
const LINE_KEEP: usize = 4096;
/// Operation name of a command memcached does not know.
const UNKNOWN: &str = "unknown";
/// Longest error message kept.
const MAX_ERROR: usize = 256;

/// Commands, with what their response looks like.
const COMMANDS: [(&str, Reply); 23] = [
    ("get", Reply::Values),
    ("gets", Reply::Values),
    ("gat", Reply::Values),
    ("gats", Reply::Values),
    ("set", Reply::Line),
    ("add", Reply::Line),
    ("replace", Reply::Line),
    ("append", Reply::Line),
    ("prepend", Reply::Line),
    ("cas", Reply::Line),
    ("delete", Reply::Line),
    ("incr", Reply::Line),
    ("decr", Reply::Line),
    ("touch", Reply::Line),
    ("flush_all", Reply::Line),
    ("version", Reply::Line),
    ("verbosity", Reply::Line),
    ("stats", Reply::Stats),
    ("mg", Reply::Meta),
    ("ms", Reply::Meta),
    ("md", Reply::Meta),
    ("ma", Reply::Meta),
    ("mn", Reply::Meta),
];

/// First words of server lines [`sniff`] trusts.
const RESPONSES: [&[u8]; 14] = [
    b"VALUE ",
    b"END\r\n",
    b"STORED\r\n",
    b"NOT_STORED\r\n",
    b"EXISTS\r\n",
    b"NOT_FOUND\r\n",
    b"DELETED\r\n",
    b"TOUCHED\r\n",
    b"VERSION ",
    b"STAT ",
    b"ERROR\r\n",
    b"CLIENT_ERROR ",
    b"SERVER_ERROR ",
    b"OK\r\n",
];

/// True when these first bytes a connection carried on `side` look like memcached's text
/// protocol: a whole client command line with a known (lower-case) command, or a server
/// line starting with a known response word. The binary protocol is refused.
pub fn sniff(side: Side, bytes: &[u8]) -> bool {
    match side {
        Side::Client => command_line(bytes).is_some(),
        Side::Server => RESPONSES.iter().any(|r| bytes.starts_with(r)),
    }
}

/// The known command a complete first line starts with.
fn command_line(bytes: &[u8]) -> Option<(&'static str, Reply)> {
    let end = memchr::memmem::find(bytes.get(..LINE_KEEP.min(bytes.len()))?, b"\r\n")?;
    let line = bytes.get(..end)?;
    if !line.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        return None;
    }
    let word = line.split(|&b| b == b' ').next()?;
    let known = COMMANDS.iter().find(|(name, _)| name.as_bytes() == word)?;
    // Commands with arguments need them (`get` alone is not a request).
    let bare_ok = matches!(known.0, "version" | "stats" | "flush_all" | "mn");
    (bare_ok || line.len() > word.len()).then_some(*known)
}

/// What a command's response looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// One line.
    Line,
    /// `VALUE` lines each with a data block, then `END`.
    Values,
    /// `STAT`/`ITEM` lines then `END` (or one line, e.g. `RESET`).
    Stats,
    /// One line; `VA <n> ...` brings a data block.
    Meta,
}

/// A command waiting for its response.
#[derive(Debug)]
struct Pending {
    start_ns: u64,
    operation: &'static str,
    text: Option<String>,
    reply: Reply,
    no_reply: bool,
    /// Items returned so far (`VALUE` lines).
    items: u64,
}

/// How one direction is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Reading a line.
    Line,
    /// Inside a data block: `left` bytes to go, CRLF included.
    Data { left: u64 },
    /// Sync lost: waiting (client) for a segment starting with a command, (server) for
    /// the client's next command.
    Lost,
}

/// One direction's line reader.
#[derive(Debug)]
struct Direction {
    framing: Framing,
    line: LineBuf,
}

impl Default for Direction {
    fn default() -> Self {
        Self {
            framing: Framing::Line,
            line: LineBuf::default(),
        }
    }
}

/// A piece of input as [`Direction::next`] found it.
enum Item {
    /// A complete line (CRLF stripped; cut at `LINE_KEEP`).
    Line(Vec<u8>),
    /// A data block ended.
    DataEnd,
}

impl Direction {
    fn lose(&mut self) {
        self.framing = Framing::Lost;
        self.line.clear();
    }

    /// Consumes a prefix of `bytes`: how much, and what it completed. `Err` = lost sync.
    fn next(&mut self, bytes: &[u8]) -> Result<(usize, Option<Item>), ()> {
        match self.framing {
            Framing::Lost => Err(()),
            Framing::Data { left } => {
                let n = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
                // The block ends in CRLF: check those bytes when they are in view.
                for (k, expected) in [(2u64, b'\r'), (1, b'\n')] {
                    if let Some(i) = left.checked_sub(k).filter(|&i| i < n as u64)
                        && bytes.get(i as usize) != Some(&expected)
                    {
                        return Err(());
                    }
                }
                let left = left - n as u64;
                if left == 0 {
                    self.framing = Framing::Line;
                    return Ok((n, Some(Item::DataEnd)));
                }
                self.framing = Framing::Data { left };
                Ok((n, None))
            }
            Framing::Line => {
                let (used, ended) = self.line.feed(bytes, LINE_KEEP, MAX_LINE)?;
                if !ended {
                    return Ok((used, None));
                }
                let whole = self.line.is_whole();
                let mut line = std::mem::take(self.line.kept_mut());
                self.line.clear();
                if whole {
                    // Whole line in view: it must end in CRLF.
                    if !line.ends_with(b"\r\n") {
                        return Err(());
                    }
                    line.truncate(line.len() - 2);
                }
                Ok((used, Some(Item::Line(line))))
            }
        }
    }

    /// `count` bytes unseen: fine inside a data block.
    fn skip(&mut self, count: u64) -> Result<Option<Item>, ()> {
        match self.framing {
            Framing::Data { left } if count <= left => {
                if count == left {
                    self.framing = Framing::Line;
                    return Ok(Some(Item::DataEnd));
                }
                self.framing = Framing::Data { left: left - count };
                Ok(None)
            }
            _ => Err(()),
        }
    }
}

/// One connection's memcached parser.
#[derive(Debug)]
pub struct MemcachedParser {
    opts: ParseOptions,
    stats: ParserStats,
    client: Direction,
    server: Direction,
    pending: VecDeque<Pending>,
    /// The data block being read on the server side ends the front call (meta `VA`).
    data_ends_call: bool,
}

impl MemcachedParser {
    pub fn new(opts: ParseOptions) -> Self {
        Self {
            opts,
            stats: ParserStats::default(),
            client: Direction::default(),
            server: Direction::default(),
            pending: VecDeque::new(),
            data_ends_call: false,
        }
    }

    /// Sync lost on either side: nothing pending can be paired.
    fn lose(&mut self, side: Side) {
        match side {
            Side::Client => self.client.lose(),
            Side::Server => {}
        }
        self.server.lose();
        self.data_ends_call = false;
        self.stats.dropped_calls += self.pending.len() as u64;
        self.pending.clear();
    }

    fn feed(&mut self, side: Side, mut bytes: &[u8], ts: u64, out: &mut Vec<DbCall>) -> bool {
        while !bytes.is_empty() {
            let dir = match side {
                Side::Client => &mut self.client,
                Side::Server => &mut self.server,
            };
            let Ok((used, item)) = dir.next(bytes) else {
                self.stats.desync_bytes += bytes.len() as u64;
                self.lose(side);
                return false;
            };
            bytes = bytes.get(used..).unwrap_or_default();
            if let Some(item) = item
                && !self.item(side, item, ts, out)
            {
                self.stats.desync_bytes += bytes.len() as u64;
                self.lose(side);
                return false;
            }
        }
        true
    }

    /// Acts on a complete line or data block; false when it makes no sense here.
    fn item(&mut self, side: Side, item: Item, ts: u64, out: &mut Vec<DbCall>) -> bool {
        match (side, item) {
            (Side::Client, Item::Line(line)) => self.command(&line, ts, out),
            (Side::Client, Item::DataEnd) => true,
            (Side::Server, Item::Line(line)) => self.response(&line, ts, out),
            (Side::Server, Item::DataEnd) => {
                if std::mem::take(&mut self.data_ends_call) {
                    self.end_front(ts, None, None, out);
                }
                true
            }
        }
    }

    /// A client command line.
    fn command(&mut self, line: &[u8], ts: u64, out: &mut Vec<DbCall>) -> bool {
        if line.is_empty() {
            return true;
        }
        let words: Vec<&[u8]> = line
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .collect();
        let Some(&(operation, reply)) = words
            .first()
            .and_then(|w| COMMANDS.iter().find(|(name, _)| name.as_bytes() == *w))
        else {
            // Unknown commands get `ERROR`: still a call, paired as one line. Its word
            // may be anything, so it is not reported.
            return self.queue(line, &words, UNKNOWN, Reply::Line, ts, out);
        };
        // Storage commands carry a data block of `<bytes>` + CRLF.
        let data_len = match operation {
            "set" | "add" | "replace" | "append" | "prepend" | "cas" => words.get(4),
            "ms" => words.get(2),
            _ => None,
        };
        // A length that is not a number: memcached answers CLIENT_ERROR and reads no block.
        if let Some(len) = data_len.and_then(|len| parse_u64(len)) {
            self.client.framing = Framing::Data { left: len + 2 };
        }
        self.queue(line, &words, operation, reply, ts, out)
    }

    fn queue(
        &mut self,
        line: &[u8],
        words: &[&[u8]],
        operation: &'static str,
        reply: Reply,
        ts: u64,
        out: &mut Vec<DbCall>,
    ) -> bool {
        if self.server.framing == Framing::Lost {
            // The responses to come start with this command's.
            self.server = Direction::default();
        }
        if self.pending.len() >= MAX_PENDING {
            self.stats.dropped_calls += 1;
            return false;
        }
        let no_reply = words.last().is_some_and(|w| *w == b"noreply");
        self.pending.push_back(Pending {
            start_ns: ts,
            operation,
            text: (self.opts.max_query_text > 0).then(|| self.text(line, words)),
            reply,
            no_reply,
            items: 0,
        });
        self.emit_unanswered(out);
        true
    }

    /// `db.query.text`: the line, or its command word with `?` for each argument.
    fn text(&self, line: &[u8], words: &[&[u8]]) -> String {
        let max = self.opts.max_query_text;
        let mut text = if self.opts.obfuscate_literals {
            let first = words.first().copied().unwrap_or_default();
            let known = COMMANDS.iter().any(|(name, _)| name.as_bytes() == first);
            let mut t = if known {
                String::from_utf8_lossy(first).into_owned()
            } else {
                "?".to_owned()
            };
            for w in words.iter().skip(1) {
                if t.len() > max {
                    break;
                }
                t.push_str(if *w == b"noreply" { " noreply" } else { " ?" });
            }
            t
        } else {
            String::from_utf8_lossy(line).into_owned()
        };
        text.truncate(sql::cut(&text, max).len());
        text
    }

    /// Reports the commands at the front that get no response.
    fn emit_unanswered(&mut self, out: &mut Vec<DbCall>) {
        while self.pending.front().is_some_and(|p| p.no_reply) {
            if let Some(p) = self.pending.pop_front() {
                let end = p.start_ns;
                out.push(call(p, end));
            }
        }
    }

    /// A server response line.
    fn response(&mut self, line: &[u8], ts: u64, out: &mut Vec<DbCall>) -> bool {
        let Some(front) = self.pending.front_mut() else {
            return false;
        };
        if let Some(kind) = error_kind(line) {
            let message = String::from_utf8_lossy(line.get(kind.len()..).unwrap_or_default());
            let mut message = message.trim_start().to_owned();
            message.truncate(message.floor_char_boundary(MAX_ERROR));
            self.end_front(ts, Some((kind, message)), None, out);
            return true;
        }
        match front.reply {
            Reply::Values => {
                if line == b"END" {
                    let items = ("db.response.returned_rows", front.items.to_string());
                    self.end_front(ts, None, Some(items), out);
                    return true;
                }
                // VALUE <key> <flags> <bytes> [<cas>]
                let mut words = line.split(|&b| b == b' ');
                if words.next() != Some(b"VALUE") {
                    return false;
                }
                let Some(len) = words.nth(2).and_then(parse_u64) else {
                    return false;
                };
                front.items += 1;
                self.server.framing = Framing::Data { left: len + 2 };
                true
            }
            Reply::Stats if line.starts_with(b"STAT ") || line.starts_with(b"ITEM ") => true,
            Reply::Meta if line.starts_with(b"VA ") => {
                let Some(len) = line.split(|&b| b == b' ').nth(1).and_then(parse_u64) else {
                    return false;
                };
                self.server.framing = Framing::Data { left: len + 2 };
                self.data_ends_call = true;
                true
            }
            Reply::Stats | Reply::Line | Reply::Meta => {
                let result = line.split(|&b| b == b' ').next().unwrap_or_default();
                // Numbers (incr/decr) and versions are values, not outcomes.
                let outcome = (!result.is_empty()
                    && result.len() <= 16
                    && result.iter().all(|b| b.is_ascii_uppercase() || *b == b'_'))
                .then(|| {
                    (
                        "sonde.db.memcached.result",
                        String::from_utf8_lossy(result).into_owned(),
                    )
                });
                self.end_front(ts, None, outcome, out);
                true
            }
        }
    }

    /// The front command's response is complete.
    fn end_front(
        &mut self,
        ts: u64,
        error: Option<(&'static str, String)>,
        extra: Option<(&'static str, String)>,
        out: &mut Vec<DbCall>,
    ) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        let mut c = call(p, ts);
        c.extra.extend(extra);
        if let Some((kind, message)) = error {
            c.status_code = Some(kind.to_owned());
            c.error_type = Some(kind.to_owned());
            c.error_message = Some(message);
        }
        out.push(c);
        self.emit_unanswered(out);
    }
}

fn call(p: Pending, end_ns: u64) -> DbCall {
    DbCall {
        start_ns: p.start_ns,
        end_ns: end_ns.max(p.start_ns),
        operation: Some(p.operation.to_owned()),
        summary: p.operation.to_owned(),
        query_text: p.text,
        ..DbCall::default()
    }
}

/// `ERROR`, `CLIENT_ERROR <msg>`, `SERVER_ERROR <msg>`.
fn error_kind(line: &[u8]) -> Option<&'static str> {
    ["CLIENT_ERROR", "SERVER_ERROR", "ERROR"]
        .into_iter()
        .find(|kind| {
            line.strip_prefix(kind.as_bytes())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(b" "))
        })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.len() > 12 {
        return None;
    }
    crate::protocols::parse_decimal(digits)
}

impl DbParser for MemcachedParser {
    fn push(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        let (head, gap, tail) = seg.parts();
        if side == Side::Client && self.client.framing == Framing::Lost {
            if command_line(head).is_none() {
                self.stats.desync_bytes += seg.len.max(head.len() as u64);
                return;
            }
            self.client = Direction::default();
        }
        let lost = match side {
            Side::Client => self.client.framing == Framing::Lost,
            Side::Server => self.server.framing == Framing::Lost,
        };
        if lost {
            self.stats.desync_bytes += seg.len.max(head.len() as u64);
            return;
        }
        if !self.feed(side, head, seg.ts_ns, out) {
            self.stats.desync_bytes += gap + tail.len() as u64;
            return;
        }
        if gap > 0 {
            let dir = match side {
                Side::Client => &mut self.client,
                Side::Server => &mut self.server,
            };
            match dir.skip(gap) {
                Ok(Some(item)) => {
                    if !self.item(side, item, seg.ts_ns, out) {
                        self.stats.desync_bytes += tail.len() as u64;
                        self.lose(side);
                        return;
                    }
                }
                Ok(None) => {}
                Err(()) => {
                    self.stats.desync_bytes += gap + tail.len() as u64;
                    self.lose(side);
                    return;
                }
            }
        }
        self.feed(side, tail, seg.ts_ns, out);
    }

    fn finish(&mut self, out: &mut Vec<DbCall>) {
        self.emit_unanswered(out);
        self.stats.dropped_calls += self.pending.len() as u64;
        self.pending.clear();
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;
