//! The OpenTelemetry SDK environment variables a process was started with.

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: `k=v,k2=v2` in the W3C Baggage style.
///
/// Keys and values are trimmed; values are then percent-decoded (`%2C` -> `,`; `+`
/// stays `+`). Malformed pairs are skipped, not fatal, so one typo does not lose the
/// rest: no `=`, empty key, whitespace inside the key, a bad `%` escape, or a
/// decoded value that is not UTF-8. When a key repeats, the last value wins (as in
/// the OTel SDKs). Order of first appearance is kept.
pub fn parse_resource_attributes(raw: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in raw.split(',') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        let Some(value) = percent_decode(value.trim()) else {
            continue;
        };
        match out.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = value,
            None => out.push((key.to_owned(), value)),
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` on a truncated/non-hex escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // from_str_radix alone would accept a sign ("%+f").
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A trimmed, non-empty value, or `None` (the OTel spec treats empty as unset).
pub fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(raw: &str) -> Vec<(String, String)> {
        parse_resource_attributes(raw)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn basic_pairs() {
        assert_eq!(
            attrs("service.name=checkout,deployment.environment=prod"),
            pairs(&[
                ("service.name", "checkout"),
                ("deployment.environment", "prod")
            ])
        );
    }

    #[test]
    fn whitespace_trimmed() {
        assert_eq!(
            attrs("  a = 1 ,\tb=two words  , c=%20padded%20"),
            pairs(&[("a", "1"), ("b", "two words"), ("c", " padded ")])
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            attrs("k=a%2Cb%3Dc,u=caf%C3%A9,plus=a+b,lower=%2f"),
            pairs(&[
                ("k", "a,b=c"),
                ("u", "café"),
                ("plus", "a+b"),
                ("lower", "/")
            ])
        );
    }

    #[test]
    fn malformed_pairs_skipped() {
        assert_eq!(
            attrs("noequals,=nokey,bad=%zz,sign=%+f,trunc=%4,bad key=1,utf=%ff,ok=1,,  ,"),
            pairs(&[("ok", "1")])
        );
    }

    #[test]
    fn edge_values() {
        assert_eq!(
            attrs("empty=,eq=a=b,semi=v;prop"),
            pairs(&[("empty", ""), ("eq", "a=b"), ("semi", "v;prop")])
        );
        assert!(attrs("").is_empty());
    }

    #[test]
    fn duplicate_last_wins_keeps_position() {
        assert_eq!(attrs("a=1,b=2,a=3"), pairs(&[("a", "3"), ("b", "2")]));
    }

    #[test]
    fn non_empty_values() {
        assert_eq!(non_empty(Some("  x ")), Some("x".into()));
        assert_eq!(non_empty(Some("  ")), None);
        assert_eq!(non_empty(None), None);
    }
}
