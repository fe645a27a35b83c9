//! How often the agent's BPF programs run per request: the kernel's run counts of the
//! programs the agent holds (its file descriptors say which; `run_cnt` and `run_time_ns` in
//! `bpftool --json prog show`), read before and after a wrk run of their own, with BPF
//! statistics on for that run only.
//!
//! The kernel counts only while statistics are on, and counting costs two clock reads per
//! program run: the timed runs go without, so their throughput and CPU figures are not
//! skewed; the counts come from a short run after the timed one, with the same agent.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util;

/// BPF run-time statistics on while this lives: `bpf(BPF_ENABLE_STATS)` hands back a file
/// descriptor and the kernel turns them off when the last such descriptor closes, however
/// this process ends (`sysctl kernel.bpf_stats_enabled=1` would stay set after a crash).
struct RunStats {
    /// Held for its `Drop`: closing it ends the statistics.
    _fd: OwnedFd,
}

impl RunStats {
    fn enable() -> Result<Self> {
        // enum bpf_cmd and enum bpf_stats_type (include/uapi/linux/bpf.h).
        const BPF_ENABLE_STATS: libc::c_long = 32;
        const BPF_STATS_RUN_TIME: u32 = 0;
        // union bpf_attr's `enable_stats`: one __u32, the kind of statistics; the kernel
        // reads `size` bytes and takes the rest of the union as zero.
        let attr: u32 = BPF_STATS_RUN_TIME;
        // SAFETY: bpf(2) reads size_of::<u32>() bytes at `attr`, which outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                &raw const attr,
                size_of::<u32>(),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("bpf(BPF_ENABLE_STATS): turning on BPF run-time statistics");
        }
        let fd = RawFd::try_from(fd).context("bpf(BPF_ENABLE_STATS) returned no fd")?;
        // SAFETY: the kernel just opened this descriptor for us; nothing else owns it.
        Ok(Self {
            _fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

/// Runs and run time of one program (or of every program of one name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Runs {
    pub(super) runs: u64,
    pub(super) run_time_ns: u64,
}

/// The agent's program runs over one counting run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProbeCounts {
    /// Requests wrk completed in the counting run.
    pub(super) requests: u64,
    /// Each program's runs, by name as the kernel keeps it (at most 15 characters). A
    /// program attached several times, as the TLS probes are (once per library file and
    /// function), has one count for all its attachments.
    pub(super) programs: BTreeMap<String, Runs>,
}

/// The entry programs of the TLS library probes (`ebpf-probes/tls_openssl.bpf.c`:
/// `sonde_uprobe_ssl_read`, `_write`, their `_ex` forms and `_handshake`): one run per call.
fn is_tls_entry(name: &str) -> bool {
    name.starts_with("sonde_uprobe_ss")
}

/// Their one return program, `sonde_uretprobe_ssl`.
fn is_tls_return(name: &str) -> bool {
    name.starts_with("sonde_uretprobe")
}

impl ProbeCounts {
    /// The programs' counts between two snapshots (program id to its name and counts).
    fn between(
        before: &BTreeMap<u64, (String, Runs)>,
        after: &BTreeMap<u64, (String, Runs)>,
        requests: u64,
    ) -> Self {
        let mut programs: BTreeMap<String, Runs> = BTreeMap::new();
        for (id, (name, now)) in after {
            let then = before.get(id).map(|(_, runs)| *runs).unwrap_or_default();
            let sum = programs.entry(name.clone()).or_default();
            sum.runs += now.runs.saturating_sub(then.runs);
            sum.run_time_ns += now.run_time_ns.saturating_sub(then.run_time_ns);
        }
        Self { requests, programs }
    }

    /// `value` of the programs whose (kernel) name `of` accepts, summed, per request.
    fn sum_per_request(&self, of: impl Fn(&str) -> bool, value: fn(&Runs) -> u64) -> Option<f64> {
        let sum: u64 = self
            .programs
            .iter()
            .filter(|(name, _)| of(name))
            .map(|(_, r)| value(r))
            .sum();
        (self.requests > 0).then(|| sum as f64 / self.requests as f64)
    }

    /// Runs per request of the programs whose (kernel) name `of` accepts.
    pub(crate) fn per_request(&self, of: impl Fn(&str) -> bool) -> Option<f64> {
        self.sum_per_request(of, |r| r.runs)
    }

    /// Runs of every program of the agent, per request.
    pub(super) fn runs_per_request(&self) -> Option<f64> {
        self.per_request(|_| true)
    }

    /// TLS library calls per request: runs of the TLS entry programs.
    pub(super) fn tls_calls_per_request(&self) -> Option<f64> {
        self.per_request(is_tls_entry)
    }

