//! PostgreSQL frontend/backend protocol v3, from the client's point of view.
//!
//! One span per exchange:
//! - a simple `Query` ('Q'), from the query to its `ReadyForQuery`, with every statement
//!   of the query string in the summary;
//! - an extended-protocol execution: the `Parse`/`Bind`/`Describe` messages leading to an
//!   `Execute`, up to the `CommandComplete` (or error) answering it. Pipelines (several
//!   executions before one `Sync`) give one span per `Execute`. A statement prepared
//!   before the agent attached is reported by name (`EXECUTE <name>`, attribute
//!   `sonde.db.statement_name`), never with a guessed query. A `Parse` without `Execute`
//!   (preparing only) gives a span only when the server rejects it.
//!
//! Startup: the `database` parameter (or `user`, the server's default) becomes
//! `db.namespace`. An SSLRequest or GSSENCRequest accepted by the server ends parsing
//! (counted in `tls_upgrades`); authentication messages are skipped unread.
//!
//! Lost sync: messages are length-framed, so bytes in a gap are skipped by count. A
//! header inside a gap loses sync: pending exchanges are dropped (counted) and the client
//! side resyncs at the next client segment that starts with a whole, valid client
//! message (see [`sniff_mid_stream`]); the server side then resyncs at its next segment
//! that starts with a valid server message header.

use std::collections::VecDeque;

use super::framing::{Frame, Framer, Header, Piece, Step, cstr, pieces};
use super::sql::{self, Analysis, Dialect};
use super::{DbCall, DbParser, DbSystem, ParseOptions, ParserStats, Side};
use crate::protocols::Segment;

/// Protocol 3.x in a startup message (major 3 in the high 16 bits).
const PROTOCOL_3: u32 = 3 << 16;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Largest startup message accepted (the server's own limit is 10 000 bytes).
const MAX_STARTUP: u32 = 10_000;
/// Largest message length accepted as sane (the server's limit is 1 GiB).
const MAX_MESSAGE: u64 = 1 << 30;
/// Exchanges waiting for their responses (pipelining depth).
const MAX_PENDING: usize = 64;
/// Prepared statements and portals remembered per connection.
const MAX_STATEMENTS: usize = 128;
const MAX_PORTALS: usize = 32;
/// Longest statement or portal name kept (the server's NAMEDATALEN is 64).
const MAX_NAME: usize = 64;
/// Longest error message kept.
const MAX_ERROR_MESSAGE: usize = 512;
/// Message types a server sends.
const SERVER_TYPES: &[u8] = b"RKSZTDCEINAV123ntsGHWdcv";

/// True when these first bytes of a connection are a PostgreSQL startup message,
/// SSLRequest, GSSENCRequest or CancelRequest sent by the client.
pub fn sniff(side: Side, bytes: &[u8]) -> bool {
    side == Side::Client && startup_kind(bytes).is_some()
}

/// True when these bytes, the start of a client segment on a connection opened before
/// the agent attached, are PostgreSQL client messages.
///
/// Strict, to avoid false positives: the segment must hold only whole messages (each
/// header's length ends exactly at the next header or at the end), of client types
/// `QPBDESHC`, the first a `Query` or `Parse` whose query text is NUL-terminated UTF-8
/// starting with a letter, `(` or whitespace.
pub fn sniff_mid_stream(side: Side, bytes: &[u8]) -> bool {
    if side != Side::Client {
        return false;
    }
    let mut rest = bytes;
    let mut first = true;
    while !rest.is_empty() {
        let Some((ty, body, next)) = whole_message(rest) else {
            return false;
        };
        if !b"QPBDESHC".contains(&ty) || (first && !first_is_query(ty, body)) {
            return false;
        }
        first = false;
        rest = next;
    }
    !first
}

/// One whole typed message at the start of `bytes`: type, payload, rest.
fn whole_message(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&ty, rest) = bytes.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?.checked_sub(4)?;
    let body = rest.get(4..4 + len)?;
    Some((ty, body, rest.get(4 + len..).unwrap_or_default()))
}

