//! Scoring one scenario's spans against the ground truth the load knows: request `ID`
//! (`/req/ID` at the front) caused exactly one call (`/down/ID`), so its tree is the front's
//! SERVER span, its CLIENT span for `/down/ID`, and the downstream's SERVER span, in one
//! trace (the incoming one, when the load sent a `traceparent`).

use std::collections::BTreeMap;

use serde_json::Value;

/// OTLP span kinds in sonde's JSON output.
const SERVER: i64 = 2;
const CLIENT: i64 = 3;

/// What one request's tree came out as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every link right, not one of them a guess.
    Exact,
    /// Every link right, the call's parent marked as a guess (`thread_last_read`).
    RightGuess,
    /// The call's parent wrong, marked as a guess.
    WrongGuess,
    /// The call has no parent (a root): not wrong, not linked.
    Unlinked,
    /// A link wrong and given as certain: the worst outcome.
    WrongCertain,
    /// A span missing or duplicated.
    Incomplete,
}

/// The incoming context the load sends with request `id` (`go_fanout load ... ctx`).
pub fn incoming(id: usize) -> (String, String) {
    (
        format!("4bf92f3577b34da6a3ce929d0e0e{id:04x}"),
        format!("00f067aa0ba9{id:04x}"),
    )
}

/// Counts per verdict over a scenario's requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Score {
    pub by_verdict: BTreeMap<&'static str, usize>,
    pub requests: usize,
    /// Downstream requests that carried a `traceparent` (the downstream's SERVER span says
    /// `injected` or `header`): injection coverage.
    pub with_header: usize,
}

impl Score {
    pub fn count(&self, verdict: Verdict) -> usize {
        self.by_verdict.get(verdict.name()).copied().unwrap_or(0)
    }

    /// Requests whose tree is right (exact, or right with a guessed link).
    pub fn right(&self) -> usize {
        self.count(Verdict::Exact) + self.count(Verdict::RightGuess)
    }
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Exact => "exact",
            Verdict::RightGuess => "right_guess",
            Verdict::WrongGuess => "wrong_guess",
            Verdict::Unlinked => "unlinked",
            Verdict::WrongCertain => "wrong_certain",
            Verdict::Incomplete => "incomplete",
        }
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn attr_str(span: &Value, key: &str) -> Option<String> {
    let v = attr(span, key)?;
    v["stringValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| v["intValue"].as_str().map(str::to_owned))
        .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
}

fn pid(span: &Value) -> Option<String> {
    let attrs = span["resource"]["attributes"].as_array()?;
    let v = &attrs.iter().find(|a| a["key"] == "process.pid")?["value"];
    v["intValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
}

fn str_field<'a>(span: &'a Value, key: &str) -> &'a str {
    span[key].as_str().unwrap_or_default()
}

/// Scores `spans` for requests `0..requests`; `down_pid` is the downstream process (every
/// other span is the front's: nginx's come from its worker).
pub fn score(spans: &[Value], requests: usize, down_pid: u32, with_ctx: bool) -> Score {
    let down_pid = down_pid.to_string();
    // (is downstream, kind, path) -> spans
    let mut index: BTreeMap<(bool, i64, String), Vec<&Value>> = BTreeMap::new();
    for span in spans {
        let (Some(kind), Some(path)) = (span["kind"].as_i64(), attr_str(span, "url.path")) else {
            continue;
        };
        let down = pid(span).as_deref() == Some(down_pid.as_str());
        index.entry((down, kind, path)).or_default().push(span);
    }
    let one = |down: bool, kind: i64, path: String| match index.get(&(down, kind, path)) {
        Some(found) if found.len() == 1 => Some(found[0]),
        _ => None,
    };
    let mut score = Score {
        requests,
        ..Score::default()
    };
    for id in 0..requests {
        let verdict = match (
            one(false, SERVER, format!("/req/{id}")),
            one(false, CLIENT, format!("/down/{id}")),
            one(true, SERVER, format!("/down/{id}")),
        ) {
            (Some(server), Some(client), Some(down)) => {
                let source = attr_str(down, "sonde.parent.source");
                if matches!(source.as_deref(), Some("injected" | "header")) {
                    score.with_header += 1;
                }
                verdict(server, client, down, with_ctx.then(|| incoming(id)))
            }
            _ => Verdict::Incomplete,
        };
        *score.by_verdict.entry(verdict.name()).or_default() += 1;
    }
    score
}