    /// Runs of the TLS probes, entry and return, per request.
    pub(super) fn tls_runs_per_request(&self) -> Option<f64> {
        self.per_request(|name| is_tls_entry(name) || is_tls_return(name))
    }

    /// Runs of the TLS probes per TLS library call; None without calls.
    pub(super) fn tls_runs_per_call(&self) -> Option<f64> {
        let calls = self.tls_calls_per_request().filter(|c| *c > 0.0)?;
        Some(self.tls_runs_per_request()? / calls)
    }

    /// Time in the agent's programs per request, in µs (the programs themselves: not the
    /// trap into the kernel that runs a uprobe, nor the hook's own dispatch).
    pub(super) fn program_us_per_request(&self) -> Option<f64> {
        self.program_us_per_request_of(|_| true)
    }

    /// The same for the programs whose (kernel) name `of` accepts.
    pub(crate) fn program_us_per_request_of(&self, of: impl Fn(&str) -> bool) -> Option<f64> {
        self.sum_per_request(of, |r| r.run_time_ns)
            .map(|ns| ns / 1e3)
    }

    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "programs": self.programs.iter().map(|(name, r)| (name.clone(), serde_json::json!({
                "run_cnt": r.runs,
                "run_time_ns": r.run_time_ns,
            }))).collect::<serde_json::Map<_, _>>(),
            "runs_per_request": self.runs_per_request(),
            "tls_calls_per_request": self.tls_calls_per_request(),
            "tls_runs_per_request": self.tls_runs_per_request(),
            "tls_runs_per_call": self.tls_runs_per_call(),
            "program_us_per_request": self.program_us_per_request(),
        })
    }
}

/// Counts the runs of the programs process `agent` holds over `load`, which puts the
/// server under load and returns how many requests it completed.
pub(crate) fn count_probes(agent: u32, load: impl FnOnce() -> Result<u64>) -> Result<ProbeCounts> {
    let held = held_programs(agent)?;
    let stats = RunStats::enable()?;
    let before = snapshot(&held)?;
    let requests = load()?;
    let after = snapshot(&held)?;
    drop(stats);
    Ok(ProbeCounts::between(&before, &after, requests))
}

/// The ids of the BPF programs process `pid` holds: the `prog_id` of its program and link
/// file descriptors (/proc/PID/fdinfo; bpftool's own `pids` field needs a bpftool built
/// with BPF skeletons, which Debian's is not).
fn held_programs(pid: u32) -> Result<BTreeSet<u64>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))?;
    let held: BTreeSet<u64> = entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|fdinfo| prog_id(&fdinfo))
        .collect();
    if held.is_empty() {
        bail!("process {pid} holds no BPF program");
    }
    Ok(held)
}

/// The `prog_id:` line of one file descriptor's fdinfo (a BPF program, or a link to one).
fn prog_id(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("prog_id:"))?
        .trim()
        .parse()
        .ok()
}

/// The programs among `held`: id to name and counts.
fn snapshot(held: &BTreeSet<u64>) -> Result<BTreeMap<u64, (String, Runs)>> {
    let out = util::output(Command::new("bpftool").args(["--json", "prog", "show"]))?;
    parse_bpftool(&out, held).context("reading `bpftool --json prog show`")
}

