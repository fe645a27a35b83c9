//! Prometheus text exposition format 0.0.4 from a [`Snapshot`], with the
//! OpenTelemetry-to-Prometheus translation rules:
//!
//! - names: characters outside `[a-zA-Z0-9_:]` become `_` (`http.server.request.duration`
//!   -> `http_server_request_duration`), then the unit suffix (`s` -> `_seconds`), then
//!   `_total` for monotonic sums; suffixes already present are not repeated;
//! - attribute keys become label names the same way (`server.address` -> `server_address`);
//! - the resource becomes `job` (`service.namespace/service.name`) and `instance`
//!   (`service.instance.id`), and its other attributes go to one `target_info` series
//!   per (job, instance);
//! - histograms become `_bucket{le=..}` (cumulative, ending with `le="+Inf"`), `_sum`,
//!   `_count`.
//!
//! Series that end up with identical labels (two resources equal in job and instance)
//! are merged, so the output never has duplicate samples.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt::Write as _;

use super::histogram::Histogram;
use super::snapshot::{MetricData, Snapshot};
use crate::spans::{Resource, Value};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(String, String)>;

#[derive(Debug)]
enum Series {
    Number(u64),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    series: BTreeMap<Labels, Series>,
}

/// Renders every metric of `snapshot` in the text exposition format.
pub fn render(snapshot: &Snapshot) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut used_resources = vec![false; snapshot.resources.len()];
    let resource_labels: Vec<Labels> = snapshot.resources.iter().map(|r| job_instance(r)).collect();

    for metric in &snapshot.metrics {
        let (kind, monotonic) = match &metric.data {
            MetricData::Sum { monotonic, .. } => {
                (if *monotonic { "counter" } else { "gauge" }, *monotonic)
            }
            MetricData::Gauge(_) => ("gauge", false),
            MetricData::Histogram(_) => ("histogram", false),
        };
        let name = metric_name(&metric.name, &metric.unit, monotonic);
        let family = families.entry(name).or_insert_with(|| Family {
            help: metric.description.clone(),
            kind,
            series: BTreeMap::new(),
        });
        if family.kind != kind {
            log::warn!(
                "metric {} clashes with another of a different type",
                metric.name
            );
            continue;
        }
        let mut add = |resource: usize, attrs: &super::attrs::Attrs, value: Series| {
            let mut labels = resource_labels.get(resource).cloned().unwrap_or_default();
            if let Some(used) = used_resources.get_mut(resource) {
                *used = true;
            }
            labels.extend(attrs.iter().map(|(k, v)| (label_name(k), v.to_string())));
            match family.series.entry(labels) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(mut slot) => merge(slot.get_mut(), value),
            }
        };
        match &metric.data {
            MetricData::Sum { points, .. } | MetricData::Gauge(points) => {
                for p in points {
                    add(p.resource, &p.attrs, Series::Number(p.value));
                }
            }
            MetricData::Histogram(points) => {
                for p in points {
                    add(p.resource, &p.attrs, Series::Histogram(p.value.clone()));
                }
            }
        }
    }

    let mut out = String::new();
    write_target_info(&mut out, snapshot, &used_resources, &resource_labels);
    for (name, family) in &families {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        for (labels, series) in &family.series {
            match series {
                Series::Number(v) => {
                    let _ = writeln!(out, "{name}{} {v}", label_block(labels, None));
                }
                Series::Histogram(h) => write_histogram(&mut out, name, labels, h),
            }
        }
    }
    out
}

/// Sums a repeated series into the first one.
fn merge(slot: &mut Series, value: Series) {
    match (slot, value) {
        (Series::Number(a), Series::Number(b)) => *a = a.saturating_add(b),
        (Series::Histogram(a), Series::Histogram(b)) => {
            a.merge(&b);
        }
        // Cannot happen: a family has one type.
        _ => {}
    }
}

fn write_histogram(out: &mut String, name: &str, labels: &Labels, h: &Histogram) {
    for (upper, count) in h.cumulative() {
        let le = format_float(upper);
        let _ = writeln!(
            out,
            "{name}_bucket{} {count}",
            label_block(labels, Some(&le))
        );
    }
    let block = label_block(labels, None);
    let _ = writeln!(out, "{name}_sum{block} {}", format_float(h.sum()));
    let _ = writeln!(out, "{name}_count{block} {}", h.count());
}

