//! The summary as markdown tables (printed, and the page's body) and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use super::config::Config;
use super::summary::Summary;
use super::{TARGET_FULL_OVER_FLOOR, TARGET_FULL_RATIO};
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

/// A count per request for the tables ("" when not measured).
fn per_request(n: Option<f64>) -> String {
    n.map(|v| format!("{v:.2}")).unwrap_or_default()
}

impl Summary {
    pub(super) fn markdown(&self, rounds: u32, seconds: u32) -> String {
        let mut s = String::new();
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
            self.paired_full_none, self.paired_floor_none
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
        self.proxy_markdown(&mut s);
        let _ = writeln!(
            s,
            "\n{rounds} rounds x {seconds} s per configuration, order rotated each round; medians over rounds. wrk errors (non-2xx, socket): {}.",
            self.errors
        );
        s
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

    pub(super) fn json(&self) -> serde_json::Value {
        fn per<T: Clone + Into<serde_json::Value>>(
            m: &BTreeMap<Config, T>,
        ) -> serde_json::Map<String, serde_json::Value> {
            m.iter()
                .map(|(c, v)| (c.key().to_owned(), v.clone().into()))
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
            "ratio_full_none_paired_by_round": self.paired_full_none,
            "ratio_floor_none_paired_by_round": self.paired_floor_none,
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
