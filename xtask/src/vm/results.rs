//! Reading the checks' output (a serial console, or the host leg's stdout) back into a
//! per-kernel result, and printing the comparison.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// `SONDE-RESULT <check> pass|skip|fail <detail>`
pub const RESULT: &str = "SONDE-RESULT";
/// `SONDE-DATA <name> <one-line JSON>`
pub const DATA: &str = "SONDE-DATA";
/// Printed by vm-tests/init after the checks, with their exit status.
const END: &str = "SONDE-END";

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub check: String,
    /// Passed, or skipped because the kernel lacks what it checks (`skipped` says so).
    pub pass: bool,
    pub skipped: bool,
    pub detail: String,
}

/// Everything one kernel's leg reported.
#[derive(Debug, Default)]
pub struct Leg {
    /// `host 6.18.44` or `vm 6.1.0-56-cloud-amd64`.
    pub name: String,
    pub results: Vec<CheckResult>,
    pub data: BTreeMap<String, Value>,
    /// The guest's init reached its end marker (always true for the host leg).
    pub finished: bool,
    /// Why the leg produced no or partial results (boot failed, timeout...).
    pub problem: Option<String>,
}

/// The `sonde run --hooks` choices `trace_http*` run with: `auto`, then every family.
pub fn hook_choices() -> impl Iterator<Item = &'static str> {
    std::iter::once("auto").chain(
        super::guest::HOOK_FAMILIES
            .iter()
            .map(|(family, _)| *family),
    )
}

/// The checks every leg must report, in order (a `trace_http_*` check may be skipped
/// where the kernel lacks its hook family).
pub const EXPECTED: &[&str] = &[
    "doctor",
    "verifier_matrix",
    "trace_http",
    "trace_tls",
    "trace_http_socket_tracepoints",
    "trace_http_fexit",
    "trace_http_kprobes",
    "trace_http_syscall_tracepoints",
];

impl Leg {
    /// Reads the marker lines out of `text`; other lines (kernel, busybox) are ignored.
    pub fn parse(name: &str, text: &str) -> Self {
        let mut leg = Self {
            name: name.to_owned(),
            ..Self::default()
        };
        for line in text.lines() {
            // Console output can carry a prefix (a kernel message cut short) before a marker.
            if let Some(rest) = after(line, RESULT) {
                let mut parts = rest.splitn(3, ' ');
                let (Some(check), Some(verdict)) = (parts.next(), parts.next()) else {
                    continue;
                };
                leg.results.push(CheckResult {
                    check: check.to_owned(),
                    pass: verdict == "pass" || verdict == "skip",
                    skipped: verdict == "skip",
                    detail: parts.next().unwrap_or_default().to_owned(),
                });
            } else if let Some(rest) = after(line, DATA) {
                if let Some((key, json)) = rest.split_once(' ')
                    && let Ok(value) = serde_json::from_str(json)
                {
                    leg.data.insert(key.to_owned(), value);
                }
            } else if after(line, END).is_some() {
                leg.finished = true;
            }
        }
        leg
    }

    /// All expected checks reported and passed, and nothing went wrong around them.
    pub fn passed(&self) -> bool {
        self.problem.is_none()
            && self.finished
            && EXPECTED
                .iter()
                .all(|name| self.result(name).is_some_and(|r| r.pass))
    }

