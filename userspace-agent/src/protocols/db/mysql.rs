//! MySQL/MariaDB client/server protocol, from the client's point of view.
//!
//! One span per `COM_QUERY` and per `COM_STMT_EXECUTE`, from the command to the end of its
//! response (OK, ERR, or the last packet of the last result set). A `COM_STMT_PREPARE`
//! gives a span only when the server rejects it; its statement id is remembered so later
//! executions carry the query. An execution of a statement prepared before the agent
//! attached is reported as `EXECUTE` with `sonde.db.statement_id`, never a guessed query.
//! Commands without a response (`COM_STMT_CLOSE`, `COM_QUIT`, `COM_STMT_SEND_LONG_DATA`)
//! give no span; `COM_PING`, `COM_INIT_DB` and other commands are followed for pairing
//! only (a successful `COM_INIT_DB` or `USE db` sets `db.namespace`).
//!
//! Handshake: the greeting's version string tells MariaDB from MySQL; the handshake
//! response gives the database (`CLIENT_CONNECT_WITH_DB`); an SSL request ends parsing of
//! the socket's bytes (`tls_upgrades`): ciphertext follows. When a probed TLS library
//! reports the plaintext ([`DbParser::tls_started`]), parsing resumes on it at the full
//! handshake response the client sends inside TLS. Authentication packets are skipped
//! unread.
//!
//! Lost sync: packets are length-framed, so gaps are skipped by count. A header inside a
//! gap loses sync: pending commands are dropped (counted) and the client side resyncs at
//! the next segment that is one whole command packet (see [`sniff_mid_stream`]), the
//! server side at its next segment starting with sequence id 1.
//!
//! Not handled: packets of 16 MiB and more (split into several packets), and
//! `CLIENT_OPTIONAL_RESULTSET_METADATA` result sets without column definitions.

use std::collections::VecDeque;

use super::framing::{Frame, Framer, Header, Step, cstr, pieces};
use super::sql::{self, Analysis, Dialect};
use super::{DbCall, DbParser, DbSystem, ParseOptions, ParserStats, Side};
use crate::protocols::Segment;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_STATISTICS: u8 = 0x09;
const COM_CHANGE_USER: u8 = 0x11;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
/// Highest command byte defined (`COM_RESET_CONNECTION` is 0x1f).
const MAX_COMMAND: u8 = 0x1f;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x8;

/// Largest packet payload (a bigger message is split into several packets).
const MAX_PACKET: u64 = 0xFF_FFFF;
const MAX_PENDING: usize = 64;
const MAX_STATEMENTS: usize = 128;
const MAX_ERROR_MESSAGE: usize = 512;
/// Server payload bytes kept: OK, EOF and ERR packets are read, rows only counted.
const SERVER_KEEP: usize = MAX_ERROR_MESSAGE + 16;

/// True when these first bytes of a connection are a MySQL/MariaDB server greeting
/// (HandshakeV10: 3-byte length, sequence 0, protocol 10, NUL-terminated version).
pub fn sniff(side: Side, bytes: &[u8]) -> bool {
    side == Side::Server && greeting(bytes).is_some()
}

/// The greeting's version string, when `bytes` starts with one.
fn greeting(bytes: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes([*bytes.first()?, *bytes.get(1)?, *bytes.get(2)?, 0]);
    let payload = bytes.get(4..)?;
    if *bytes.get(3)? != 0 || *payload.first()? != 10 || len < 32 {
        return None;
    }
    let version = payload.get(1..)?;
    let at = memchr::memchr(0, version.get(..64.min(version.len()))?)?;
    let version = version.get(..at)?;
    (!version.is_empty() && version.iter().all(|b| b.is_ascii_graphic())).then_some(version)
}

/// True when these bytes, the start of a client segment on a connection opened before
/// the agent attached, are one MySQL `COM_QUERY` packet.
///
/// Strict: the segment is exactly one packet (length + 4 = segment length), sequence id
/// 0, command 0x03, and the query is UTF-8 starting with a letter, `(` or whitespace.
pub fn sniff_mid_stream(side: Side, bytes: &[u8]) -> bool {
    side == Side::Client
        && command_boundary(bytes, bytes.len() as u64)
        && bytes.get(4) == Some(&COM_QUERY)
}

