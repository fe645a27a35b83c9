//! The server side: RESP replies read into what pairing needs, and the loss of the
//! server's framing.

use super::resp::{self, Visit};
use super::{Conn, RedisParser};
use crate::protocols::Segment;
use crate::protocols::db::DbCall;

/// Longest error message kept.
pub(super) const MAX_ERROR: usize = 256;
/// Longest first element of a push kept (`message`, `subscribe`, ...).
const MAX_PUSH_KIND: usize = 16;

/// What is kept of the reply being read.
#[derive(Debug, Default)]
pub(super) struct Reply {
    pub(super) kind: u8,
    /// Simple string or error text (cut at `MAX_ERROR`).
    pub(super) line: Vec<u8>,
    /// First element of an array or push, if a string (cut at `MAX_PUSH_KIND`).
    pub(super) first: Vec<u8>,
    pub(super) elements: u64,
    /// Last integer element (the subscription count of a pub/sub confirmation).
    pub(super) last_int: Option<i64>,
}

impl Reply {
    pub(super) fn is_error(&self) -> bool {
        matches!(self.kind, b'-' | b'!')
    }
}

impl RedisParser {
    pub(super) fn push_server(&mut self, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
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

impl Conn {
    /// Server framing lost (or pairing broken): drop what waits for a reply.
    pub(super) fn lose_server(&mut self) {
        self.server_lost = true;
        self.reply = Reply::default();
        self.stats.dropped_calls += self.pending.len() as u64;
        self.pending.clear();
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