    pub fn result(&self, check: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.check == check)
    }

    /// `state` of each `sonde doctor` check, by name.
    pub fn doctor_states(&self) -> BTreeMap<String, String> {
        rows(self.data.get("doctor"), "checks", "name", |c| {
            c["state"].as_str().unwrap_or("?").to_owned()
        })
    }

    /// `ok`/`FAIL`/`n/a` of each program in the verifier matrix, with its kind and (when
    /// the kernel says) the instructions its verification took, by program name.
    pub fn matrix(&self) -> BTreeMap<String, String> {
        rows(
            self.data.get("verifier_matrix"),
            "programs",
            "program",
            |p| {
                let kind = p["kind"].as_str().unwrap_or("?");
                let verdict = match p["state"].as_str() {
                    Some("ok") => "ok",
                    Some("unavailable") => "n/a",
                    _ => "FAIL",
                };
                match p["verified_insns"].as_u64() {
                    Some(n) => format!("{verdict} ({kind}, {n} insns)"),
                    None => format!("{verdict} ({kind})"),
                }
            },
        )
    }

    /// Hook families the agent attached with `--hooks choice` (`auto`, `fexit`, ...),
    /// from its startup line.
    pub fn hooks(&self, choice: &str) -> &str {
        self.data
            .get(&format!("hooks_{choice}"))
            .and_then(Value::as_str)
            .unwrap_or("not reported")
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let at = line.find(marker)?;
    line.get(at + marker.len()..)?.strip_prefix(' ')
}

fn rows(
    doc: Option<&Value>,
    list: &str,
    key: &str,
    cell: impl Fn(&Value) -> String,
) -> BTreeMap<String, String> {
    doc.and_then(|d| d[list].as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|item| Some((item[key].as_str()?.to_owned(), cell(item))))
                .collect()
        })
        .unwrap_or_default()
}

