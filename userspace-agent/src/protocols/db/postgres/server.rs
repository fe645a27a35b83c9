//! The server side: responses matched to the front exchange's expectations, errors,
//! `ReadyForQuery`, and the one-byte answer to an encryption request.

use super::detect::server_boundary;
use super::exchange::{Expect, MAX_ERROR_MESSAGE, ServerError, UnitKind, parse_error};
use super::{Awaiting, ClientPhase, PostgresParser};
use crate::protocols::Segment;
use crate::protocols::db::DbCall;
use crate::protocols::db::framing::{Frame, Header, Piece, Step, pieces};

impl PostgresParser {
    pub(super) fn server_segment(&mut self, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        if self.server.is_lost() {
            if self.client_phase != ClientPhase::First && server_boundary(seg) {
                self.server.resync();
            } else {
                self.stats.desync_bytes += seg.len;
                return;
            }
        }
        for mut piece in pieces(seg) {
            while !piece.is_empty() && !self.encrypted {
                if self.awaiting != Awaiting::Nothing && self.server.at_boundary() {
                    self.one_byte_answer(&mut piece);
                    continue;
                }
                match self
                    .server
                    .step(&mut piece, seg.ts_ns, Header::Typed, server_keep)
                {
                    Step::Frame(frame) => self.server_message(frame, seg.ts_ns, out),
                    Step::More => {}
                    Step::Lost => {
                        self.lose_sync(piece.len());
                        return;
                    }
                }
            }
        }
    }

    /// The server's 'S'/'G'/'N' answer to SSLRequest/GSSENCRequest.
    fn one_byte_answer(&mut self, piece: &mut Piece<'_>) {
        let answer = match piece {
            Piece::Bytes(b) => {
                let first = b.first().copied();
                *piece = Piece::Bytes(b.get(1..).unwrap_or_default());
                first
            }
            Piece::Gap(g) => {
                *g -= 1;
                None
            }
        };
        let accepted = match (self.awaiting, answer) {
            (_, Some(b'N')) => false,
            (Awaiting::SslAnswer, Some(b'S')) | (Awaiting::GssAnswer, Some(b'G')) => true,
            // Lost or unexpected: whatever follows is not readable plaintext.
            _ => true,
        };
        self.awaiting = Awaiting::Nothing;
        if accepted {
            self.encrypted = true;
            self.stats.tls_upgrades += 1;
        }
    }

    fn server_message(&mut self, frame: Frame, ts: u64, out: &mut Vec<DbCall>) {
        let body = frame.body.as_slice();
        match frame.tag {
            b'Z' => self.ready_for_query(ts, out),
            b'E' => self.error(parse_error(body), ts, out),
            b'C' => {
                let Some(unit) = self.units.front_mut() else {
                    return;
                };
                unit.add_tag(body);
                if unit.kind == UnitKind::Extended {
                    self.answer(Expect::Execute, ts, out);
                }
            }
            b'I' | b's' if self.front_kind() == Some(UnitKind::Extended) => {
                self.answer(Expect::Execute, ts, out);
            }
            b'1' => self.answer(Expect::ParseComplete, ts, out),
            b'2' => self.answer(Expect::BindComplete, ts, out),
            b'3' => self.answer(Expect::CloseComplete, ts, out),
            b't' => {
                if let Some(e) = self
                    .units
                    .front_mut()
                    .and_then(|u| u.expects.front_mut())
                    .filter(|e| **e == Expect::DescribeStatement)
                {
                    *e = Expect::DescribeRows;
                }
            }
            b'n' => self.answer(Expect::DescribeRows, ts, out),
            b'T' if self.front_kind() == Some(UnitKind::Extended) => {
                self.answer(Expect::DescribeRows, ts, out);
            }
            // Rows, COPY, notices, parameter status, notifications, authentication.
            _ => {}
        }
    }

    fn front_kind(&self) -> Option<UnitKind> {
        self.units.front().map(|u| u.kind)
    }

    /// The response `got` for the front unit's first expectation.
    fn answer(&mut self, got: Expect, ts: u64, out: &mut Vec<DbCall>) {
        let Some(unit) = self.units.front_mut() else {
            return;
        };
        if unit.expects.front() != Some(&got) {
            // Not what the client asked for: pairing is unreliable from here.
            self.stats.dropped_calls += self.units.iter().filter(|u| u.reports()).count() as u64;
            self.units.clear();
            return;
        }
        unit.expects.pop_front();
        if unit.closed && unit.expects.is_empty() {
            self.finish_front(ts, out);
        }
    }

    fn error(&mut self, err: ServerError, ts: u64, out: &mut Vec<DbCall>) {
        let Some(unit) = self.units.front_mut() else {
            return;
        };
        match unit.kind {
            UnitKind::Simple | UnitKind::Silent => {
                if unit.error.is_none() {
                    unit.error = Some(err);
                }
            }
            UnitKind::Extended => {
                unit.error = Some(err);
                self.finish_front(ts, out);
                // The server skips everything up to the Sync.
                while self
                    .units
                    .front()
                    .is_some_and(|u| u.kind == UnitKind::Extended)
                {
                    self.units.pop_front();
                }
            }
            UnitKind::Sync => {}
        }
    }

    fn ready_for_query(&mut self, ts: u64, out: &mut Vec<DbCall>) {
        while let Some(unit) = self.units.front() {
            let kind = unit.kind;
            if kind == UnitKind::Extended {
                // Still waiting at ReadyForQuery: its answers went missing.
                if unit.reports() {
                    self.stats.dropped_calls += 1;
                }
                self.units.pop_front();
                continue;
            }
            self.finish_front(ts, out);
            return;
        }
    }

    fn finish_front(&mut self, end_ns: u64, out: &mut Vec<DbCall>) {
        let Some(unit) = self.units.pop_front() else {
            return;
        };
        if unit.reports() {
            out.push(self.call(unit, end_ns));
        }
    }
}

fn server_keep(tag: u8) -> usize {
    match tag {
        b'C' => 64,
        b'E' => 2 * MAX_ERROR_MESSAGE,
        _ => 0,
    }
}