fn write_target_info(out: &mut String, snapshot: &Snapshot, used: &[bool], labels: &[Labels]) {
    let mut targets: BTreeMap<&Labels, Labels> = BTreeMap::new();
    for (i, resource) in snapshot.resources.iter().enumerate() {
        if !used.get(i).copied().unwrap_or(false) {
            continue;
        }
        let Some(ji) = labels.get(i) else { continue };
        let mut all = ji.clone();
        all.extend(
            resource
                .attributes
                .iter()
                .filter(|kv| {
                    !matches!(
                        kv.key.as_ref(),
                        "service.name" | "service.namespace" | "service.instance.id"
                    )
                })
                .map(|kv| (label_name(&kv.key), kv.value.to_string())),
        );
        targets.insert(ji, all);
    }
    if targets.is_empty() {
        return;
    }
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
    for all in targets.values() {
        let _ = writeln!(out, "target_info{} 1", label_block(all, None));
    }
}

/// `job` and `instance` of a resource, as the OTel Prometheus exporters set them.
fn job_instance(resource: &Resource) -> Labels {
    let job = match resource.get("service.namespace") {
        Some(ns) => format!("{ns}/{}", resource.service_name),
        None => resource.service_name.clone(),
    };
    let mut labels = vec![("job".to_owned(), job)];
    if let Some(instance) = resource.get("service.instance.id") {
        let instance = match instance {
            Value::Str(s) => s.to_string(),
            other => other.to_string(),
        };
        labels.push(("instance".to_owned(), instance));
    }
    labels
}

/// `{k="v",...}`, with `le` last when given; empty when there are no labels.
fn label_block(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut s = String::from("{");
    let le = le.map(|v| ("le", v));
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(le);
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape_label_value(v));
    }
    s.push('}');
    s
}

