//! Goroutines as execution contexts: in a traced Go program, trace context follows the
//! goroutine, not the thread (`ebpf-probes/trace_ctx/exec_key.h`). For each traced process
//! whose executable is Go, the agent writes where its threads keep the running goroutine
//! into `go_procs`, and attaches, once per file, the probes that follow work from one
//! goroutine to another (`ebpf-probes/go_runtime.bpf.c`): goroutine starts and net/http's
//! client hand-off. What a file holds is read by `binary::go::runtime`.
//!
//! A process that is not Go, or a Go program that cannot be read (a release without known
//! offsets), keeps thread contexts, as every other program; the second is said once per
//! file and counted (`go_runtime_failures`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use aya::Ebpf;
use aya::maps::HashMap as BpfHashMap;

use super::binary::go::OffsetsSource;
use super::binary::go::runtime::{GoRuntime, go_runtime};
use super::binary::{Elf, GoTlsError};
use super::tls::{FileId, TlsProbeError, attach, load_uprobes, path_seen_by};
use crate::abi::RawGoRuntimeOffsets;

const NEWPROC1: &str = "sonde_uprobe_go_newproc1";
const NEWPROC1_RETURN: &str = "sonde_uprobe_go_newproc1_return";
const ROUND_TRIP: &str = "sonde_uprobe_go_round_trip";
const REQUEST_WRITE: &str = "sonde_uprobe_go_request_write";
const PROGRAMS: [&str; 4] = [NEWPROC1, NEWPROC1_RETURN, ROUND_TRIP, REQUEST_WRITE];
const MAP: &str = "go_procs";

/// Largest executable examined (as for TLS libraries).
const MAX_FILE_BYTES: u64 = 1 << 30;

/// What a file turned out to be.
enum Examined {
    /// Not a Go program (or unreadable as ELF): threads are its contexts.
    NotGo,
    /// A Go program, probed: its offsets for `go_procs`.
    Probed(RawGoRuntimeOffsets),
    /// A Go program whose goroutines cannot be followed (said once).
    Refused,
}

/// The Go runtime probes of one agent.
pub struct GoRuntimeProbes {
    files: HashMap<FileId, Examined>,
    /// Traced Go processes registered (their contexts follow goroutines).
    processes: u64,
    failures: u64,
}

impl GoRuntimeProbes {
    /// Loads the programs (the verifier runs here); nothing is attached until a traced Go
    /// program is found.
    pub fn load(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        anyhow::ensure!(ebpf.map(MAP).is_some(), "map {MAP} missing from the object");
        load_uprobes(ebpf, PROGRAMS)?;
        Ok(Self {
            files: HashMap::new(),
            processes: 0,
            failures: 0,
        })
    }

    /// Traced Go processes whose goroutines give context.
    pub fn processes(&self) -> u64 {
        self.processes
    }

    /// Go programs whose goroutines cannot be followed.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Looks at the executable of traced process `pid` (just seen, or just exec'd): if it
    /// is a Go program, probes the file (once) and registers the process. True when the
    /// process's contexts now follow goroutines.
    pub fn follow(&mut self, ebpf: &mut Ebpf, pid: u32) -> bool {
        let exe = format!("/proc/{pid}/exe");
        let (Ok(meta), Ok(target)) = (std::fs::metadata(&exe), std::fs::read_link(&exe)) else {
            return false; // gone, or a kernel thread
        };
        let id = FileId {
            dev: (libc::major(meta.dev()), libc::minor(meta.dev())),
            inode: meta.ino(),
        };
        if !self.files.contains_key(&id) {
            let path = path_seen_by(pid, &target.to_string_lossy());
            let examined = self.examine_and_attach(ebpf, &path, &target);
            self.files.insert(id, examined);
        }
        let Some(Examined::Probed(offsets)) = self.files.get(&id) else {
            return false;
        };
        match register(ebpf, pid, *offsets) {
            Ok(()) => {
                self.processes += 1;
                true
            }
            Err(e) => {
                log::warn!("Go runtime: registering pid {pid}: {e:#}");
                false
            }
        }
    }

