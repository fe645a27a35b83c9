//! docs/benchmarks.md: the page `--write-docs` writes, the machine it describes, and the
//! hand-written notes it keeps.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use serde_json::json;

use super::{TARGET_FULL_OVER_FLOOR, TARGET_FULL_RATIO, TARGET_TLS_RUNS_PER_CALL};
use crate::util;

pub(super) fn machine(sonde: &Path) -> Result<serde_json::Value> {
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = util::output(Command::new("uname").arg("-r"))?
        .trim()
        .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let nginx = util::output(Command::new("sh").args(["-c", "nginx -v 2>&1"]))?
        .trim()
        .to_owned();
    let agent = util::output(Command::new(sonde).arg("--version"))?
        .trim()
        .to_owned();
    let commit = util::output(
        Command::new("git")
            .current_dir(util::workspace_root())
            .args(["describe", "--always", "--dirty"]),
    )
    .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    Ok(json!({
        "nproc": nproc,
        "kernel": kernel,
        "cpu": cpu,
        "nginx": nginx,
        "agent": format!("{agent} ({})", sonde.display()),
        "workspace_commit": commit,
    }))
}

/// Where docs/benchmarks.md's hand-written notes start: `--write-docs` keeps them.
const KEPT_MARKER: &str = "<!-- kept by cargo xtask bench --write-docs: notes below -->";

/// The hand-written part of the page (from [`KEPT_MARKER`] on), or nothing.
pub(super) fn kept_notes(old_page: &str) -> &str {
    old_page
        .find(KEPT_MARKER)
        .and_then(|at| old_page.get(at..))
        .unwrap_or_default()
}

pub(super) fn docs_page(table: &str, machine: &serde_json::Value, command: &str) -> Result<String> {
    let date = util::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    Ok(format!(
        "# Benchmarks\n\n\
         What Sonde costs a busy server, measured by `cargo xtask bench` (see `xtask/src/bench/`).\n\n\
         nginx with one worker serves a 1 KiB file on loopback; `wrk -t1 -c16 --latency` loads it.\n\
         Eleven configurations alternate, in an order rotated every round:\n\n\
         - **(a) no agent**;\n\
         - **(b) empty probes**: `sonde attach --pid <nginx> --empty-probes`: every hook Sonde uses is \
         attached but each probe returns at once. This is the floor any design with these hooks pays;\n\
         - **(c) full tracing**: `sonde attach --pid <nginx> -o none`: spans are built but not printed;\n\
         - **(f)** and **(g)**: (b) and (c) with `--hooks syscall-tracepoints`, the hooks that work on \
         every kernel and put every process on the slow syscall path: what the default hooks \
         (socket-layer tracepoints where the kernel has them) save;\n\
         - **(d)** and **(e)**: wrk loads a second nginx that proxies to the first over keep-alive \
         upstream connections; the agent traces the proxy with full tracing, (d) with `--no-inject`, \
         (e) with `traceparent` injection into its upstream requests (the default). (e)/(d) is what \
         injection costs;\n\
         - **(h)** to **(k)**, the HTTPS leg (`cargo xtask bench --https` runs it alone): a third \
         nginx serves the file over HTTPS with keep-alive (a throwaway self-signed certificate made \
         with the `openssl` CLI), wrk loads `https://`. (h) no agent; (i) empty probes, the TLS \
         library's uprobes included: the floor of an empty uprobe; (j) full tracing, the plaintext \
         coming from the TLS probes; (k) full tracing with `--no-tls`: the socket hooks see \
         ciphertext only, which makes no spans. wrk loads its own copy of libssl: the uprobes are \
         attached to the library file nginx maps, for every process that maps it, and a client \
         on another host would not take them.\n\n\
         CPU per request is the user + system time of the traced nginx (master and workers) and of \
         the agent during the wrk run, from /proc/PID/stat, divided by the requests wrk completed: \
         it shows where the cost goes, with less noise than throughput. Host CPU idle is the share \
         of both CPUs' time nobody used during the run (/proc/stat): nginx and wrk keep each other \
         busy, and it rises when the agent holds a CPU long enough to stall that pipeline.\n\n\
         Probe runs per request: in the first round, each agent configuration's timed run is \
         followed by a 2-second wrk run with BPF run-time statistics on (`bpf(BPF_ENABLE_STATS)`, \
         what `sysctl kernel.bpf_stats_enabled=1` does, for that run only: statistics cost two \
         clock reads per program run, so the timed runs go without). The run counts (`run_cnt` \
         in `bpftool prog show`) of the programs the agent holds, after minus before, divided by \
         the requests wrk completed in that run. A program counts every run, whichever process \
         it ran in (wrk's own socket calls included). The TLS probes' runs are told apart by \
         name: a run of an entry program (`sonde_uprobe_ssl_*`) is one call of the library \
         (SSL_read, SSL_write, their `_ex` forms, SSL_do_handshake), and the one return program \
         runs once per call too. Design target for them: at most {TARGET_TLS_RUNS_PER_CALL} runs per \
         TLS read or write, none per byte (with 1 KiB bodies, a run per byte would show as \
         hundreds per call).\n\n\
         Design targets: (c) keeps at least {TARGET_FULL_RATIO:.2} of (a)'s throughput, and full tracing \
         costs at most {TARGET_FULL_OVER_FLOOR}x the floor per request. The second leaves \"cost\" open: \
         the table reads it three ways, as the time per request (1/throughput), as the CPU time the \
         traced nginx and the agent spend per request, and as the time per request added to (a); \
         the notes below say why the third cannot be met.\n\n\
         ## Latest run\n\n\
         - date: {date}\n\
         - machine: {nproc} CPUs ({cpu}), kernel {kernel}, {nginx}\n\
         - agent: {agent}; workspace at `{commit}`\n\
         - 1-minute load average before the run: {load_before} (above about 0.5, other work was \
         running and the figures are noisier)\n\
         - command: `{command}`\n\n\
         {table}\n\
         ## Reading these numbers\n\n\
         On these 2-core VMs one 5-second round differs from the next by about ±20% at the nginx \
         level, and there are no hardware counters: only medians over many alternating rounds mean \
         anything, and ratios between configurations of the same run are what to compare, never \
         absolute figures across machines. wrk, nginx and the agent share the two CPUs, so the \
         agent's own CPU time shows up as lost throughput, twice over when it comes in bursts \
         longer than the work nginx and wrk keep in flight (host CPU idle). A few hundred \
         nanoseconds per hook are better seen with the syscall-loop microbenchmark \
         (`xtask/bench/syscall_loop.c`, second table): one process pinned to one CPU doing \
         HTTP-shaped write/read pairs on a loopback connection, 4 traced syscalls per request, \
         the agent pinned to the other CPU. Its figures repeat within a few percent from run to \
         run.\n\n",
        date = date.trim(),
        nproc = machine["nproc"],
        cpu = machine["cpu"].as_str().unwrap_or("?"),
        kernel = machine["kernel"].as_str().unwrap_or("?"),
        nginx = machine["nginx"].as_str().unwrap_or("nginx"),
        agent = machine["agent"].as_str().unwrap_or("?"),
        commit = machine["workspace_commit"].as_str().unwrap_or("?"),
        load_before = machine["loadavg_1min_before"],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_notes_survive_a_rewrite() {
        let page = format!("# Benchmarks\nold table\n\n{KEPT_MARKER}\n## Notes\nkept\n");
        assert_eq!(
            kept_notes(&page),
            format!("{KEPT_MARKER}\n## Notes\nkept\n")
        );
        assert_eq!(kept_notes("# Benchmarks\nno notes\n"), "");
    }
}