/// A client segment of `seg_len` bytes starting with `head` is one whole command packet.
fn command_boundary(head: &[u8], seg_len: u64) -> bool {
    let (Some(&l0), Some(&l1), Some(&l2), Some(&seq), Some(&cmd)) = (
        head.first(),
        head.get(1),
        head.get(2),
        head.get(3),
        head.get(4),
    ) else {
        return false;
    };
    let len = u64::from(u32::from_le_bytes([l0, l1, l2, 0]));
    if seq != 0 || len == 0 || len + 4 != seg_len || cmd == 0 || cmd > MAX_COMMAND {
        return false;
    }
    if cmd != COM_QUERY {
        return true;
    }
    let text = head.get(5..).unwrap_or_default();
    let valid = match std::str::from_utf8(text) {
        Ok(_) => true,
        // A head cut inside a character.
        Err(e) => e.error_len().is_none(),
    };
    valid
        && text
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'(' || b.is_ascii_whitespace())
}

// ---------------------------------------------------------------------------------------
// Commands and responses
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Query {
    None,
    Known(Box<Analysis>),
    UnknownStatement(u32),
}

/// Where the response to a command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resp {
    /// Waiting for OK, ERR, LOCAL INFILE request or a result set's column count.
    First,
    /// Column definitions left to read.
    Columns(u64),
    /// Rows; an EOF packet (5 bytes or less) before any row closes the definitions.
    Rows,
    /// Prepare OK read: parameter then column definitions left, each group ended by an
    /// EOF packet unless the client asked for `CLIENT_DEPRECATE_EOF`.
    Definitions(u64),
    /// Authentication (`COM_CHANGE_USER`): until OK or ERR.
    Auth,
    /// Any one packet (`COM_STATISTICS`).
    OnePacket,
}

#[derive(Debug)]
struct Pending {
    command: u8,
    start_ns: u64,
    query: Query,
    resp: Resp,
    rows: u64,
    past_definitions: bool,
    affected: Option<u64>,
    error: Option<ServerError>,
}

impl Pending {
    fn reports(&self) -> bool {
        matches!(self.command, COM_QUERY | COM_STMT_EXECUTE)
            || (self.command == COM_STMT_PREPARE && self.error.is_some())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Expecting the server greeting.
    Greeting,
    /// Expecting the client's handshake response.
    Handshake,
    /// Authentication packets until the server's OK or ERR.
    Auth,
    Command,
    /// TLS after an SSL request: nothing more of the socket's bytes is readable.
    Encrypted,
}

/// One connection's MySQL/MariaDB parser.
#[derive(Debug)]
pub struct MysqlParser {
    opts: ParseOptions,
    stats: ParserStats,
    client: Framer,
    server: Framer,
    phase: Phase,
    system: DbSystem,
    namespace: Option<String>,
    /// Commands waiting for their responses, oldest first.
    pending: VecDeque<Pending>,
    statements: Vec<(u32, Analysis)>,
    /// The client did not ask for `CLIENT_DEPRECATE_EOF` (assumed when joined mid-stream).
    eof_after_definitions: bool,
    /// The client side joined mid-stream and waits for a command boundary.
    client_lost: bool,
    server_lost: bool,
}

impl MysqlParser {
    pub fn new(opts: ParseOptions) -> Self {
        Self {
            opts,
            stats: ParserStats::default(),
            client: Framer::new(MAX_PACKET),
            server: Framer::new(MAX_PACKET),
            phase: Phase::Greeting,
            system: DbSystem::Mysql,
            namespace: None,
            pending: VecDeque::new(),
            statements: Vec::new(),
            eof_after_definitions: true,
            client_lost: false,
            server_lost: false,
        }
    }