fn first_is_query(ty: u8, body: &[u8]) -> bool {
    let query = match ty {
        b'Q' => body,
        b'P' => cstr(body).1,
        _ => return false,
    };
    let Some(at) = memchr::memchr(0, query) else {
        return false;
    };
    let text = query.get(..at).unwrap_or_default();
    (ty == b'P' || at + 1 == query.len())
        && std::str::from_utf8(text).is_ok()
        && text
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'(' || b.is_ascii_whitespace())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartupKind {
    Startup,
    Ssl,
    GssEnc,
    Cancel,
}

fn startup_kind(bytes: &[u8]) -> Option<StartupKind> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let code = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    match code {
        SSL_REQUEST if len == 8 => Some(StartupKind::Ssl),
        GSSENC_REQUEST if len == 8 => Some(StartupKind::GssEnc),
        CANCEL_REQUEST if len == 16 => Some(StartupKind::Cancel),
        c if c >> 16 == PROTOCOL_3 >> 16 && (9..=MAX_STARTUP).contains(&len) => {
            Some(StartupKind::Startup)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Exchanges
// ---------------------------------------------------------------------------------------

/// What the client's statement refers to.
#[derive(Clone, Debug, Default)]
enum Query {
    #[default]
    Unknown,
    Known(Box<Analysis>),
    /// A statement prepared before we saw its `Parse`.
    UnknownStatement(String),
}

/// One response message an extended-protocol request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    ParseComplete,
    BindComplete,
    /// `ParameterDescription` then `RowDescription`/`NoData`.
    DescribeStatement,
    /// `RowDescription` or `NoData`.
    DescribeRows,
    Execute,
    CloseComplete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UnitKind {
    /// A simple Query: ends at `ReadyForQuery`.
    Simple,
    /// Extended-protocol messages up to an `Execute` (or the `Sync`).
    Extended,
    /// A `Sync`: ends at `ReadyForQuery`.
    Sync,
    /// A request we track only to keep pairing (`FunctionCall`): ends at `ReadyForQuery`.
    Silent,
}

#[derive(Debug)]
struct Unit {
    kind: UnitKind,
    start_ns: u64,
    query: Query,
    expects: VecDeque<Expect>,
    /// No more client messages join this unit.
    closed: bool,
    executes: bool,
    error: Option<ServerError>,
    returned_rows: Option<u64>,
    affected_rows: Option<u64>,
}

impl Unit {
    fn new(kind: UnitKind, start_ns: u64) -> Self {
        Self {
            kind,
            start_ns,
            query: Query::Unknown,
            expects: VecDeque::new(),
            closed: kind != UnitKind::Extended,
            executes: false,
            error: None,
            returned_rows: None,
            affected_rows: None,
        }
    }

    /// Whether finishing this unit gives a span.
    fn reports(&self) -> bool {
        match self.kind {
            UnitKind::Simple => true,
            UnitKind::Extended => self.executes || self.error.is_some(),
            UnitKind::Sync | UnitKind::Silent => false,
        }
    }

    fn add_tag(&mut self, tag: &[u8]) {
        let (verb, count) = command_tag(tag);
        let Some(count) = count else { return };
        let slot = match verb {
            b"SELECT" | b"FETCH" => &mut self.returned_rows,
            _ => &mut self.affected_rows,
        };
        *slot = Some(slot.unwrap_or(0).saturating_add(count));
    }
}

/// `CommandComplete` tag: its verb and the row count, if it has one.
fn command_tag(tag: &[u8]) -> (&[u8], Option<u64>) {
    let tag = cstr(tag).0;
    let verb = tag.split(|&b| b == b' ').next().unwrap_or_default();
    let counted = matches!(
        verb,
        b"SELECT" | b"FETCH" | b"MOVE" | b"INSERT" | b"UPDATE" | b"DELETE" | b"MERGE" | b"COPY"
    );
    let count = counted
        .then(|| tag.rsplit(|&b| b == b' ').next())
        .flatten()
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok());
    (verb, count)
}

#[derive(Clone, Debug, Default)]
struct ServerError {
    sqlstate: Option<String>,
    message: Option<String>,
}

fn parse_error(body: &[u8]) -> ServerError {
    let mut err = ServerError::default();
    let mut rest = body;
    while let Some((&code, after)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let (value, next) = cstr(after);
        let value = String::from_utf8_lossy(value);
        match code {
            b'C' => err.sqlstate = Some(sql::cut(&value, 5).to_owned()),
            b'M' => err.message = Some(sql::cut(&value, MAX_ERROR_MESSAGE).to_owned()),
            _ => {}
        }
        rest = next;
    }
    err
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

/// How the next client message is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientPhase {
    /// Nothing seen yet: a startup message or (joined mid-stream) a typed message.
    First,
    /// Startup phase: untyped messages.
    Startup,
    Typed,
}

/// A one-byte server answer the next server byte is (not length-framed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    SslAnswer,
    GssAnswer,
}

