//! The summary as markdown tables (printed, and the page's body) and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use super::config::Config;
use super::summary::{Spread, Summary};
use super::{TARGET_FULL_OVER_FLOOR, TARGET_FULL_RATIO, TARGET_TLS_RUNS_PER_CALL};
use crate::util;

/// A share as a percentage for the tables ("" when not measured).
fn percent(share: Option<f64>) -> String {
    share
        .map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_default()
}

/// A per-request CPU time for the tables ("" when not measured).
fn micros(us: Option<f64>) -> String {
    us.map(|v| format!("{v:.2} µs")).unwrap_or_default()
}

/// A median over rounds and its range ("" when not measured).
fn spread(x: Option<&Spread>, decimals: usize, unit: &str) -> String {
    x.map(|x| {
        format!(
            "{:.decimals$}{unit} ({:.decimals$} to {:.decimals$})",
            x.median, x.min, x.max
        )
    })
    .unwrap_or_default()
}

/// A count per request for the tables ("" when not measured).
fn per_request(n: Option<f64>) -> String {
    n.map(|v| format!("{v:.2}")).unwrap_or_default()
}

impl Summary {
    /// The tables of the legs that ran.
    pub(super) fn markdown(&self, rounds: u32, seconds: u32) -> String {
        let mut s = String::new();
        let ran = |configs: &[Config]| configs.iter().all(|c| self.ran(*c));
        if ran(&Config::DIRECT) {
            self.direct_markdown(&mut s);
        }
        if ran(&Config::PROXY) {
            self.proxy_markdown(&mut s);
        }
        if ran(&Config::HTTPS) {
            self.https_markdown(&mut s);
        }
        let _ = writeln!(
            s,
            "\n{rounds} rounds x {seconds} s per configuration, order rotated each round; medians over rounds. wrk errors (non-2xx, socket): {}.",
            self.errors
        );
        s
    }

