//! Removing secrets from command lines before they become span attributes.
//!
//! Command lines are exported to a tracing backend that many people can read, and
//! programs are often started with credentials in their arguments. Over-redacting a
//! harmless value is cheap; leaking a password is not, so the rules are generous.

/// What replaces a secret.
pub const MASK: &str = "****";

/// Words that mark an argument name as holding a secret (compared per word,
/// case-insensitively; see [`is_sensitive_key`]).
const SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
];
/// Two-word names ("api_key", "x-api-key", "aws_access_key_id").
const SENSITIVE_PAIRS: &[(&str, &str)] = &[("api", "key"), ("access", "key"), ("private", "key")];
/// Suffixes caught even without a separator ("dbPassword", "authToken").
const SENSITIVE_SUFFIXES: &[&str] = &["password", "passwd", "secret", "token", "apikey"];

/// Redacts a command line (argv):
/// - `name=value` where `name` looks sensitive (`--password=x`, `DB_PASSWORD=x`,
///   `api_key=x`, `--auth-token=x`, `?token=x` in a URL): the value becomes `****`;
/// - `--name value` (an option with a sensitive name and no `=`): the next argument
///   becomes `****`;
/// - URL userinfo with a password anywhere in an argument:
///   `scheme://user:pass@host` -> `scheme://user:****@host`.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for arg in args {
        if std::mem::take(&mut mask_next) {
            out.push(MASK.to_owned());
            continue;
        }
        if let Some((key, value)) = arg.split_once('=') {
            if is_sensitive_key(key) {
                if value.is_empty() {
                    out.push(arg.clone());
                } else {
                    out.push(format!("{key}={MASK}"));
                }
                continue;
            }
        } else if arg.starts_with('-') && is_sensitive_key(arg) {
            mask_next = true;
        }
        out.push(redact_url_userinfo(arg));
    }
    out
}

/// Whether an argument name (`--db-password`, `API_KEY`, `authToken`) names a secret.
pub fn is_sensitive_key(key: &str) -> bool {
    let words: Vec<String> = key
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let word_hit = words.iter().any(|w| SENSITIVE_WORDS.contains(&w.as_str()));
    let pair_hit = words
        .windows(2)
        .any(|pair| SENSITIVE_PAIRS.contains(&(pair[0].as_str(), pair[1].as_str())));
    let suffix_hit = words
        .last()
        .is_some_and(|w| SENSITIVE_SUFFIXES.iter().any(|s| w.ends_with(s)));
    word_hit || pair_hit || suffix_hit
}

/// Masks the password of every `scheme://user:password@host` in `s`.
pub fn redact_url_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        // The authority ends at the path, query, fragment or whitespace; the last
        // '@' in it ends the userinfo (passwords may contain '@' unencoded in the wild).
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        // "a://h1,b://u:p@h2": leave the ':' of the next URL's "://" to the next round.
        let authority_end =
            if after[..authority_end].ends_with(':') && after[authority_end..].starts_with("//") {
                authority_end - 1
            } else {
                authority_end
            };
        let authority = &after[..authority_end];
        match authority.rfind('@').and_then(|at| {
            let colon = authority[..at].find(':')?;
            Some((colon, at))
        }) {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(cmdline: &str) -> String {
        let args: Vec<String> = cmdline.split(' ').map(str::to_owned).collect();
        redact_args(&args).join(" ")
    }

    #[test]
    fn equals_form() {
        assert_eq!(
            redact("app --password=hunter2 --port=80"),
            "app --password=**** --port=80"
        );
        assert_eq!(redact("app --token=abc -v"), "app --token=**** -v");
        assert_eq!(
            redact("app password=x passwd=y secret=z token=t apikey=k api_key=k2"),
            "app password=**** passwd=**** secret=**** token=**** apikey=**** api_key=****"
        );
        assert_eq!(
            redact("app --PASSWORD=x Token=y"),
            "app --PASSWORD=**** Token=****"
        );
        assert_eq!(
            redact("app --db-password=x DB_PASSWORD=y --client-secret=z"),
            "app --db-password=**** DB_PASSWORD=**** --client-secret=****"
        );
        assert_eq!(
            redact("app --x-api-key=k AWS_SECRET_ACCESS_KEY=s --dbPassword=p --authToken=t"),
            "app --x-api-key=**** AWS_SECRET_ACCESS_KEY=**** --dbPassword=**** --authToken=****"
        );
        assert_eq!(redact("app --password=a=b"), "app --password=****");
    }

    #[test]
    fn next_arg_form() {
        assert_eq!(
            redact("app --password xyz --port 80"),
            "app --password **** --port 80"
        );
        assert_eq!(redact("app -token abc"), "app -token ****");
        assert_eq!(
            redact("app --api-key k --user bob"),
            "app --api-key **** --user bob"
        );
        assert_eq!(
            redact("app --password"),
            "app --password",
            "nothing follows"
        );
        // A bare word is not an option: its neighbour is left alone.
        assert_eq!(redact("app password reset"), "app password reset");
    }

    #[test]
    fn harmless_lookalikes_kept() {
        assert_eq!(
            redact("app --max-tokens=100 --tokenizer=bert --user=bob"),
            "app --max-tokens=100 --tokenizer=bert --user=bob"
        );
        assert_eq!(
            redact("app --password= --keyfile=/k"),
            "app --password= --keyfile=/k"
        );
    }

    #[test]
    fn url_userinfo() {
        assert_eq!(
            redact("app postgres://user:s3cret@db:5432/app"),
            "app postgres://user:****@db:5432/app"
        );
        assert_eq!(
            redact("app --db=mysql://root:p@ss@db/x?ssl=1"),
            "app --db=mysql://root:****@db/x?ssl=1"
        );
        assert_eq!(
            redact("app https://user@host/x ssh://git@github.com"),
            "app https://user@host/x ssh://git@github.com",
            "no password, nothing to hide"
        );
        assert_eq!(
            redact("app http://host:8080/a@b"),
            "app http://host:8080/a@b",
            "'@' in path"
        );
        assert_eq!(
            redact("app --urls=redis://:pw@r1,amqp://u:pw@r2/"),
            "app --urls=redis://:****@r1,amqp://u:****@r2/"
        );
        assert_eq!(redact("app http://a:b@h"), "app http://a:****@h");
        assert_eq!(redact("app ://"), "app ://");
        assert_eq!(redact("app a://h1,b://u:p@h2"), "app a://h1,b://u:****@h2");
        assert_eq!(redact("app a://x:y@h1,b://h2"), "app a://x:****@h1,b://h2");
    }

    #[test]
    fn query_token_in_url() {
        assert_eq!(
            redact("curl https://h/cb?token=abc"),
            "curl https://h/cb?token=****"
        );
    }

    #[test]
    fn unicode_safe() {
        assert_eq!(
            redact("app é://ü:ß@h pässword=ö"),
            "app é://ü:****@h pässword=ö"
        );
    }
}
