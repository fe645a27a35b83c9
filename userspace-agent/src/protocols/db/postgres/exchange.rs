//! One exchange (a request and the responses it waits for) and the [`DbCall`] it becomes:
//! what it refers to, what it expects, its command tags and its error.

use std::collections::VecDeque;

use super::PostgresParser;
use crate::protocols::db::framing::cstr;
use crate::protocols::db::sql::{self, Analysis};
use crate::protocols::db::{DbCall, DbSystem};

/// Longest error message kept.
pub(super) const MAX_ERROR_MESSAGE: usize = 512;

/// What the client's statement refers to.
#[derive(Clone, Debug, Default)]
pub(super) enum Query {
    #[default]
    Unknown,
    Known(Box<Analysis>),
    /// A statement prepared before we saw its `Parse`.
    UnknownStatement(String),
}

/// One response message an extended-protocol request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
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
pub(super) enum UnitKind {
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
pub(super) struct Unit {
    pub(super) kind: UnitKind,
    pub(super) start_ns: u64,
    pub(super) query: Query,
    pub(super) expects: VecDeque<Expect>,
    /// No more client messages join this unit.
    pub(super) closed: bool,
    pub(super) executes: bool,
    pub(super) error: Option<ServerError>,
    pub(super) returned_rows: Option<u64>,
    pub(super) affected_rows: Option<u64>,
}

impl Unit {
    pub(super) fn new(kind: UnitKind, start_ns: u64) -> Self {
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
    pub(super) fn reports(&self) -> bool {
        match self.kind {
            UnitKind::Simple => true,
            UnitKind::Extended => self.executes || self.error.is_some(),
            UnitKind::Sync | UnitKind::Silent => false,
        }
    }

    pub(super) fn add_tag(&mut self, tag: &[u8]) {
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
pub(super) struct ServerError {
    sqlstate: Option<String>,
    message: Option<String>,
}

pub(super) fn parse_error(body: &[u8]) -> ServerError {
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

impl PostgresParser {
    pub(super) fn call(&self, unit: Unit, end_ns: u64) -> DbCall {
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