/// Parses `bpftool --json prog show`, an array of programs, each with `id`, `name` and,
/// once statistics have been on, `run_time_ns` and `run_cnt` (absent while both are
/// zero); keeps the programs among `held`, which must all be there.
fn parse_bpftool(json: &str, held: &BTreeSet<u64>) -> Result<BTreeMap<u64, (String, Runs)>> {
    let value: serde_json::Value = serde_json::from_str(json).context("not JSON")?;
    let programs = value.as_array().context("not an array of programs")?;
    let mut found = BTreeMap::new();
    for program in programs {
        let id = program["id"].as_u64().context("a program without an id")?;
        if !held.contains(&id) {
            continue;
        }
        let name = program["name"].as_str().unwrap_or_default().to_owned();
        let runs = Runs {
            runs: program["run_cnt"].as_u64().unwrap_or(0),
            run_time_ns: program["run_time_ns"].as_u64().unwrap_or(0),
        };
        found.insert(id, (name, runs));
    }
    if let Some(missing) = held.iter().find(|id| !found.contains_key(id)) {
        bail!("program {missing} is not in its output");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"[{"id":7,"type":"cgroup_skb","name":"sd_fw_egress","tag":"6deef7357e7b4530","gpl_compatible":true,"run_time_ns":900,"run_cnt":3,"loaded_at":1767000000,"uid":0},
        {"id":41,"type":"tracing","name":"sonde_sock_send","tag":"00","gpl_compatible":true,"loaded_at":1767000001,"uid":0,"map_ids":[1,2]},
        {"id":52,"type":"kprobe","name":"sonde_uprobe_ssl_read","run_time_ns":100,"run_cnt":2},
        {"id":53,"type":"kprobe","name":"sonde_uprobe_ssl_write","run_time_ns":0,"run_cnt":0},
        {"id":54,"type":"kprobe","name":"sonde_uretprobe_ssl","run_time_ns":50,"run_cnt":2},
        {"id":60,"type":"kprobe","name":"sonde_uprobe_dl_debug_state"}]"#;

    /// After: an older bpftool, names cut to the kernel's 15 characters.
    const AFTER: &str = r#"[{"id":7,"type":"cgroup_skb","name":"sd_fw_egress","run_time_ns":9000,"run_cnt":30},
        {"id":41,"type":"tracing","name":"sonde_sock_send","run_time_ns":40000,"run_cnt":400},
        {"id":52,"type":"kprobe","name":"sonde_uprobe_ss","run_time_ns":20100,"run_cnt":202},
        {"id":53,"type":"kprobe","name":"sonde_uprobe_ss","run_time_ns":10000,"run_cnt":100},
        {"id":54,"type":"kprobe","name":"sonde_uretprobe","run_time_ns":30050,"run_cnt":302},
        {"id":60,"type":"kprobe","name":"sonde_uprobe_dl"},
        {"id":70,"type":"kprobe","name":"loaded_since","run_time_ns":5,"run_cnt":1}]"#;

    fn agent() -> BTreeSet<u64> {
        BTreeSet::from([41, 52, 53, 54, 60])
    }

    #[test]
    fn fdinfo_names_the_program() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1030\nprog_type:\t5\n\
                    prog_jited:\t1\nprog_tag:\tf2bce4f1a2918eca\nmemlock:\t4096\nprog_id:\t28523\n\
                    run_time_ns:\t0\nrun_cnt:\t0\n";
        assert_eq!(prog_id(prog), Some(28523));
        let link =
            "link_type:\tperf\nlink_id:\t20143\nprog_tag:\tf2bce4f1a2918eca\nprog_id:\t28523\n";
        assert_eq!(prog_id(link), Some(28523));
        assert_eq!(prog_id("pos:\t0\nflags:\t02\n"), None, "a file or socket");
        assert_eq!(prog_id("prog_id:\tx\n"), None);
    }

    #[test]
    fn bpftool_programs_of_the_agent() {
        let held = parse_bpftool(BEFORE, &agent()).expect("parses");
        assert_eq!(
            held.keys().copied().collect::<Vec<_>>(),
            [41, 52, 53, 54, 60]
        );
        assert_eq!(
            held[&52],
            (
                "sonde_uprobe_ssl_read".to_owned(),
                Runs {
                    runs: 2,
                    run_time_ns: 100
                }
            )
        );
        // No statistics yet: no run_cnt, no run_time_ns.
        assert_eq!(held[&41].1, Runs::default());
    }

    #[test]
    fn bpftool_output_that_says_nothing_is_an_error() {
        let one = BTreeSet::from([1]);
        assert!(parse_bpftool("not json", &one).is_err());
        assert!(parse_bpftool(r#"{"error":"can't get next program"}"#, &one).is_err());
        assert!(parse_bpftool(r#"[{"name":"x"}]"#, &one).is_err(), "no id");
        assert!(
            parse_bpftool(r#"[{"id":2,"name":"x"}]"#, &one).is_err(),
            "the agent's program is missing"
        );
    }

    #[test]
    fn runs_per_request_and_per_tls_call() {
        let before = parse_bpftool(BEFORE, &agent()).expect("before");
        let after = parse_bpftool(AFTER, &agent()).expect("after");
        let counts = ProbeCounts::between(&before, &after, 100);
        // Two entry programs of one name (cut to 15 characters) add up.
        assert_eq!(
            counts.programs["sonde_uprobe_ss"],
            Runs {
                runs: 300,
                run_time_ns: 30000
            }
        );
        assert_eq!(counts.tls_calls_per_request(), Some(3.0));
        assert_eq!(counts.tls_runs_per_request(), Some(6.0));
        assert_eq!(counts.tls_runs_per_call(), Some(2.0));
        assert_eq!(counts.runs_per_request(), Some(10.0));
        assert_eq!(counts.program_us_per_request(), Some(1.0));

        let none = ProbeCounts::between(&before, &after, 0);
        assert_eq!(none.runs_per_request(), None);
        let no_tls = ProbeCounts {
            requests: 10,
            programs: BTreeMap::from([("sonde_sock_send".to_owned(), Runs::default())]),
        };
        assert_eq!(no_tls.tls_runs_per_call(), None);
    }
}
