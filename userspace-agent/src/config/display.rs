//! `sonde config`: the effective configuration as TOML, each value annotated with its
//! source; header values and URL credentials are masked.

use std::fmt::Write as _;

use super::{OtlpConfig, OtlpSettings, Source};

const MASK: &str = "****";

/// The whole effective configuration, ready to print.
pub fn render(config: &OtlpSettings) -> String {
    let mut out = String::from(
        "# sonde: effective configuration (precedence: flag > env > file > default)\n",
    );
    match &config.file {
        Some(p) => {
            let _ = writeln!(out, "# config file: {}", p.display());
        }
        None => out.push_str("# config file: none (--config PATH)\n"),
    }
    out.push('\n');
    out.push_str(&render_otlp(&config.traces));
    out
}

/// The `[otlp]` section.
pub fn render_otlp(c: &OtlpConfig) -> String {
    let headers = if c.headers.value.is_empty() {
        "{}".to_owned()
    } else {
        let items: Vec<String> = c
            .headers
            .value
            .iter()
            .map(|(k, _)| format!("{} = \"{MASK}\"", toml_key(k)))
            .collect();
        format!("{{ {} }}", items.join(", "))
    };
    let certificate = c.certificate.as_ref().map_or_else(
        || (String::new(), Source::Default),
        |p| (quote(&p.value.display().to_string()), p.source.clone()),
    );
    let rows: Vec<(&str, String, &Source)> = vec![
        ("enabled", c.enabled.value.to_string(), &c.enabled.source),
        (
            "endpoint",
            quote(&mask_url(&c.endpoint.value)),
            &c.endpoint.source,
        ),
        (
            "protocol",
            quote(&c.protocol.value.to_string()),
            &c.protocol.source,
        ),
        ("headers", headers, &c.headers.source),
        (
            "timeout",
            c.timeout.value.as_millis().to_string(),
            &c.timeout.source,
        ),
        (
            "compression",
            quote(&c.compression.value.to_string()),
            &c.compression.source,
        ),
        ("certificate", certificate.0, &certificate.1),
    ];
    let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = String::from("[otlp]\n");
    for (key, value, source) in rows {
        let line = if value.is_empty() {
            let unset = format!("# {key} (not set)");
            format!("{unset:<w$}", w = value_width + 14)
        } else {
            format!("{key:<11} = {value:<value_width$}")
        };
        let unit = if key == "timeout" { " (ms)" } else { "" };
        let _ = writeln!(out, "{line}  # {source}{unit}");
    }
    out
}

/// Replaces the userinfo of a URL (`user:password@`) with `****@`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{MASK}@{host}{path}"),
        None => url.to_owned(),
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_owned()
    } else {
        quote(k)
    }
}