    /// nginx serving the file itself: the design targets.
    fn direct_markdown(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "| configuration | median req/s | median p99 latency | req/s vs (a) | nginx CPU per request | agent CPU per request | probe runs per request | host CPU idle |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for config in Config::DIRECT {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2} ms | {:.3} | {} | {} | {} | {} |",
                config.label(),
                self.rps[&config],
                self.p99[&config],
                self.ratio(config, Config::None),
                micros(self.server_cpu_us[&config]),
                micros(self.agent_cpu_us[&config]),
                per_request(self.probe_runs(config)),
                percent(self.idle_share[&config]),
            );
        }
        let full = self.ratio(Config::Full, Config::None);
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let _ = writeln!(s, "\n| ratio | value | design target |\n|---|---:|---|");
        let _ = writeln!(
            s,
            "| (b)/(a) floor vs no agent | {:.3} | (the hooks' own cost) |",
            self.ratio(Config::Floor, Config::None)
        );
        let _ = writeln!(
            s,
            "| (c)/(a) full vs no agent | {full:.3} | >= {TARGET_FULL_RATIO:.2}: {} |",
            verdict(full >= TARGET_FULL_RATIO)
        );
        let _ = writeln!(
            s,
            "| (c)/(a) and (b)/(a) paired by round (median of each round's ratio) | {:.3} and {:.3} | (less sensitive to the host's speed drifting between rounds) |",
            self.paired(Config::Full),
            self.paired(Config::Floor)
        );
        let _ = writeln!(
            s,
            "| (c)/(b) full vs floor | {:.3} | |",
            self.ratio(Config::Full, Config::Floor)
        );
        let _ = writeln!(
            s,
            "| (f)/(a) floor of the syscall tracepoints vs no agent | {:.3} | (the naive hooks) |",
            self.ratio(Config::FloorSyscall, Config::None)
        );
        let _ = writeln!(
            s,
            "| (g)/(a) full tracing through syscall tracepoints vs no agent | {:.3} | |",
            self.ratio(Config::FullSyscall, Config::None)
        );
        let _ = writeln!(
            s,
            "| (c)/(g) default hooks vs syscall tracepoints, full tracing | {:.3} | > 1: hooking less pays |",
            self.ratio(Config::Full, Config::FullSyscall)
        );
        let _ = writeln!(
            s,
            "| time per request above (a): floor / full | {:.2} µs / {:.2} µs | |",
            self.time_added_us(Config::Floor),
            self.time_added_us(Config::Full)
        );
        let cost = self.cost_over_floor();
        for (reading, value) in [
            ("time per request (1/throughput)", Some(cost.time)),
            ("CPU per request (nginx + agent)", cost.cpu),
            ("time per request added to (a)", cost.added),
        ] {
            let _ = match value {
                Some(x) => writeln!(
                    s,
                    "| full / floor, {reading} | {x:.2} | <= {TARGET_FULL_OVER_FLOOR}: {} |",
                    verdict(x <= TARGET_FULL_OVER_FLOOR)
                ),
                None => writeln!(
                    s,
                    "| full / floor, {reading} | n/a | <= {TARGET_FULL_OVER_FLOOR}: not computable, the floor costs nothing measurable here |"
                ),
            };
        }
        let full_counters = self.counters(Config::Full);
        let get = |name: &str| full_counters.get(name).copied().unwrap_or(0);
        let lost: Vec<String> = full_counters
            .iter()
            .filter(|(name, value)| **value > 0 && is_loss(name))
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        let hwm = self.full_hwm_kib.map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
        );
        let _ = writeln!(
            s,
            "\nHooks attached by the agent: {}. Agent in full mode: peak RSS (VmHWM) {hwm}; over all full rounds {} spans built \
             for {} requests answered to wrk, {} dropped/lost ({}).",
            self.hooks
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
            get("spans_built"),
            self.requests(Config::Full),
            util::drops(full_counters),
            if lost.is_empty() {
                "none".to_owned()
            } else {
                lost.join(", ")
            },
        );
    }

    /// The proxy configurations: what `traceparent` injection adds to full tracing.
    fn proxy_markdown(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n### Injection (nginx proxying to nginx over keep-alive upstream connections, the proxy traced)\n\n\
             | configuration | median req/s | median p99 latency | req/s vs (d) | proxy CPU per request | agent CPU per request | probe runs per request | host CPU idle |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for config in Config::PROXY {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2} ms | {:.3} | {} | {} | {} | {} |",
                config.label(),
                self.rps[&config],
                self.p99[&config],
                self.ratio(config, Config::ProxyNoInject),
                micros(self.server_cpu_us[&config]),
                micros(self.agent_cpu_us[&config]),
                per_request(self.probe_runs(config)),
                percent(self.idle_share[&config]),
            );
        }
        let added =
            (1.0 / self.rps[&Config::ProxyInject] - 1.0 / self.rps[&Config::ProxyNoInject]) * 1e6;
        let _ = writeln!(
            s,
            "\n| ratio | value |\n|---|---:|\n\
             | (e)/(d) injection vs --no-inject, req/s | {:.3} |\n\
             | (e)/(d) p99 latency | {:.3} |\n\
             | time per request added by injection | {added:.2} µs |",
            self.ratio(Config::ProxyInject, Config::ProxyNoInject),
            self.p99[&Config::ProxyInject] / self.p99[&Config::ProxyNoInject],
        );
        let get = |name: &str| {
            self.counters(Config::ProxyInject)
                .get(name)
                .copied()
                .unwrap_or(0)
        };
        let _ = writeln!(
            s,
            "\nOver all (e) rounds: {} requests answered to wrk, {} upstream requests injected \
             (`inject_done`), {} keep-alive sockets re-enrolled, {} left out (`reenrol_skipped`), \
             {} re-enrolment requests dropped, {} sockets enrolled at connect.",
            self.requests(Config::ProxyInject),
            get("inject_done"),
            get("reenrolled"),
            get("reenrol_skipped"),
            get("reenrol_dropped"),
            get("inject_sockets_enrolled"),
        );
    }

    /// The HTTPS leg: tracing through the TLS library's probes against no agent, against
    /// the floor of empty probes, and against tracing the ciphertext only.
    fn https_markdown(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n### HTTPS (nginx with TLS, keep-alive; wrk over https://)\n\n\
             | configuration | median req/s | median p99 latency | req/s vs (h): median of rounds (range) | nginx CPU per request | agent CPU per request | CPU per request added to (h): median of rounds (range) | probe runs per request | host CPU idle |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for config in Config::HTTPS {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2} ms | {} | {} | {} | {} | {} | {} |",
                config.label(),
                self.rps[&config],
                self.p99[&config],
                if config == config.baseline() {
                    "1.000".to_owned()
                } else {
                    spread(self.by_round_ratio.get(&config), 3, "")
                },
                micros(self.server_cpu_us[&config]),
                micros(self.agent_cpu_us[&config]),
                spread(self.by_round_added_cpu_us.get(&config), 2, " µs"),
                per_request(self.probe_runs(config)),
                percent(self.idle_share[&config]),
            );
        }
        let _ = writeln!(
            s,
            "\n| configuration | TLS calls per request | TLS probe runs per request | TLS probe runs per TLS call | other probe runs per request | time in the probes per request |\n\
             |---|---:|---:|---:|---:|---:|"
        );
        for config in [Config::HttpsFloor, Config::HttpsFull, Config::HttpsNoTls] {
            let Some(p) = self.probes.get(&config) else {
                continue;
            };
            let other = p
                .runs_per_request()
                .zip(p.tls_runs_per_request())
                .map(|(all, tls)| all - tls);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                config.label(),
                per_request(p.tls_calls_per_request()),
                per_request(p.tls_runs_per_request()),
                per_request(p.tls_runs_per_call()),
                per_request(other),
                micros(p.program_us_per_request()),
            );
        }

        let full = self.probes.get(&Config::HttpsFull);
        let per_call = full.and_then(|p| p.tls_runs_per_call());
        let verdict = match per_call {
            Some(n) if n <= TARGET_TLS_RUNS_PER_CALL + 1e-3 => "met",
            Some(_) => "NOT met",
            None => "not counted",
        };
        let added = |c: Config| self.by_round_added_cpu_us.get(&c).map(|s| s.median);
        // The floor's added CPU is the empty hooks' (the socket hooks' costs next to
        // nothing here, see (b)), spread over its TLS probe runs.
        let floor_runs = self
            .probes
            .get(&Config::HttpsFloor)
            .and_then(|p| p.tls_runs_per_request())
            .filter(|n| *n > 0.0);
        let per_empty_run = added(Config::HttpsFloor)
            .zip(floor_runs)
            .map(|(us, runs)| us / runs);
        let calls = full
            .and_then(|p| p.tls_calls_per_request())
            .filter(|n| *n > 0.0);
        let above_floor_per_call = added(Config::HttpsFull)
            .zip(added(Config::HttpsFloor))
            .zip(calls)
            .map(|((full, floor), calls)| (full - floor) / calls);
        let over_floor = self
            .cpu_us(Config::HttpsFull)
            .zip(self.cpu_us(Config::HttpsFloor))
            .map(|(full, floor)| full / floor);
        let _ = writeln!(
            s,
            "\n| HTTPS | value | design target |\n|---|---:|---|\n\
             | (j) TLS probe runs per TLS read or write (entry and return) | {} | <= {TARGET_TLS_RUNS_PER_CALL}, none per byte: {verdict} |\n\
             | (j)/(h) full tracing with TLS probes vs no agent, median of rounds | {:.3} | |\n\
             | (i)/(h) empty probes (floor) vs no agent, median of rounds | {:.3} | |\n\
             | (k)/(h) full tracing without TLS probes (ciphertext through the socket hooks) vs no agent | {:.3} | |\n\
             | CPU per request added to (h): floor / full / --no-tls | {} / {} / {} | |\n\
             | the floor: CPU added per empty TLS probe run ((i)'s added CPU over its TLS probe runs) | {} | |\n\
             | full tracing above the floor, CPU per TLS call ((j) - (i) over (j)'s TLS calls) | {} | |\n\
             | (j)/(i) full tracing over the floor, CPU per request (nginx + agent) | {} | |",
            per_request(per_call),
            self.paired(Config::HttpsFull),
            self.paired(Config::HttpsFloor),
            self.paired(Config::HttpsNoTls),
            micros(added(Config::HttpsFloor)),
            micros(added(Config::HttpsFull)),
            micros(added(Config::HttpsNoTls)),
            micros(per_empty_run),
            micros(above_floor_per_call),
            over_floor.map(|x| format!("{x:.2}")).unwrap_or_default(),
        );
        let counters = self.counters(Config::HttpsFull);
        let get = |name: &str| counters.get(name).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "\nOver all (j) rounds: {} spans built for {} requests answered to wrk, {} dropped/lost, \
             {} TLS calls on no known connection (`tls_unmapped_calls`), {} ciphertext records \
             skipped (`tls_ciphertext_records`). (k) built {} spans: the agent sees ciphertext only.",
            get("spans_built"),
            self.requests(Config::HttpsFull),
            util::drops(counters),
            get("tls_unmapped_calls"),
            get("tls_ciphertext_records"),
            self.counters(Config::HttpsNoTls)
                .get("spans_built")
                .copied()
                .unwrap_or(0),
        );
    }

    pub(super) fn json(&self) -> serde_json::Value {
        fn per<T: Clone + Into<serde_json::Value>>(
            m: &BTreeMap<Config, T>,
        ) -> serde_json::Map<String, serde_json::Value> {
            m.iter()
                .map(|(c, v)| (c.key().to_owned(), v.clone().into()))
                .collect()
        }
        /// Medians and ranges over rounds, and what they are measured against.
        fn spreads(m: &BTreeMap<Config, Spread>) -> serde_json::Map<String, serde_json::Value> {
            m.iter()
                .map(|(c, x)| {
                    let value = json!({
                        "median": x.median, "min": x.min, "max": x.max,
                        "against": c.baseline().key(),
                    });
                    (c.key().to_owned(), value)
                })
                .collect()
        }
        let cost = self.cost_over_floor();
        json!({
            "median_requests_per_sec": per(&self.rps),
            "median_p99_ms": per(&self.p99),
            "median_server_cpu_us_per_request": per(&self.server_cpu_us),
            "median_agent_cpu_us_per_request": per(&self.agent_cpu_us),
            "median_host_idle_share": per(&self.idle_share),
            "probe_runs_per_request": self.probes.iter()
                .map(|(c, p)| (c.key().to_owned(), p.runs_per_request().into()))
                .collect::<serde_json::Map<_, _>>(),
            "ratio_floor_none": self.ratio(Config::Floor, Config::None),
            "ratio_full_none": self.ratio(Config::Full, Config::None),
            "ratio_full_floor": self.ratio(Config::Full, Config::Floor),
            "ratio_full_none_paired_by_round": self.paired(Config::Full),
            "ratio_floor_none_paired_by_round": self.paired(Config::Floor),
            "ratio_floor_syscall_none": self.ratio(Config::FloorSyscall, Config::None),
            "ratio_full_syscall_none": self.ratio(Config::FullSyscall, Config::None),
            "ratio_proxy_inject_no_inject": self.ratio(Config::ProxyInject, Config::ProxyNoInject),
            "proxy_inject_counters_total": self.counters(Config::ProxyInject),
            "full_over_floor_time_per_request": cost.time,
            "full_over_floor_cpu_per_request": cost.cpu,
            "full_over_floor_added_time_per_request": cost.added,
            "target_full_none_min": TARGET_FULL_RATIO,
            "target_full_cost_over_floor_max": TARGET_FULL_OVER_FLOOR,
            "full_agent_vmhwm_kib": self.full_hwm_kib,
            "hooks_attached": self.hooks,
            "full_counters_total": self.counters(Config::Full),
            "https_full_counters_total": self.counters(Config::HttpsFull),
            "paired_by_round": spreads(&self.by_round_ratio),
            "cpu_us_per_request_added_by_round": spreads(&self.by_round_added_cpu_us),
            "target_tls_probe_runs_per_call_max": TARGET_TLS_RUNS_PER_CALL,
            "wrk_errors": self.errors,
        })
    }
}

