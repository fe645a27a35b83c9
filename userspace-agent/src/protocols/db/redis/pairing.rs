//! Pairing commands with replies: the FIFO of pending commands, commands that get no
//! reply, a reply's effect on the connection, and the [`DbCall`] each pair becomes.

use super::Conn;
use super::command::{Effect, Partial, Pending};
use super::server::Reply;
use super::text::error_parts;
use crate::protocols::db::DbCall;

/// Most commands awaiting a reply; beyond that pairing is abandoned (as a loss of sync).
const MAX_PENDING: usize = 1024;

impl Conn {
    /// A command is complete: queue it for its reply.
    pub(super) fn command_done(&mut self, partial: Partial, out: &mut Vec<DbCall>) {
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
    pub(super) fn emit_unanswered(&mut self, out: &mut Vec<DbCall>) {
        while self.pending.front().is_some_and(|p| p.no_reply) {
            if let Some(p) = self.pending.pop_front() {
                let end = p.start_ns;
                out.push(self.call(p, end, None));
            }
        }
    }

    /// A whole reply has been read.
    pub(super) fn reply_done(&mut self, out: &mut Vec<DbCall>) {
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

    pub(super) fn call(&self, p: Pending, end_ns: u64, reply: Option<&Reply>) -> DbCall {
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
