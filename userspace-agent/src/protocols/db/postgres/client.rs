//! The client side: startup, then typed messages into exchanges, with the prepared
//! statements and portals the extended protocol names.

use super::detect::{MAX_STARTUP, StartupKind, sniff_mid_stream, startup_kind};
use super::exchange::{Expect, Query, Unit, UnitKind};
use super::{Awaiting, ClientPhase, PostgresParser};
use crate::protocols::Segment;
use crate::protocols::db::Side;
use crate::protocols::db::framing::{Frame, Header, Step, cstr, pieces};
use crate::protocols::db::sql::{self, Analysis, Dialect};

/// Exchanges waiting for their responses (pipelining depth).
const MAX_PENDING: usize = 64;
/// Prepared statements and portals remembered per connection.
const MAX_STATEMENTS: usize = 128;
const MAX_PORTALS: usize = 32;
/// Longest statement or portal name kept (the server's NAMEDATALEN is 64).
const MAX_NAME: usize = 64;

impl PostgresParser {
    pub(super) fn client_segment(&mut self, seg: &Segment<'_>) {
        if self.client_phase == ClientPhase::First {
            self.client_phase = match seg.head.first() {
                Some(0) => ClientPhase::Startup,
                Some(_) => {
                    // Joined mid-stream: the server's bytes so far belong to nothing we saw.
                    self.server.lose();
                    ClientPhase::Typed
                }
                None => return,
            };
        }
        if self.client.is_lost() {
            if self.client_phase == ClientPhase::Typed && sniff_mid_stream(Side::Client, seg.head) {
                self.client.resync();
            } else {
                self.stats.desync_bytes += seg.len;
                return;
            }
        }
        for mut piece in pieces(seg) {
            while !piece.is_empty() && !self.encrypted {
                let header = match self.client_phase {
                    ClientPhase::Startup => Header::Untyped,
                    _ => Header::Typed,
                };
                match self.client.step(&mut piece, seg.ts_ns, header, client_keep) {
                    Step::Frame(frame) => self.client_message(frame),
                    Step::More => {}
                    Step::Lost => {
                        self.lose_sync(piece.len());
                        return;
                    }
                }
            }
        }
    }

    fn client_message(&mut self, frame: Frame) {
        if self.client_phase == ClientPhase::Startup {
            self.startup_message(&frame);
            return;
        }
        let ts = frame.start_ts;
        let body = frame.body.as_slice();
        match frame.tag {
            b'Q' => {
                self.close_open_unit();
                let mut unit = Unit::new(UnitKind::Simple, ts);
                unit.query = Query::Known(Box::new(self.analyse(cstr(body).0, &frame)));
                self.push_unit(unit);
            }
            b'P' => {
                let (name, rest) = cstr(body);
                let analysis = self.analyse(cstr(rest).0, &frame);
                if name.len() <= MAX_NAME && frame.complete {
                    remember(
                        &mut self.statements,
                        name_string(name),
                        analysis.clone(),
                        MAX_STATEMENTS,
                    );
                }
                if let Some(unit) = self.open_unit(ts) {
                    unit.query = Query::Known(Box::new(analysis));
                    unit.expects.push_back(Expect::ParseComplete);
                }
            }
            b'B' => {
                let (portal, rest) = cstr(body);
                let statement = cstr(rest).0;
                let query = match self
                    .statements
                    .iter()
                    .find(|(n, _)| n.as_bytes() == statement)
                {
                    Some((_, a)) => Query::Known(Box::new(a.clone())),
                    None => Query::UnknownStatement(name_string(statement)),
                };
                remember(
                    &mut self.portals,
                    name_string(portal),
                    query.clone(),
                    MAX_PORTALS,
                );
                if let Some(unit) = self.open_unit(ts) {
                    if !matches!(unit.query, Query::Known(_)) {
                        unit.query = query;
                    }
                    unit.expects.push_back(Expect::BindComplete);
                }
            }
            b'D' => {
                let expect = match body.first() {
                    Some(b'S') => Expect::DescribeStatement,
                    _ => Expect::DescribeRows,
                };
                if let Some(unit) = self.open_unit(ts) {
                    unit.expects.push_back(expect);
                }
            }
            b'E' => {
                let portal = cstr(body).0;
                let known = self
                    .portals
                    .iter()
                    .find(|(n, _)| n.as_bytes() == portal)
                    .map(|(_, q)| q.clone());
                if let Some(unit) = self.open_unit(ts) {
                    if matches!(unit.query, Query::Unknown) {
                        unit.query = known.unwrap_or(Query::Unknown);
                    }
                    unit.expects.push_back(Expect::Execute);
                    unit.executes = true;
                    unit.closed = true;
                }
            }
            b'C' => {
                let (kind, rest) = body.split_first().unwrap_or((&0, &[]));
                let name = cstr(rest).0;
                match kind {
                    b'S' => self.statements.retain(|(n, _)| n.as_bytes() != name),
                    _ => self.portals.retain(|(n, _)| n.as_bytes() != name),
                }
                if let Some(unit) = self.open_unit(ts) {
                    unit.expects.push_back(Expect::CloseComplete);
                }
            }
            b'S' => {
                self.close_open_unit();
                self.push_unit(Unit::new(UnitKind::Sync, ts));
            }
            b'F' => {
                self.close_open_unit();
                self.push_unit(Unit::new(UnitKind::Silent, ts));
            }
            // 'p' (authentication: never read), 'H' Flush, 'd'/'c'/'f' COPY data, 'X'.
            _ => {}
        }
    }