/// The report: each leg's verdicts, then doctor checks and the verifier matrix side by
/// side, then the failures' details (verifier log tails included).
pub fn render(legs: &[Leg]) -> String {
    let mut out = String::new();
    for leg in legs {
        let verdict = if leg.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "== {}: {verdict}", leg.name);
        if let Some(problem) = &leg.problem {
            let _ = writeln!(out, "   problem: {problem}");
        }
        for name in EXPECTED {
            match leg.result(name) {
                Some(r) => {
                    let v = match (r.pass, r.skipped) {
                        (true, true) => "skip",
                        (true, false) => "pass",
                        (false, _) => "FAIL",
                    };
                    let _ = writeln!(out, "   {v:<4}  {name:<30} {}", shorten(&r.detail, 400));
                }
                None => {
                    let _ = writeln!(out, "   FAIL  {name:<30} not reported");
                }
            }
        }
        for choice in hook_choices() {
            let _ = writeln!(out, "   hooks ({choice}): {}", leg.hooks(choice));
        }
    }
    let table = |title: &str, per_leg: Vec<BTreeMap<String, String>>, out: &mut String| {
        let names: std::collections::BTreeSet<&String> =
            per_leg.iter().flat_map(BTreeMap::keys).collect();
        let _ = writeln!(out, "\n{title}");
        for name in names {
            let cells: Vec<String> = per_leg
                .iter()
                .map(|m| format!("{:<22}", m.get(name).map_or("-", String::as_str)))
                .collect();
            let _ = writeln!(out, "   {name:<28} {}", cells.join(" "));
        }
    };
    let header: Vec<String> = legs.iter().map(|l| format!("{:<22}", l.name)).collect();
    table(
        &format!("sonde doctor         {}", header.join(" ")),
        legs.iter().map(Leg::doctor_states).collect(),
        &mut out,
    );
    table(
        &format!("verifier matrix      {}", header.join(" ")),
        legs.iter().map(Leg::matrix).collect(),
        &mut out,
    );
    for leg in legs {
        let rejected = leg
            .data
            .get("verifier_matrix")
            .and_then(|m| m["programs"].as_array())
            .into_iter()
            .flatten()
            .filter(|p| p["state"] == "rejected");
        for p in rejected {
            let _ = writeln!(
                out,
                "\n{}: {} rejected: {}",
                leg.name,
                p["program"].as_str().unwrap_or("?"),
                p["error"].as_str().unwrap_or("")
            );
            for line in p["log_tail"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "   | {}", line.as_str().unwrap_or(""));
            }
        }
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", s.get(..at).unwrap_or(s)),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serial console of a real `cargo xtask vm-test` run on Debian's 6.1 kernel
    /// (SeaBIOS escape sequences included).
    const CONSOLE: &str =
        include_str!("../../../vm-tests/fixtures/console-6.1.0-57-cloud-amd64.log");

    #[test]
    fn a_real_console_gives_every_check_and_the_data_blocks() {
        let leg = Leg::parse("vm 6.1", &CONSOLE.replace('\r', ""));
        assert!(leg.finished);
        assert!(leg.passed(), "{}", render(std::slice::from_ref(&leg)));
        let doctor = leg.doctor_states();
        assert_eq!(doctor.get("kprobes").map(String::as_str), Some("ok"));
        assert_eq!(doctor.get("fentry").map(String::as_str), Some("ok"));
        let matrix = leg.matrix();
        assert_eq!(matrix.len(), 43);
        // The TLS library probes, Go's return-site program the largest of them.
        for program in [
            "sonde_uprobe_ssl_write",
            "sonde_uretprobe_ssl",
            "sonde_uretprobe_gnutls",
            "sonde_uprobe_go_tls_write",
            "sonde_uprobe_go_tls_read_return",
        ] {
            let row = matrix.get(program).map(String::as_str).unwrap_or("absent");
            assert!(row.starts_with("ok (uprobe"), "{program}: {row}");
        }
        assert!(
            leg.result("trace_tls")
                .is_some_and(|r| r.pass && !r.skipped),
            "trace_tls passed on 6.1"
        );
        for program in ["sonde_fexit_inet_sendmsg", "sonde_fexit_inet6_recvmsg"] {
            let row = matrix.get(program).map(String::as_str).unwrap_or("absent");
            assert!(row.starts_with("ok (fexit"), "{program}: {row}");
        }
        assert_eq!(
            matrix.get("sonde_sock_send").map(String::as_str),
            Some("n/a (tp_btf)"),
            "6.1 has no sock_send_length tracepoint"
        );
        let sk_msg = matrix
            .get("sonde_sk_msg")
            .map(String::as_str)
            .unwrap_or("absent");
        assert!(sk_msg.starts_with("ok (sk_msg"), "{sk_msg}");
        // 6.1 has no socket tracepoints: auto takes fexit on the socket layer, plus the
        // sendfile hook (sendfile does not reach sendmsg before 6.5).
        assert!(
            leg.hooks("auto").contains("(fexit: 5,"),
            "{}",
            leg.hooks("auto")
        );
        assert!(
            leg.hooks("kprobes").contains("(kprobes: 5,"),
            "{}",
            leg.hooks("kprobes")
        );
        assert!(
            leg.hooks("syscall-tracepoints")
                .contains("(syscall-tracepoints: 9,"),
            "{}",
            leg.hooks("syscall-tracepoints")
        );
        let skipped = leg
            .result("trace_http_socket_tracepoints")
            .expect("reported");
        assert!(skipped.skipped && skipped.pass, "{skipped:?}");
        for check in ["trace_http_fexit", "trace_http_kprobes"] {
            let r = leg.result(check).expect("reported");
            assert!(r.pass && !r.skipped, "{r:?}");
        }
    }

    #[test]
    fn a_console_cut_before_the_end_marker_fails() {
        let cut = CONSOLE
            .find("SONDE-RESULT trace_http")
            .and_then(|at| CONSOLE.get(..at))
            .unwrap();
        let leg = Leg::parse("vm 6.1", cut);
        assert!(!leg.finished);
        assert!(!leg.passed());
        assert!(render(&[leg]).contains("FAIL  trace_http                     not reported"));
    }

    #[test]
    fn a_failed_check_fails_the_leg_and_keeps_its_detail() {
        let text: String = CONSOLE
            .lines()
            .map(|line| {
                if line.starts_with("SONDE-RESULT verifier_matrix pass") {
                    "SONDE-RESULT verifier_matrix fail rejected by the verifier: sonde_sk_msg\n"
                        .to_owned()
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let leg = Leg::parse("vm 6.1", &text);
        assert!(leg.finished && !leg.passed());
        let result = leg.result("verifier_matrix").unwrap();
        assert!(!result.pass);
        assert_eq!(result.detail, "rejected by the verifier: sonde_sk_msg");
    }
}
