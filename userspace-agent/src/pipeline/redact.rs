//! Privacy before anything leaves the agent: secrets in span attributes are redacted
//! here, the one stage every span passes before the sinks.
//!
//! URL queries keep their keys and lose every value (`token=REDACTED`): values carry
//! tokens, emails, session IDs. Two kinds of redaction happen earlier, on purpose, and
//! never reach this stage unredacted: database query literals (only the parser knows
//! which bytes are literals, `protocols/db/sql.rs`) and process command lines (read into
//! the shared process resource, `process/redact.rs`).

use super::{Stage, Verdict};
use crate::spans::{Span, Value};

/// Query values can carry secrets (tokens, emails): keep keys, redact every value.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{k}=REDACTED"),
            None => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The URL with the values of its query redacted; `None` if it has no query.
fn redact_url(url: &str) -> Option<String> {
    let (base, query) = url.split_once('?')?;
    Some(format!("{base}?{}", redact_query(query)))
}

/// The redaction stage.
#[derive(Debug, Default)]
pub struct Redact;

impl Stage for Redact {
    fn span(&mut self, _tgid: u32, span: &mut Span) -> Verdict {
        for kv in &mut span.attributes {
            // Most attributes are not URLs: one comparison each.
            if !kv.key.starts_with("url.") {
                continue;
            }
            let redacted = match (kv.key.as_ref(), &kv.value) {
                ("url.query", Value::Str(q)) => Some(redact_query(q)),
                ("url.full", Value::Str(url)) => redact_url(url),
                _ => None,
            };
            if let Some(r) = redacted {
                kv.value = r.into();
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted_keys_kept() {
        assert_eq!(
            redact_query("a=1&token=s3cr3t&flag"),
            "a=REDACTED&token=REDACTED&flag"
        );
        assert_eq!(redact_query(""), "");
    }

    #[test]
    fn urls_keep_everything_but_query_values() {
        assert_eq!(
            redact_url("http://api:8080/x?token=abc&y").as_deref(),
            Some("http://api:8080/x?token=REDACTED&y")
        );
        assert_eq!(redact_url("http://api:8080/x"), None);
    }
}