    fn examine_and_attach(&mut self, ebpf: &mut Ebpf, path: &Path, shown: &Path) -> Examined {
        let elf = match Elf::open_with_limit(path, MAX_FILE_BYTES) {
            Ok(elf) => elf,
            Err(e) => {
                log::debug!("Go runtime: {}: {e}", shown.display());
                return Examined::NotGo;
            }
        };
        let runtime = match go_runtime(&elf) {
            Ok(runtime) => runtime,
            Err(GoTlsError::NotGo) => return Examined::NotGo,
            Err(e) => {
                self.failures += 1;
                log::warn!(
                    "Go runtime: {}: {e}; its requests are followed by thread, which is \
                     wrong wherever goroutines move (counter go_runtime_failures)",
                    shown.display()
                );
                return Examined::Refused;
            }
        };
        match attach_all(ebpf, path, &runtime) {
            Ok(()) => {
                log::info!(
                    "Go runtime: following goroutines in {} ({})",
                    shown.display(),
                    summary(&runtime)
                );
                Examined::Probed(RawGoRuntimeOffsets {
                    g_tls_offset: runtime.g_tls_offset,
                    g_goid: runtime.g_goid,
                    g_parent_goid: runtime.g_parent_goid.unwrap_or(0),
                })
            }
            Err(e) => {
                self.failures += 1;
                log::warn!("Go runtime: {:#}", anyhow::Error::from(e));
                Examined::Refused
            }
        }
    }
}

/// What [`GoRuntimeProbes::follow`] would make of process `pid`, read from its executable
/// alone (`sonde doctor --pid`): None when it is not a Go program (or is gone); else how its
/// goroutines would be followed, or why they cannot be.
pub fn process_report(pid: u32) -> Option<Result<String, String>> {
    let elf = Elf::open_with_limit(Path::new(&format!("/proc/{pid}/exe")), MAX_FILE_BYTES).ok()?;
    match go_runtime(&elf) {
        Ok(rt) => Some(Ok(summary(&rt))),
        Err(GoTlsError::NotGo) => None,
        Err(e) => Some(Err(e.to_string())),
    }
}

/// How a Go program's goroutines are followed, for the log and `sonde doctor`.
fn summary(rt: &GoRuntime) -> String {
    let parent = match rt.g_parent_goid {
        Some(offset) => format!("parentGoid at {offset}"),
        None => "no parentGoid (starts noted at newproc1's entry)".to_owned(),
    };
    let from = match rt.offsets_from {
        OffsetsSource::Dwarf => "DWARF".to_owned(),
        OffsetsSource::VersionTable { measured_on } => format!("the table row of {measured_on}"),
    };
    let client = if rt.http_client.is_some() {
        "net/http client hand-off probed"
    } else {
        "no net/http client"
    };
    format!(
        "{}: g at FS{:+}, goid at {}, {parent}, from {from}; newproc1 with {} return sites; {client}",
        rt.go_version,
        rt.g_tls_offset,
        rt.g_goid,
        rt.newproc1.return_offsets.len()
    )
}

fn attach_all(ebpf: &mut Ebpf, path: &Path, runtime: &GoRuntime) -> Result<(), TlsProbeError> {
    // With g.parentGoid the returns alone say who started whom.
    if runtime.g_parent_goid.is_none() {
        attach(ebpf, NEWPROC1, path, runtime.newproc1.entry_offset, None)?;
    }
    for &offset in &runtime.newproc1.return_offsets {
        attach(ebpf, NEWPROC1_RETURN, path, offset, None)?;
    }
    if let Some((round_trip, request_write)) = runtime.http_client {
        attach(ebpf, ROUND_TRIP, path, round_trip, None)?;
        attach(ebpf, REQUEST_WRITE, path, request_write, None)?;
    }
    Ok(())
}

fn register(ebpf: &mut Ebpf, pid: u32, offsets: RawGoRuntimeOffsets) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(MAP)
        .ok_or_else(|| anyhow::anyhow!("map {MAP} missing"))?;
    let mut procs: BpfHashMap<_, u32, RawGoRuntimeOffsets> = BpfHashMap::try_from(map)?;
    procs
        .insert(pid, offsets, 0)
        .map_err(|e| anyhow::anyhow!("map {MAP}: {e}"))
}