    fn client_segment(&mut self, seg: &Segment<'_>) {
        if self.phase == Phase::Greeting {
            // The client spoke first: a connection opened before the agent attached.
            self.phase = Phase::Command;
            self.client_lost = true;
            self.server_lost = true;
        }
        if self.client_lost {
            if command_boundary(seg.head, seg.len) {
                self.client_lost = false;
                self.client.resync();
            } else {
                self.stats.desync_bytes += seg.len;
                return;
            }
        }
        for mut piece in pieces(seg) {
            while !piece.is_empty() && self.phase != Phase::Encrypted {
                match self
                    .client
                    .step(&mut piece, seg.ts_ns, Header::Mysql, |_| sql::MAX_SCAN + 16)
                {
                    Step::Frame(frame) => self.client_packet(frame),
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
        if self.server_lost {
            // A response starts with sequence id 1, after the client's command.
            if !self.client_lost && seg.head.get(3) == Some(&1) && seg.head.len() >= 4 {
                self.server_lost = false;
                self.server.resync();
            } else {
                self.stats.desync_bytes += seg.len;
                return;
            }
        }
        for mut piece in pieces(seg) {
            while !piece.is_empty() && self.phase != Phase::Encrypted {
                match self
                    .server
                    .step(&mut piece, seg.ts_ns, Header::Mysql, |_| SERVER_KEEP)
                {
                    Step::Frame(frame) => self.server_packet(frame, seg.ts_ns, out),
                    Step::More => {}
                    Step::Lost => {
                        self.lose_sync(piece.len());
                        return;
                    }
                }
            }
        }
    }

    fn lose_sync(&mut self, rest: u64) {
        self.stats.desync_bytes += rest;
        self.client.lose();
        self.server.lose();
        self.client_lost = true;
        self.server_lost = true;
        self.drop_pending();
        if matches!(self.phase, Phase::Greeting | Phase::Handshake | Phase::Auth) {
            self.phase = Phase::Command;
        }
    }

    fn drop_pending(&mut self) {
        let dropped = self.pending.iter().filter(|p| p.reports()).count();
        self.stats.dropped_calls += dropped as u64;
        self.pending.clear();
    }

    fn client_packet(&mut self, frame: Frame) {
        match self.phase {
            Phase::Handshake => self.handshake_response(&frame),
            Phase::Command if frame.tag == 0 => self.command(&frame),
            // Authentication data, LOCAL INFILE contents: never read.
            _ => {}
        }
    }

    fn handshake_response(&mut self, frame: &Frame) {
        let body = frame.body.as_slice();
        let caps = body
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        if caps & CLIENT_SSL != 0 && frame.len == 32 {
            self.phase = Phase::Encrypted;
            self.stats.tls_upgrades += 1;
            return;
        }
        self.phase = Phase::Auth;
        // CLIENT_DEPRECATE_EOF (bit 24): result sets end with OK, no EOF after definitions.
        self.eof_after_definitions = caps & (1 << 24) == 0;
        let rest = cstr(body.get(32..).unwrap_or_default()).1; // user name
        let rest = if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
            lenenc(rest).and_then(|(n, r)| r.get(usize::try_from(n).ok()?..))
        } else if caps & CLIENT_SECURE_CONNECTION != 0 {
            rest.split_first()
                .and_then(|(&n, r)| r.get(usize::from(n)..))
        } else {
            Some(cstr(rest).1)
        };
        if caps & CLIENT_CONNECT_WITH_DB != 0
            && let Some(rest) = rest
        {
            let db = cstr(rest).0;
            if !db.is_empty() {
                self.namespace = Some(String::from_utf8_lossy(db).into_owned());
            }
        }
    }

    fn command(&mut self, frame: &Frame) {
        let Some((&command, args)) = frame.body.split_first() else {
            return;
        };
        let resp = match command {
            COM_QUIT | COM_STMT_SEND_LONG_DATA => return,
            COM_STMT_CLOSE => {
                if let Some(id) = u32_le(args) {
                    self.statements.retain(|(i, _)| *i != id);
                }
                return;
            }
            COM_CHANGE_USER => Resp::Auth,
            COM_STATISTICS => Resp::OnePacket,
            _ => Resp::First,
        };
        let query = match command {
            COM_QUERY | COM_STMT_PREPARE => Query::Known(Box::new(sql::analyse(
                args,
                frame.complete,
                Dialect::Mysql,
                self.opts.obfuscate_literals,
                self.opts.max_query_text,
            ))),
            COM_INIT_DB => Query::Known(Box::new(Analysis {
                use_database: Some(String::from_utf8_lossy(args).into_owned()),
                ..Analysis::default()
            })),
            COM_STMT_EXECUTE => match u32_le(args) {
                Some(id) => match self.statements.iter().find(|(i, _)| *i == id) {
                    Some((_, a)) => Query::Known(Box::new(a.clone())),
                    None => Query::UnknownStatement(id),
                },
                None => Query::None,
            },
            _ => Query::None,
        };
        if self.pending.len() >= MAX_PENDING {
            self.lose_sync(0);
            return;
        }
        self.pending.push_back(Pending {
            command,
            start_ns: frame.start_ts,
            query,
            resp,
            rows: 0,
            past_definitions: false,
            affected: None,
            error: None,
        });
    }

    fn server_packet(&mut self, frame: Frame, ts: u64, out: &mut Vec<DbCall>) {
        let body = frame.body.as_slice();
        match self.phase {
            Phase::Greeting => {
                let mut wire = Vec::with_capacity(body.len() + 4);
                wire.extend_from_slice(&[0, 0, 0, frame.tag]);
                wire.extend_from_slice(body);
                let len = u32::try_from(frame.len).unwrap_or(0).to_le_bytes();
                wire.get_mut(..3)
                    .into_iter()
                    .flatten()
                    .zip(len)
                    .for_each(|(w, l)| *w = l);
                match greeting(&wire) {
                    Some(version) => {
                        if memchr::memmem::find(version, b"MariaDB").is_some() {
                            self.system = DbSystem::Mariadb;
                        }
                        self.phase = Phase::Handshake;
                    }
                    None => self.lose_sync(0),
                }
            }
            Phase::Auth => {
                if matches!(body.first(), Some(0x00 | 0xFF)) {
                    self.phase = Phase::Command;
                }
            }
            Phase::Command => self.response_packet(&frame, ts, out),
            Phase::Handshake | Phase::Encrypted => {}
        }
    }

    fn response_packet(&mut self, frame: &Frame, ts: u64, out: &mut Vec<DbCall>) {
        let body = frame.body.as_slice();
        let first = body.first().copied();
        let eof_after_definitions = self.eof_after_definitions;
        let Some(p) = self.pending.front_mut() else {
            return;
        };
        let is_eof = first == Some(0xFE) && frame.len <= 5;
        let done = match p.resp {
            Resp::OnePacket => true,
            Resp::Auth => matches!(first, Some(0x00 | 0xFF)),
            Resp::First => match first {
                Some(0xFF) => {
                    p.error = Some(parse_err(body));
                    true
                }
                Some(0x00) if p.command == COM_STMT_PREPARE => {
                    let id = u32_le(body.get(1..).unwrap_or_default());
                    let cols = u16_le(body.get(5..).unwrap_or_default()).unwrap_or(0);
                    let params = u16_le(body.get(7..).unwrap_or_default()).unwrap_or(0);
                    if let (Some(id), Query::Known(a)) = (id, &p.query) {
                        remember(&mut self.statements, id, (**a).clone());
                    }
                    let groups = u64::from(cols > 0) + u64::from(params > 0);
                    let eofs = if eof_after_definitions { groups } else { 0 };
                    let total = u64::from(cols) + u64::from(params) + eofs;
                    p.resp = Resp::Definitions(total);
                    total == 0
                }
                Some(0x00) => {
                    let (affected, status) = ok_packet(body);
                    p.affected = Some(p.affected.unwrap_or(0).saturating_add(affected));
                    status & SERVER_MORE_RESULTS_EXISTS == 0
                }
                // LOCAL INFILE request: the client sends the file, then OK or ERR.
                Some(0xFB) => false,
                _ => match lenenc(body) {
                    Some((n, _)) if n > 0 => {
                        p.resp = Resp::Columns(n);
                        false
                    }
                    _ => true,
                },
            },
            Resp::Columns(n) => {
                p.resp = if n > 1 {
                    Resp::Columns(n - 1)
                } else {
                    Resp::Rows
                };
                false
            }
            Resp::Definitions(n) => {
                p.resp = Resp::Definitions(n.saturating_sub(1));
                n <= 1
            }
            Resp::Rows => match first {
                Some(0xFF) => {
                    p.error = Some(parse_err(body));
                    true
                }
                // The EOF closing the column definitions (no row can look like this).
                _ if is_eof && !p.past_definitions => {
                    p.past_definitions = true;
                    false
                }
                Some(0xFE) if frame.len < MAX_PACKET => {
                    let status = if is_eof {
                        u16_le(body.get(3..).unwrap_or_default()).unwrap_or(0)
                    } else {
                        ok_packet(body).1
                    };
                    if status & SERVER_MORE_RESULTS_EXISTS != 0 {
                        p.resp = Resp::First;
                        p.past_definitions = false;
                        false
                    } else {
                        true
                    }
                }
                _ => {
                    p.past_definitions = true;
                    p.rows += 1;
                    false
                }
            },
        };
        if done {
            self.finish_front(ts, out);
        }
    }

    fn finish_front(&mut self, end_ns: u64, out: &mut Vec<DbCall>) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        if p.error.is_none()
            && let Query::Known(a) = &p.query
            && let Some(db) = &a.use_database
        {
            self.namespace = Some(db.clone());
        }
        if !p.reports() {
            return;
        }
        let mut call = DbCall {
            start_ns: p.start_ns,
            end_ns,
            namespace: self.namespace.clone(),
            ..DbCall::default()
        };
        if self.system != DbSystem::Mysql {
            // The span builder defaults to the protocol's system (mysql).
            call.extra
                .push(("db.system.name", self.system.as_str().to_owned()));
        }
        match p.query {
            Query::Known(a) => {
                let a = *a;
                call.summary = a.summary.unwrap_or_else(|| self.system.as_str().to_owned());
                call.operation = a.operation;
                call.collection = a.collection;
                call.query_text = (!a.text.is_empty()).then_some(a.text);
            }
            Query::UnknownStatement(id) => {
                call.summary = "EXECUTE".to_owned();
                call.extra.push(("sonde.db.statement_id", id.to_string()));
            }
            Query::None => call.summary = self.system.as_str().to_owned(),
        }
        if p.past_definitions || p.rows > 0 {
            call.extra
                .push(("db.response.returned_rows", p.rows.to_string()));
        } else if let Some(n) = p.affected {
            call.extra.push(("sonde.db.affected_rows", n.to_string()));
        }
        if let Some(err) = p.error {
            let code = err.code.map(|c| c.to_string());
            call.status_code.clone_from(&code);
            call.error_type = code.or_else(|| Some("_OTHER".to_owned()));
            call.error_message = (!err.message.is_empty()).then_some(err.message);
            if let Some(state) = err.sqlstate {
                call.extra.push(("sonde.db.sqlstate", state));
            }
        }
        out.push(call);
    }
}

/// An ERR packet; fields cut off by a lossy capture are `None`.
#[derive(Debug)]
struct ServerError {
    code: Option<u16>,
    sqlstate: Option<String>,
    message: String,
}

/// ERR packet: error code, SQLSTATE (protocol 4.1 marker `#`), message.
fn parse_err(body: &[u8]) -> ServerError {
    let code = u16_le(body.get(1..).unwrap_or_default());
    let rest = body.get(3..).unwrap_or_default();
    let (sqlstate, message) = match rest.split_first() {
        Some((b'#', r)) => (
            r.get(..5).map(|s| String::from_utf8_lossy(s).into_owned()),
            r.get(5..).unwrap_or_default(),
        ),
        _ => (None, rest),
    };
    let message = String::from_utf8_lossy(message);
    ServerError {
        code,
        sqlstate,
        message: sql::cut(&message, MAX_ERROR_MESSAGE).to_owned(),
    }
}

/// OK packet: affected rows and status flags.
fn ok_packet(body: &[u8]) -> (u64, u16) {
    let Some((affected, rest)) = lenenc(body.get(1..).unwrap_or_default()) else {
        return (0, 0);
    };
    let status = lenenc(rest).and_then(|(_, rest)| u16_le(rest)).unwrap_or(0);
    (affected, status)
}

/// Length-encoded integer.
fn lenenc(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    let width = match first {
        0..=0xFA => return Some((u64::from(first), rest)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    let mut buf = [0u8; 8];
    for (slot, b) in buf.iter_mut().zip(rest.get(..width)?) {
        *slot = *b;
    }
    Some((u64::from_le_bytes(buf), rest.get(width..)?))
}

fn u16_le(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?))
}

fn u32_le(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn remember(map: &mut Vec<(u32, Analysis)>, id: u32, analysis: Analysis) {
    map.retain(|(i, _)| *i != id);
    if map.len() >= MAX_STATEMENTS {
        map.remove(0);
    }
    map.push((id, analysis));
}

impl DbParser for MysqlParser {
    fn push(&mut self, side: Side, seg: &Segment<'_>, out: &mut Vec<DbCall>) {
        if self.phase == Phase::Encrypted {
            return;
        }
        match side {
            Side::Client => self.client_segment(seg),
            Side::Server => self.server_segment(seg, out),
        }
    }

    fn finish(&mut self, _out: &mut Vec<DbCall>) {
        self.drop_pending();
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }

    fn tls_started(&mut self) {
        if self.phase == Phase::Encrypted {
            // Both sides stopped at a packet boundary: the SSL request and the greeting.
            self.phase = Phase::Handshake;
        } else {
            // The SSL request went unseen: where the plaintext stands is unknown.
            self.lose_sync(0);
        }
    }
}

#[cfg(test)]
mod tests;