/// Counters worth showing next to the drops: anything lost or resynchronised.
fn is_loss(name: &str) -> bool {
    ["drop", "timed_out", "evicted", "desync"]
        .iter()
        .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Sample;
    use super::super::probes::{ProbeCounts, Runs};
    use super::*;

    fn sample(config: Config, rps: f64, server: f64, agent: Option<f64>) -> Sample {
        Sample {
            round: 0,
            config,
            rps,
            p99_ms: 1.0,
            errors: 0,
            requests: 1000,
            hooks: None,
            agent_hwm_kib: None,
            server_cpu_us: Some(server),
            agent_cpu_us: agent,
            idle_share: None,
            counters: BTreeMap::new(),
            probes: None,
        }
    }

    fn counted(requests: u64, programs: &[(&str, u64)]) -> Option<ProbeCounts> {
        let programs = programs
            .iter()
            .map(|(name, runs)| {
                let runs = Runs {
                    runs: *runs,
                    run_time_ns: 0,
                };
                ((*name).to_owned(), runs)
            })
            .collect();
        Some(ProbeCounts { requests, programs })
    }

    /// `--https`: the HTTPS tables only, and the floor read per empty probe run.
    #[test]
    fn https_leg_alone() {
        let tls = [
            ("sonde_uprobe_ssl_read", 200),
            ("sonde_uprobe_ssl_write", 100),
            ("sonde_uretprobe_ssl", 300),
            ("sonde_sock_recv", 600),
        ];
        let samples = [
            sample(Config::HttpsNone, 30_000.0, 20.0, None),
            Sample {
                probes: counted(100, &tls),
                ..sample(Config::HttpsFloor, 27_000.0, 26.0, Some(0.0))
            },
            Sample {
                probes: counted(100, &tls),
                ..sample(Config::HttpsFull, 24_000.0, 27.0, Some(2.0))
            },
            Sample {
                probes: counted(100, &[("sonde_sock_recv", 600)]),
                ..sample(Config::HttpsNoTls, 26_000.0, 22.0, Some(1.0))
            },
        ];
        let table = Summary::new(&samples).markdown(1, 5);
        assert!(!table.contains("(a) no agent"), "{table}");
        assert!(!table.contains("Injection"), "{table}");
        assert!(
            table.contains("| (j) HTTPS, full tracing, TLS probes | 3.00 | 6.00 | 2.00 | 6.00 |"),
            "{table}"
        );
        assert!(table.contains("<= 2, none per byte: met"), "{table}");
        // (i) adds 6 µs over 6 TLS probe runs per request: 1 µs each; (j) adds 3 µs more
        // over 3 calls per request.
        let row = |name: &str| {
            table
                .lines()
                .find(|line| line.contains(name))
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            row("per empty TLS probe run").contains("| 1.00 µs |"),
            "{table}"
        );
        assert!(row("CPU per TLS call").contains("| 1.00 µs |"), "{table}");
        assert!(table.contains("6.00 µs / 9.00 µs / 3.00 µs"), "{table}");
    }
}