/// The Prometheus name of an OTel metric.
pub fn metric_name(name: &str, unit: &str, monotonic_sum: bool) -> String {
    let mut out = sanitize(name);
    if let Some(suffix) = unit_suffix(unit)
        && !out.ends_with(&format!("_{suffix}"))
        && !out.contains(&format!("_{suffix}_"))
    {
        out.push('_');
        out.push_str(&suffix);
    }
    if monotonic_sum && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

/// The Prometheus label name of an attribute key.
pub fn label_name(key: &str) -> String {
    let s: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else {
        s
    }
}

/// Characters outside `[a-zA-Z0-9_:]` become `_`, runs of `_` collapse, a leading
/// digit gets a `_` prefix.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// The name suffix of a UCUM unit; `None` for dimensionless units and annotations.
fn unit_suffix(unit: &str) -> Option<String> {
    let unit = unit.trim();
    let word = match unit {
        "" | "1" => return None,
        u if u.starts_with('{') => return None,
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "%" => "percent",
        other => return Some(sanitize(other)),
    };
    Some(word.to_owned())
}

/// Label values escape `\`, `"` and newlines.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes `\` and newlines.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::sinks::test_support::resource;
    use crate::span_metrics::attrs::Attrs;
    use crate::span_metrics::snapshot::{MetricSnapshot, Point};
    use crate::spans::KeyValue;

    /// One sample line, parsed back.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: HashMap<String, String>,
        value: f64,
    }

    /// A small parser of the text format: HELP/TYPE per family, then samples.
    fn parse(text: &str) -> (HashMap<String, (String, String)>, Vec<Sample>) {
        let mut meta: HashMap<String, (String, String)> = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has text");
                meta.entry(name.into()).or_default().0 = help.into();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
                meta.entry(name.into()).or_default().1 = kind.into();
            } else {
                samples.push(parse_sample(line));
            }
        }
        (meta, samples)
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = line[..name_end].to_owned();
        let mut labels = HashMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            loop {
                let (_, c) = chars.next().expect("unterminated labels");
                match c {
                    '}' => break,
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("unterminated value").1 {
                                '\\' => match chars.next().expect("escape").1 {
                                    'n' => value.push('\n'),
                                    c => value.push(c),
                                },
                                '"' => break,
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            let consumed = chars.next().map_or(body.len(), |(i, _)| i);
            rest = &body[consumed..];
        }
        let value = match rest.trim() {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("numeric value"),
        };
        Sample {
            name,
            labels,
            value,
        }
    }

    fn snapshot() -> Snapshot {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.record(0.05);
        h.record(0.5);
        h.record(3.0);
        let mut svc = (*resource("checkout")).clone();
        svc.attributes
            .push(KeyValue::new("service.instance.id", "host:42:1"));
        svc.attributes.push(KeyValue::new("process.pid", 42));
        Snapshot {
            start_unix_nano: 1,
            time_unix_nano: 2,
            resources: vec![Arc::new(svc)],
            metrics: vec![
                MetricSnapshot {
                    name: "http.server.request.duration".into(),
                    description: "Duration of HTTP server requests.".into(),
                    unit: "s".into(),
                    data: MetricData::Histogram(vec![Point {
                        resource: 0,
                        attrs: Attrs::new()
                            .with("http.request.method", "GET")
                            .with("server.address", "we\"ird\\host\nname"),
                        value: h,
                    }]),
                },
                MetricSnapshot {
                    name: "sonde.events_read".into(),
                    description: "ring-buffer records read".into(),
                    unit: String::new(),
                    data: MetricData::Sum {
                        monotonic: true,
                        points: vec![Point {
                            resource: 0,
                            attrs: Attrs::new(),
                            value: 7,
                        }],
                    },
                },
                MetricSnapshot {
                    name: "traces_service_graph_request_total".into(),
                    description: "edges".into(),
                    unit: String::new(),
                    data: MetricData::Sum {
                        monotonic: true,
                        points: vec![],
                    },
                },
            ],
        }
    }

    #[test]
    fn names_follow_the_otel_translation_rules() {
        assert_eq!(
            metric_name("http.server.request.duration", "s", false),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("sonde.events_read", "", true),
            "sonde_events_read_total"
        );
        assert_eq!(
            metric_name("traces_service_graph_request_total", "1", true),
            "traces_service_graph_request_total"
        );
        assert_eq!(
            metric_name("traces_service_graph_request_client_seconds", "s", false),
            "traces_service_graph_request_client_seconds"
        );
        assert_eq!(metric_name("x.size", "By", false), "x_size_bytes");
        assert_eq!(metric_name("q", "{request}", true), "q_total");
        assert_eq!(label_name("server.address"), "server_address");
        assert_eq!(label_name("0x"), "key_0x");
    }

    #[test]
    fn rendered_text_parses_back_with_types_buckets_and_escapes() {
        let text = render(&snapshot());
        let (meta, samples) = parse(&text);
        let hist = "http_server_request_duration_seconds";
        assert_eq!(
            meta.get(hist),
            Some(&(
                "Duration of HTTP server requests.".into(),
                "histogram".into()
            ))
        );
        assert_eq!(meta["sonde_events_read_total"].1, "counter");
        assert_eq!(meta["target_info"].1, "gauge");

        let get = |name: &str, le: Option<&str>| {
            samples
                .iter()
                .find(|s| s.name == name && s.labels.get("le").map(String::as_str) == le)
                .unwrap_or_else(|| panic!("{name} {le:?} in\n{text}"))
        };
        let inf = get(&format!("{hist}_bucket"), Some("+Inf"));
        let count = get(&format!("{hist}_count"), None);
        assert_eq!(inf.value, count.value);
        assert_eq!(count.value, 3.0);
        assert_eq!(get(&format!("{hist}_bucket"), Some("0.1")).value, 1.0);
        assert_eq!(get(&format!("{hist}_bucket"), Some("1")).value, 2.0);
        assert!((get(&format!("{hist}_sum"), None).value - 3.55).abs() < 1e-9);
        assert_eq!(count.labels["server_address"], "we\"ird\\host\nname");
        assert_eq!(count.labels["http_request_method"], "GET");
        assert_eq!(count.labels["job"], "checkout");
        assert_eq!(count.labels["instance"], "host:42:1");
        assert_eq!(get("sonde_events_read_total", None).value, 7.0);

        let target = get("target_info", None);
        assert_eq!(target.labels["process_pid"], "42");
        assert!(!target.labels.contains_key("service_name"));
        assert!(text.contains(r#"server_address="we\"ird\\host\nname""#));
        // A family with no series still declares itself.
        assert_eq!(meta["traces_service_graph_request_total"].1, "counter");
    }

    #[test]
    fn resources_equal_in_job_and_instance_merge_into_one_series() {
        let mut snap = snapshot();
        let mut other = (*snap.resources[0]).clone();
        other.attributes.push(KeyValue::new("extra", "x"));
        snap.resources.push(Arc::new(other));
        let MetricData::Sum { points, .. } = &mut snap.metrics[1].data else {
            panic!("sum");
        };
        points.push(Point {
            resource: 1,
            attrs: Attrs::new(),
            value: 3,
        });
        let (_, samples) = parse(&render(&snap));
        let events: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "sonde_events_read_total")
            .collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].value, 10.0);
        assert_eq!(
            samples.iter().filter(|s| s.name == "target_info").count(),
            1
        );
    }
}
