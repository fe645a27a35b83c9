//! PLACEHOLDER: the Postgres wire protocol parser is being written; this file fixes its API.

use super::{DbCall, DbParser, ParseOptions, ParserStats, Side};
use crate::protocols::Segment;

/// True when these first bytes a connection carried on `side` look like this protocol.
pub fn sniff(_side: Side, _bytes: &[u8]) -> bool {
    false
}

/// One connection's Postgres parser.
#[derive(Debug, Default)]
pub struct PostgresParser {
    stats: ParserStats,
}

impl PostgresParser {
    pub fn new(_opts: ParseOptions) -> Self {
        Self::default()
    }
}

impl DbParser for PostgresParser {
    fn push(&mut self, _side: Side, _seg: &Segment<'_>, _out: &mut Vec<DbCall>) {}
    fn finish(&mut self, _out: &mut Vec<DbCall>) {}
    fn stats(&self) -> ParserStats {
        self.stats
    }
}
