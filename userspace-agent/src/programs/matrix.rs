//! The verifier matrix: load every program of the probe object, not only the ones the
//! current configuration attaches, and say which ones this kernel's verifier accepts.
//!
//! Nothing is attached, so no traffic is touched: a loaded but unattached program runs
//! nowhere. `cargo xtask vm-test` runs this on each kernel and builds docs/kernels.md
//! from it. Hidden behind `sonde doctor --verifier-matrix`.

use std::io::{self, Write};

use anyhow::Result;
use aya::programs::{Program, ProgramError};
use serde::Serialize;

use aya::Btf;
use aya_obj::btf::BtfKind;

use super::hooks::{Hook, hook_of};
use super::object::{ProbeOptions, load_object};
use crate::sys::features::{self, Feature};

/// Verifier log lines kept for a rejected program: the verdict is at the end.
const LOG_TAIL_LINES: usize = 20;

/// Most instructions a program may take the verifier to check before the matrix calls it
/// over budget: a quarter of the kernel's limit (1M). Verifiers differ in how well they
/// prune, even between builds of one kernel version: a program that takes 300k here may
/// take over a million elsewhere (as the trace-context parser once did).
pub const VERIFIER_BUDGET: u32 = 250_000;

/// How loading one program went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadState {
    /// The verifier accepted it.
    Ok,
    /// The kernel has the program's hook family, and refused this program.
    Rejected,
    /// The kernel refuses the whole hook family (an empty program of that type fails
    /// too, e.g. fentry under lockdown): not tried, and not a failure of the program.
    Unavailable,
}

/// One row of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramLoad {
    /// The program's function name in the object, e.g. `sonde_tp_exit_write`.
    pub program: String,
    /// Its program type as aya names it, e.g. `tracepoint`, `sock_ops`.
    pub kind: &'static str,
    pub state: LoadState,
    /// Why it was rejected or is unavailable (empty when `Ok`).
    pub error: String,
    /// The last lines of the verifier log when the verifier rejected it.
    pub log_tail: Vec<String>,
    /// Instructions the verifier processed to accept it (kernels from 5.16 say).
    pub verified_insns: Option<u32>,
}

/// Every program in the object, loaded one by one, in name order.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub programs: Vec<ProgramLoad>,
    /// [`VERIFIER_BUDGET`], for readers of the JSON (`cargo xtask vm-test`).
    pub verifier_budget: u32,
}

impl Matrix {
    /// No program was rejected (unavailable families are not failures).
    pub fn all_ok(&self) -> bool {
        self.programs.iter().all(|p| p.state != LoadState::Rejected)
    }
}

/// Creates the maps once, then loads each program. Fails only if the object itself
/// cannot be opened (maps, BTF); a program the kernel refuses is a row, not an error.
pub fn load_every_program() -> Result<Matrix> {
    let btf = features::kernel_btf();
    let btf = btf.as_ref().map_err(String::as_str);
    load_every_program_with(btf, &features::fentry(btf))
}

/// [`load_every_program`] with the kernel's BTF and the fentry probe already at hand
/// (the doctor has both; a second parsed BTF would cost some 10 MB more).
pub fn load_every_program_with(btf: Result<&Btf, &str>, fentry: &Feature) -> Result<Matrix> {
    load_every_program_at(&ProbeOptions::default(), btf, fentry)
}

/// The same with `opts` baked into the object (the probe-log tests: every diagnostic on).
pub fn load_every_program_at(
    opts: &ProbeOptions,
    btf: Result<&Btf, &str>,
    fentry: &Feature,
) -> Result<Matrix> {
    let mut ebpf = load_object(opts)?;
    let no_trampolines = (!fentry.is_available())
        .then(|| format!("fentry {:?}: {}", fentry.support, fentry.detail).to_lowercase());
    let mut programs: Vec<ProgramLoad> = ebpf
        .programs_mut()
        .map(|(name, program)| {
            let trampolines = match &no_trampolines {
                Some(why) => Err(why.as_str()),
                None => btf,
            };
            let (kind, outcome) = load(name, program, trampolines, btf);
            let verified_insns = outcome
                .is_ok()
                .then(|| program.info().ok()?.verified_instruction_count())
                .flatten();
            let (state, error, log_tail) = match outcome {
                Ok(()) => (LoadState::Ok, String::new(), Vec::new()),
                Err(LoadFailure::Unavailable(why)) => (LoadState::Unavailable, why, Vec::new()),
                Err(LoadFailure::Verifier { errno, log }) => {
                    (LoadState::Rejected, errno, tail(&log))
                }
                Err(LoadFailure::Other(e)) => (LoadState::Rejected, e, Vec::new()),
            };
            ProgramLoad {
                program: name.to_owned(),
                kind,
                state,
                error,
                log_tail,
                verified_insns,
            }
        })
        .collect();
    programs.sort_by(|a, b| a.program.cmp(&b.program));
    Ok(Matrix {
        programs,
        verifier_budget: VERIFIER_BUDGET,
    })
}

enum LoadFailure {
    Unavailable(String),
    Verifier { errno: String, log: String },
    Other(String),
}

impl From<ProgramError> for LoadFailure {
    fn from(err: ProgramError) -> Self {
        match err {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => Self::Verifier {
                errno: format!("the verifier rejected it: {io_error}"),
                log: verifier_log.to_string(),
            },
            other => Self::Other(other.to_string()),
        }
    }
}

