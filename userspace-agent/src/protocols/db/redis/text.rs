//! What text of a command or error leaves the parser: `db.query.text` with arguments
//! shown or `?`, credentials always `?`, and error messages without echoed arguments.

use super::command::Partial;
use super::server::MAX_ERROR;
use crate::protocols::db::{ParseOptions, sql};

/// `WRONGTYPE Operation against...` -> (`WRONGTYPE`, message). Redis' convention is an
/// upper-case first word; anything else is a generic `ERR`.
pub(super) fn error_parts(line: &[u8], obfuscate: bool) -> (String, String) {
    let text = String::from_utf8_lossy(line);
    let word = text.split(' ').next().unwrap_or_default();
    let prefix = if !word.is_empty()
        && word.len() <= 32
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        word.to_owned()
    } else {
        "ERR".to_owned()
    };
    let mut message = text.into_owned();
    if obfuscate && let Some(at) = message.find(", with args beginning with:") {
        // Redis echoes the arguments of unknown commands.
        message.truncate(at);
    }
    (prefix, cut(message, MAX_ERROR))
}

/// Cuts `s` to at most `max` bytes on a char boundary.
fn cut(mut s: String, max: usize) -> String {
    s.truncate(sql::cut(&s, max).len());
    s
}

impl Partial {
    /// Index of the first argument shown as `?` even with obfuscation off (credentials);
    /// `usize::MAX` when none is.
    pub(super) fn redact_from(&self, name: &str, sub: Option<&str>) -> usize {
        match (name, sub) {
            ("AUTH", _) => 1,
            ("ACL", _) | ("CONFIG", Some("SET")) => 2,
            ("HELLO" | "MIGRATE", _) => (1..self.args.len())
                .find(|&i| {
                    self.arg_upper(i)
                        .is_some_and(|a| a == "AUTH" || a == "AUTH2")
                })
                .map_or(usize::MAX, |i| i + 1),
            _ => usize::MAX,
        }
    }

    /// `db.query.text`: the name words, then each argument or `?`.
    pub(super) fn text(&self, words: usize, redact_from: usize, opts: ParseOptions) -> String {
        let max = opts.max_query_text;
        let mut text = String::new();
        for i in 0..usize::try_from(self.argc).unwrap_or(usize::MAX) {
            if text.len() > max {
                break;
            }
            if i > 0 {
                text.push(' ');
            }
            let arg = self.args.get(i);
            if i < words {
                let word = arg
                    .map(|a| String::from_utf8_lossy(&a.bytes))
                    .unwrap_or_default();
                text.push_str(&word.to_ascii_uppercase());
            } else if opts.obfuscate_literals || i >= redact_from {
                text.push('?');
            } else {
                match arg {
                    Some(a) => {
                        text.push_str(&String::from_utf8_lossy(&a.bytes));
                        if a.cut {
                            text.push('…');
                        }
                    }
                    None => text.push('…'),
                }
            }
        }
        cut(text, max)
    }
}
