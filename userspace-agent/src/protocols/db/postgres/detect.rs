//! Recognising PostgreSQL bytes: a connection's first client message ([`sniff`]), whole
//! client messages mid-stream ([`sniff_mid_stream`]), and a server message header where
//! the server side resyncs.

use crate::protocols::Segment;
use crate::protocols::db::Side;
use crate::protocols::db::framing::cstr;

/// Protocol 3.x in a startup message (major 3 in the high 16 bits).
const PROTOCOL_3: u32 = 3 << 16;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Largest startup message accepted (the server's own limit is 10 000 bytes).
pub(super) const MAX_STARTUP: u32 = 10_000;
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
pub(super) enum StartupKind {
    Startup,
    Ssl,
    GssEnc,
    Cancel,
}

pub(super) fn startup_kind(bytes: &[u8]) -> Option<StartupKind> {
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

/// A server segment starting with a whole header of a server message type.
pub(super) fn server_boundary(seg: &Segment<'_>) -> bool {
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