/// One connection's PostgreSQL parser.
#[derive(Debug)]
pub struct PostgresParser {
    opts: ParseOptions,
    stats: ParserStats,
    client: Framer,
    server: Framer,
    client_phase: ClientPhase,
    awaiting: Awaiting,
    /// TLS or GSS encryption: nothing more is readable.
    encrypted: bool,
    namespace: Option<String>,
    units: VecDeque<Unit>,
    statements: Vec<(String, Analysis)>,
    portals: Vec<(String, Query)>,
}

impl PostgresParser {
    pub fn new(opts: ParseOptions) -> Self {
        Self {
            opts,
            stats: ParserStats::default(),
            client: Framer::new(MAX_MESSAGE),
            server: Framer::new(MAX_MESSAGE),
            client_phase: ClientPhase::First,
            awaiting: Awaiting::Nothing,
            encrypted: false,
            namespace: None,
            units: VecDeque::new(),
            statements: Vec::new(),
            portals: Vec::new(),
        }
    }

    fn client_segment(&mut self, seg: &Segment<'_>) {
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

    fn server_segment(&mut self, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
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

    /// A header fell into a gap: pending exchanges can no longer be paired.
    fn lose_sync(&mut self, rest: u64) {
        self.stats.desync_bytes += rest;
        self.client.lose();
        self.server.lose();
        self.drop_units();
    }

    fn drop_units(&mut self) {
        let dropped = self.units.iter().filter(|u| u.reports()).count();
        self.stats.dropped_calls += dropped as u64;
        self.units.clear();
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

    fn call(&self, unit: Unit, end_ns: u64) -> DbCall {
        let mut call = DbCall {
            start_ns: unit.start_ns,
            end_ns,
            namespace: self.namespace.clone(),
            ..DbCall::default()
        };
        match unit.query {
            Query::Known(a) => {
                let a = *a;
                call.summary = a
                    .summary
                    .unwrap_or_else(|| DbSystem::Postgresql.as_str().to_owned());
                call.operation = a.operation;
                call.collection = a.collection;
                call.query_text = (!a.text.is_empty()).then_some(a.text);
            }
            Query::UnknownStatement(name) => {
                call.summary = if name.is_empty() {
                    "EXECUTE".to_owned()
                } else {
                    format!("EXECUTE {name}")
                };
                if !name.is_empty() {
                    call.extra.push(("sonde.db.statement_name", name));
                }
            }
            Query::Unknown => call.summary = DbSystem::Postgresql.as_str().to_owned(),
        }
        if let Some(n) = unit.returned_rows {
            call.extra
                .push(("db.response.returned_rows", n.to_string()));
        }
        if let Some(n) = unit.affected_rows {
            call.extra.push(("sonde.db.affected_rows", n.to_string()));
        }
        if let Some(err) = unit.error {
            call.status_code.clone_from(&err.sqlstate);
            call.error_type = err.sqlstate.or_else(|| Some("_OTHER".to_owned()));
            call.error_message = err.message;
        }
        call
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

fn server_keep(tag: u8) -> usize {
    match tag {
        b'C' => 64,
        b'E' => 2 * MAX_ERROR_MESSAGE,
        _ => 0,
    }
}

/// A server segment starting with a whole header of a server message type.
fn server_boundary(seg: &Segment<'_>) -> bool {
    let Some((&ty, rest)) = seg.head.split_first() else {
        return false;
    };
    let Some(len) = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
    else {
        return false;
    };
    SERVER_TYPES.contains(&ty) && len >= 4 && u64::from(len) < seg.len
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

impl DbParser for PostgresParser {
    fn push(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        if self.encrypted {
            return;
        }
        match side {
            Side::Client => self.client_segment(seg),
            Side::Server => self.server_segment(seg, out),
        }
    }

    fn finish(&mut self, _out: &mut Vec<DbCall>) {
        // Unanswered exchanges have no end: dropped, not guessed.
        self.drop_units();
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;