fn verdict(
    server: &Value,
    client: &Value,
    down: &Value,
    incoming: Option<(String, String)>,
) -> Verdict {
    let guess = attr_str(client, "sonde.parent.source").as_deref() == Some("thread_last_read");
    let client_parent = str_field(client, "parentSpanId");
    if client_parent.is_empty() {
        return Verdict::Unlinked;
    }
    let call_right = client_parent == str_field(server, "spanId")
        && str_field(client, "traceId") == str_field(server, "traceId");
    let server_right = match &incoming {
        Some((trace, span)) => {
            str_field(server, "traceId") == trace && str_field(server, "parentSpanId") == span
        }
        None => str_field(server, "parentSpanId").is_empty(),
    };
    let down_right = str_field(down, "parentSpanId") == str_field(client, "spanId")
        && str_field(down, "traceId") == str_field(client, "traceId");
    match (call_right && server_right && down_right, guess) {
        (true, false) => Verdict::Exact,
        (true, true) => Verdict::RightGuess,
        (false, true) if server_right && down_right => Verdict::WrongGuess,
        _ => Verdict::WrongCertain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(kind: i64, path: &str, pid: u32, ids: (&str, &str, &str), source: &str) -> Value {
        let (trace, id, parent) = ids;
        json!({
            "traceId": trace, "spanId": id, "parentSpanId": parent, "kind": kind,
            "attributes": [
                {"key": "url.path", "value": {"stringValue": path}},
                {"key": "sonde.parent.source", "value": {"stringValue": source}},
            ],
            "resource": {"attributes": [{"key": "process.pid", "value": {"intValue": pid.to_string()}}]},
        })
    }

    fn request(id: usize, client_parent: &str, source: &str) -> Vec<Value> {
        let s = format!("s{id}");
        let c = format!("c{id}");
        vec![
            span(SERVER, &format!("/req/{id}"), 1, ("t", &s, ""), ""),
            span(
                CLIENT,
                &format!("/down/{id}"),
                1,
                ("t", &c, client_parent),
                source,
            ),
            span(
                SERVER,
                &format!("/down/{id}"),
                2,
                ("t", &format!("d{id}"), &c),
                "injected",
            ),
        ]
    }

    #[test]
    fn each_verdict() {
        let mut spans = Vec::new();
        spans.extend(request(0, "s0", "goroutine"));
        spans.extend(request(1, "s1", "thread_last_read"));
        spans.extend(request(2, "s0", "thread_last_read"));
        spans.extend(request(3, "", ""));
        spans.extend(request(4, "s0", "thread"));
        spans.extend(request(5, "s5", "goroutine").into_iter().take(2));
        let score = score(&spans, 6, 2, false);
        for (verdict, n) in [
            (Verdict::Exact, 1),
            (Verdict::RightGuess, 1),
            (Verdict::WrongGuess, 1),
            (Verdict::Unlinked, 1),
            (Verdict::WrongCertain, 1),
            (Verdict::Incomplete, 1),
        ] {
            assert_eq!(score.count(verdict), n, "{verdict:?}");
        }
        assert_eq!(score.right(), 2);
        assert_eq!(
            score.with_header, 5,
            "every complete request's downstream says injected"
        );
    }

    #[test]
    fn an_incoming_context_must_be_continued() {
        let spans = request(7, "s7", "goroutine");
        assert_eq!(score(&spans, 8, 2, true).count(Verdict::WrongCertain), 1);
        let (trace, parent) = incoming(7);
        let mut continued = spans.clone();
        for s in &mut continued {
            s["traceId"] = json!(trace);
        }
        continued[0]["parentSpanId"] = json!(parent);
        assert_eq!(score(&continued, 8, 2, true).count(Verdict::Exact), 1);
    }
}
