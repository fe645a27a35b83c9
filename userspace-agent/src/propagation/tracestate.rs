//! W3C `tracestate` (https://www.w3.org/TR/trace-context/#tracestate-header): vendor
//! entries that travel with a `traceparent`, kept on the span (OTLP `Span.trace_state`).
//!
//! `list-member *( OWS "," OWS list-member )`, `list-member = key "=" value`. Several
//! header fields form one list, joined in order. A list that cannot be parsed is
//! discarded whole, as the specification asks; one longer than the 512 characters every
//! vendor must propagate loses its last members, so memory per span stays bounded.

/// Most list members the specification allows.
const MAX_MEMBERS: usize = 32;
/// Length every vendor must propagate; longer lists are cut at a member boundary.
const MAX_LEN: usize = 512;
/// Longest key (`simple-key` or `tenant@system`) and value.
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 256;

fn valid_key(key: &str) -> bool {
    let ok = |c: u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@');
    key.len() <= MAX_KEY
        && key
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key.bytes().all(ok)
        && key.bytes().filter(|&c| c == b'@').count() <= 1
}

fn valid_value(value: &str) -> bool {
    // chr = %x20 / nblk-chr, nblk-chr = %x21-2B / %x2D-3C / %x3E-7E; no trailing space.
    !value.is_empty()
        && value.len() <= MAX_VALUE
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

/// The `tracestate` to keep from the header fields `values` (in wire order); `None` when
/// there is none or it is invalid.
pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut out = String::new();
    let mut members = 0;
    let mut cut = false;
    for member in values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
    {
        let (key, value) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(value) {
            return None;
        }
        members += 1;
        if members > MAX_MEMBERS {
            return None;
        }
        let extra = member.len() + usize::from(!out.is_empty());
        if cut || out.len() + extra > MAX_LEN {
            cut = true;
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(member);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specification_examples() {
        assert_eq!(
            from_headers(["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]).as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        // Two fields form one list; OWS around members is dropped.
        assert_eq!(
            from_headers(["rojo=00f067aa0ba902b7", " congo=t61rcWkgMzE ,  "]).as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(
            from_headers(["fw529a3039@dt=abc"]).as_deref(),
            Some("fw529a3039@dt=abc")
        );
    }

    #[test]
    fn invalid_lists_are_discarded_whole() {
        for bad in [
            "Rojo=1",
            "rojo",
            "rojo=",
            "=1",
            "rojo=a=b",
            "a@b@c=1",
            "rojo=1 ,congo=2\u{7f}",
        ] {
            assert_eq!(from_headers([bad]), None, "{bad:?}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(from_headers([many.join(",").as_str()]), None);
        assert_eq!(from_headers([""]), None);
    }

    #[test]
    fn long_lists_keep_their_first_members_within_512() {
        let members: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "v".repeat(40)))
            .collect();
        let kept = from_headers([members.join(",").as_str()]).expect("valid");
        assert!(kept.len() <= MAX_LEN, "{}", kept.len());
        assert!(kept.starts_with("k00="));
        assert!(members.join(",").starts_with(&kept));
        assert!(kept.ends_with(&"v".repeat(40)));
    }
}
