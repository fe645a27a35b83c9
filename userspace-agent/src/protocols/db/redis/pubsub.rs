//! Pub/sub: `(P|S)(UN)SUBSCRIBE` commands end at their last confirmation, which arrive
//! as RESP2 arrays or RESP3 pushes rather than as one reply.

use super::Conn;
use super::command::Effect;
use super::server::Reply;
use crate::protocols::db::DbCall;

impl Conn {
    /// An unsubscribe-from-all has no known count of confirmations: it ends at the last
    /// one seen, once something else arrives.
    pub(super) fn end_open_unsubscribe(&mut self, out: &mut Vec<DbCall>) {
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

    /// A pub/sub confirmation (`subscribe`, `unsubscribe`, ... push).
    pub(super) fn confirmation(&mut self, kind: &[u8], reply: &Reply, out: &mut Vec<DbCall>) {
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
}