    fn startup_message(&mut self, frame: &Frame) {
        let mut head = [0u8; 8];
        let len = u32::try_from(frame.len + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes();
        for (slot, b) in head.iter_mut().zip(len.iter().chain(frame.body.iter())) {
            *slot = *b;
        }
        match startup_kind(&head) {
            Some(StartupKind::Startup) => {
                self.client_phase = ClientPhase::Typed;
                let mut params = frame.body.get(4..).unwrap_or_default();
                let (mut database, mut user) = (None, None);
                while !params.is_empty() {
                    let (key, rest) = cstr(params);
                    let (value, rest) = cstr(rest);
                    // A value the capture cut off (no NUL seen) would be a guess.
                    let whole = !rest.is_empty() || frame.complete;
                    match key {
                        b"database" if whole => database = Some(name_string(value)),
                        b"user" if whole => user = Some(name_string(value)),
                        _ => {}
                    }
                    params = rest;
                }
                // The server's default database is the user's name.
                self.namespace = database.filter(|d| !d.is_empty()).or(user);
            }
            Some(StartupKind::Ssl) => self.awaiting = Awaiting::SslAnswer,
            Some(StartupKind::GssEnc) => self.awaiting = Awaiting::GssAnswer,
            Some(StartupKind::Cancel) => {}
            None => self.lose_sync(0),
        }
    }

    fn analyse(&self, text: &[u8], frame: &Frame) -> Analysis {
        // A query text is NUL-terminated: without the NUL in a complete body it was cut.
        sql::analyse(
            text,
            frame.complete,
            Dialect::Postgres,
            self.opts.obfuscate_literals,
            self.opts.max_query_text,
        )
    }

    /// The extended-protocol unit client messages join, opened if needed; `None` when
    /// the pipeline overflowed (pairing restarts at the next boundaries).
    fn open_unit(&mut self, ts: u64) -> Option<&mut Unit> {
        let open = self
            .units
            .back()
            .is_some_and(|u| u.kind == UnitKind::Extended && !u.closed);
        if !open {
            self.push_unit(Unit::new(UnitKind::Extended, ts));
        }
        self.units.back_mut()
    }

    fn close_open_unit(&mut self) {
        if let Some(unit) = self.units.back_mut() {
            unit.closed = true;
        }
    }

    fn push_unit(&mut self, unit: Unit) {
        if self.units.len() >= MAX_PENDING {
            // Too deep a pipeline to follow: pairing restarts at the next boundaries.
            self.lose_sync(0);
            return;
        }
        self.units.push_back(unit);
    }
}

/// How many payload bytes of a client message are worth keeping.
fn client_keep(tag: u8) -> usize {
    match tag {
        // Startup parameters.
        0 => MAX_STARTUP as usize,
        b'Q' | b'P' => sql::MAX_SCAN + MAX_NAME + 2,
        b'B' | b'E' | b'C' | b'D' => 2 * MAX_NAME + 4,
        // 'p': passwords and SASL data are never kept; COPY data is not needed.
        _ => 0,
    }
}

fn name_string(bytes: &[u8]) -> String {
    sql::cut(&String::from_utf8_lossy(bytes), MAX_NAME).to_owned()
}

/// Inserts or replaces `key`, evicting the oldest entry when full.
fn remember<V>(map: &mut Vec<(String, V)>, key: String, value: V, max: usize) {
    map.retain(|(k, _)| *k != key);
    if map.len() >= max {
        map.remove(0);
    }
    map.push((key, value));
}
