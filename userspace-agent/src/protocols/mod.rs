//! Pure protocol parsers: bytes in, messages out. No eBPF, no I/O, no clocks.
//!
//! Every parser follows one connection through the [`Parser`] trait: it is fed the bytes
//! each peer sent, in order, as lossy [`Segment`]s, and reports [`Message`]s. Which
//! protocol a connection speaks is decided once, from its first bytes, by
//! [`registry::detect`] over [`registry::PROTOCOLS`]: adding a protocol is a module here
//! plus one line there. Parsers can be unit tested and fuzzed on their own (`fuzz.rs`).

pub mod db;
#[doc(hidden)]
pub mod fuzz;
pub mod http1;
pub mod parser;
pub mod registry;
pub mod segment;
pub mod tls_record;

pub use parser::{Message, Parser, ParserStats, Reply, Report, Side, StreamId};
pub use registry::{Detection, PROTOCOLS, Protocol};
pub use segment::Segment;

/// A non-negative ASCII decimal that fits in u64 (no sign, no spaces), as protocol length
/// and count fields are written.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}
