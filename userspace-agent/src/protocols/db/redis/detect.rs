//! Recognising Redis bytes: [`sniff`] for protocol detection, [`command_start`] for the
//! client side's resync on a connection already known to be Redis.

use super::resp;
use crate::protocols::db::Side;

/// Commands trusted by [`sniff`] when sent inline (upper-case only: lower-case lines are
/// memcached's, and `GET / HTTP/1.1` is refused separately).
const INLINE_COMMANDS: [&[u8]; 24] = [
    b"PING", b"ECHO", b"GET", b"SET", b"DEL", b"EXISTS", b"INCR", b"DECR", b"KEYS", b"TTL",
    b"EXPIRE", b"HGET", b"HSET", b"HGETALL", b"LPUSH", b"RPUSH", b"LRANGE", b"SADD", b"MGET",
    b"SELECT", b"INFO", b"AUTH", b"HELLO", b"QUIT",
];

/// True when these first bytes a connection carried on `side` look like Redis.
///
/// Client: a RESP array of bulk strings (`*<n>\r\n$`), or a whole upper-case inline
/// command line from a short list. Server: one RESP value header whose line is well
/// formed (weaker: prefer client bytes). Works at any command boundary, not only at a
/// connection's start.
pub fn sniff(side: Side, bytes: &[u8]) -> bool {
    match side {
        Side::Client => starts_command(bytes),
        Side::Server => starts_reply(bytes),
    }
}

/// `*<count>\r\n$` or a known inline command line.
fn starts_command(bytes: &[u8]) -> bool {
    if let Some(rest) = bytes.strip_prefix(b"*") {
        let Some(end) = rest.iter().position(|&b| b == b'\r').filter(|&e| e <= 7) else {
            return false;
        };
        let count = rest.get(..end).and_then(resp::parse_decimal);
        return count.is_some_and(|n| n > 0) && rest.get(end..end + 3) == Some(b"\r\n$");
    }
    let Some(line_end) = memchr::memmem::find(bytes, b"\r\n") else {
        return false;
    };
    let line = bytes.get(..line_end).unwrap_or_default();
    let word_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let word = line.get(..word_end).unwrap_or_default();
    INLINE_COMMANDS.contains(&word)
        && memchr::memmem::find(line, b" HTTP/").is_none()
        && line.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
}

/// One RESP value header with a well-formed line.
fn starts_reply(bytes: &[u8]) -> bool {
    let Some((&kind, rest)) = bytes.split_first() else {
        return false;
    };
    let Some(end) = memchr::memmem::find(rest, b"\r\n") else {
        return false;
    };
    let line = rest.get(..end).unwrap_or_default();
    let digits = |l: &[u8]| l == b"-1" || resp::parse_decimal(l).is_some();
    match kind {
        b'+' => !line.is_empty() && line.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
        b'-' => {
            let word = line.split(|&b| b == b' ').next().unwrap_or_default();
            !word.is_empty() && word.iter().all(|b| b.is_ascii_uppercase())
        }
        b':' => resp::integer(line).is_some(),
        b'$' | b'*' | b'%' | b'~' | b'>' => digits(line),
        b'_' => line.is_empty(),
        b'#' => line == b"t" || line == b"f",
        _ => false,
    }
}

/// Whether `bytes` (the start of a client segment) start a command, on a connection
/// known to be Redis: a RESP command array or any printable inline line. `None`: too
/// few bytes to tell.
pub(super) fn command_start(bytes: &[u8]) -> Option<bool> {
    if bytes.first() == Some(&b'*') {
        if starts_command(bytes) {
            return Some(true);
        }
        let rest = bytes.get(1..).unwrap_or_default();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = rest.get(digits..).unwrap_or_default();
        let could_be = digits <= 7 && b"\r\n$".starts_with(after);
        return if could_be { None } else { Some(false) };
    }
    if !bytes.first()?.is_ascii_alphabetic() {
        return Some(false);
    }
    match memchr::memmem::find(bytes, b"\r\n") {
        Some(end) => Some(
            bytes
                .get(..end)
                .is_some_and(|l| l.iter().all(|&b| b == b' ' || b.is_ascii_graphic())),
        ),
        None => {
            let printable = bytes
                .iter()
                .all(|&b| b == b' ' || b == b'\r' || b.is_ascii_graphic());
            if printable { None } else { Some(false) }
        }
    }
}
