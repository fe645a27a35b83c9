//! The client side: RESP command arrays and inline command lines into commands, and the
//! resync after the client's framing is lost.

use super::command::{Arg, MAX_NAME, Partial};
use super::detect::command_start;
use super::resp::{self, Visit};
use super::{Conn, RedisParser};
use crate::protocols::Segment;
use crate::protocols::db::DbCall;

/// Most arguments of one command kept for its text; the rest are only counted.
const MAX_KEPT_ARGS: usize = 64;
/// Bytes of a segment start examined to resync (a command array header or inline line).
const MAX_PROBE: usize = 64;

/// How the client side is being read.
#[derive(Debug)]
pub(super) enum ClientState {
    /// Framing unknown: waiting for a segment that starts with a command. Holds the
    /// first bytes of the segment being tried (`None` until a segment starts).
    Lost(Option<Vec<u8>>),
    /// Reading RESP arrays (or idle between commands).
    Resp,
    /// Reading an inline command line.
    Inline,
}

impl RedisParser {
    pub(super) fn push_client(&mut self, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
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
}

impl Conn {
    /// Client framing lost: nothing pending can be paired any more.
    fn lose_client(&mut self) {
        self.client_state = ClientState::Lost(None);
        self.partial = None;
        self.lose_server();
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
}

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