/// Loads one program, by its type (each type's `load` is its own method in aya).
/// `trampolines` is the kernel's BTF if fentry/fexit work here, else why not.
fn load(
    name: &str,
    program: &mut Program,
    trampolines: Result<&Btf, &str>,
    btf: Result<&Btf, &str>,
) -> (&'static str, Result<(), LoadFailure>) {
    let (kind, result) = match program {
        Program::TracePoint(p) => ("tracepoint", p.load()),
        Program::RawTracePoint(p) => ("raw_tracepoint", p.load()),
        Program::KProbe(p) => ("kprobe", p.load()),
        Program::BtfTracePoint(p) => {
            let btf = match btf {
                Ok(btf) => btf,
                Err(why) => return ("tp_btf", Err(LoadFailure::Unavailable(why.to_owned()))),
            };
            let Some(Hook::BtfTracepoint { name: tracepoint }) = hook_of(name).map(|h| h.hook)
            else {
                return ("tp_btf", Err(no_target(name)));
            };
            // A kernel without the tracepoint lacks the family, it does not reject it.
            if btf
                .id_by_type_name_kind(&format!("btf_trace_{tracepoint}"), BtfKind::Typedef)
                .is_err()
            {
                let why = format!("no {tracepoint} tracepoint in this kernel");
                return ("tp_btf", Err(LoadFailure::Unavailable(why)));
            }
            ("tp_btf", p.load(tracepoint, btf))
        }
        Program::UProbe(p) => ("uprobe", p.load()),
        Program::SockOps(p) => ("sock_ops", p.load()),
        Program::SkMsg(p) => ("sk_msg", p.load()),
        Program::SkSkb(p) => ("sk_skb", p.load()),
        // The only iterator walks TCP sockets (inject.bpf.c sonde_iter_arm).
        Program::Iter(p) => match btf {
            Ok(btf) => ("iter", p.load("tcp", btf)),
            Err(why) => return ("iter", Err(LoadFailure::Unavailable(why.to_owned()))),
        },
        Program::FExit(p) => {
            let btf = match trampolines {
                Ok(btf) => btf,
                Err(why) => return ("fexit", Err(LoadFailure::Unavailable(why.to_owned()))),
            };
            let Some(Hook::Fexit { function }) = hook_of(name).map(|h| h.hook) else {
                return ("fexit", Err(no_target(name)));
            };
            ("fexit", p.load(function, btf))
        }
        // fentry/lsm/... need their target at load time: add the arm with the first such
        // program (the kind is named so the gap cannot pass silently).
        other => {
            let kind = match other {
                Program::FEntry(_) => "fentry",
                _ => "other",
            };
            return (
                kind,
                Err(LoadFailure::Other(format!(
                    "the verifier matrix does not load {kind} programs yet"
                ))),
            );
        }
    };
    (kind, result.map_err(LoadFailure::from))
}

fn no_target(program: &str) -> LoadFailure {
    LoadFailure::Other(format!(
        "{program} is not in programs/hooks.rs: no target to load it on"
    ))
}

/// The last [`LOG_TAIL_LINES`] non-empty lines of a verifier log.
fn tail(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines
        .get(start..)
        .unwrap_or_default()
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// Prints the matrix: one line per program, the log tail under each failure; or JSON.
pub fn print_matrix(matrix: &Matrix, json: bool, out: &mut impl Write) -> io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, matrix)?;
        return writeln!(out);
    }
    for p in &matrix.programs {
        let verdict = match p.state {
            LoadState::Ok => "ok",
            LoadState::Rejected => "FAIL",
            LoadState::Unavailable => "n/a",
        };
        let insns = p
            .verified_insns
            .map(|n| {
                let over = if n > VERIFIER_BUDGET {
                    " OVER BUDGET"
                } else {
                    ""
                };
                format!("  {n} insns verified{over}")
            })
            .unwrap_or_default();
        let line = format!("{verdict:<4}  {:<14}  {:<28}{insns}", p.kind, p.program);
        writeln!(out, "{}", line.trim_end())?;
        if p.state != LoadState::Ok {
            writeln!(out, "      {}", p.error)?;
            for line in &p.log_tail {
                writeln!(out, "      | {line}")?;
            }
        }
    }
    let count = |state| matrix.programs.iter().filter(|p| p.state == state).count();
    let most = matrix
        .programs
        .iter()
        .filter_map(|p| p.verified_insns)
        .max();
    writeln!(
        out,
        "{} programs: {} loaded, {} rejected, {} unavailable on this kernel; at most {} \
         instructions verified (budget {VERIFIER_BUDGET}, kernel limit 1000000)",
        matrix.programs.len(),
        count(LoadState::Ok),
        count(LoadState::Rejected),
        count(LoadState::Unavailable),
        most.map_or_else(|| "?".to_owned(), |n| n.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_skips_blank_ones() {
        let log: String = (0..30).map(|i| format!("{i}: insn\n\n")).collect();
        let kept = tail(&log);
        assert_eq!(kept.len(), LOG_TAIL_LINES);
        assert_eq!(kept.first().map(String::as_str), Some("10: insn"));
        assert_eq!(kept.last().map(String::as_str), Some("29: insn"));
        assert!(tail("").is_empty());
    }
}
