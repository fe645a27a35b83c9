//! TLS library probes: finding the TLS libraries traced processes map, and attaching the
//! library's programs to each file once: OpenSSL and BoringSSL, GnuTLS (`c_libraries`,
//! `ebpf-probes/tls_openssl.bpf.c`, `tls_gnutls.bpf.c`) and Go's `crypto/tls` (`go`,
//! `ebpf-probes/tls_go.bpf.c`).
//! What a file is, and where its functions are, is read by `attach/binary/`.
//!
//! A uprobe belongs to a file (an inode) and an offset, not to a process: one attachment
//! covers every process that maps the file, now or later, and the programs skip processes
//! that are not traced at their first instruction. The cost is that an untraced process
//! using the same library file takes the probe's trap on each call while Sonde runs
//! (`--no-tls` turns the probes off; `sonde doctor` says which files are probed).
//!
//! Files are found in `/proc/PID/maps` of traced processes, opened through
//! `/proc/PID/root` (the process's own view of the filesystem, containers included), and
//! each is examined once, keyed by device and inode.

mod c_libraries;
mod examine;
mod go;
mod maps_line;
mod needed;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachPoint, UProbeScope};
use thiserror::Error;

pub use self::examine::{FileReport, process_report};
use self::examine::{Found, examine};
use self::maps_line::Mapping;
pub use self::needed::{interpreter, needed_libraries};
use super::binary::{self, ElfError, GoTlsError};

/// The dynamic loader's hook for debuggers, and the program that watches it (dlopen).
const LOADER_SYMBOL: &str = "_dl_debug_state";
const LOADER_PROGRAM: &str = "sonde_uprobe_dl_debug_state";

/// Largest file examined: a bound on what one hostile or odd mapping can cost.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// Why a file could not be examined or probed.
#[derive(Debug, Error)]
pub enum TlsProbeError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes, more than the {MAX_FILE_BYTES} examined")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path} is not an ELF file Sonde can read: {source}")]
    Object {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("Go program {path}: {source}")]
    Go {
        path: PathBuf,
        #[source]
        source: GoTlsError,
    },
    #[error("Go program {path}: {reason}")]
    GoSetup { path: PathBuf, reason: String },
    #[error("attaching {program} to {path} at {offset:#x}: {source}")]
    Attach {
        program: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
}

/// A file as the kernel knows it: device and inode (a path may differ per process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: (u32, u32),
    pub inode: u64,
}

/// What a probed file is, as said in logs and by `sonde doctor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbedLibrary {
    /// The OpenSSL API (OpenSSL, BoringSSL), shared or linked into a program.
    OpenSsl(binary::OpenSslFlavor),
    /// GnuTLS (`libgnutls.so`).
    GnuTls,
    /// Go's `crypto/tls` in a Go program: its release, and where the probe points and
    /// struct offsets came from.
    Go { version: String, how: String },
}

impl std::fmt::Display for ProbedLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbedLibrary::OpenSsl(binary::OpenSslFlavor::OpenSsl) => f.write_str("OpenSSL"),
            ProbedLibrary::OpenSsl(binary::OpenSslFlavor::BoringSsl) => f.write_str("BoringSSL"),
            ProbedLibrary::OpenSsl(binary::OpenSslFlavor::GnuTlsCompat) => {
                f.write_str("GnuTLS's OpenSSL layer")
            }
            ProbedLibrary::GnuTls => f.write_str("GnuTLS"),
            ProbedLibrary::Go { version, how } => write!(f, "Go crypto/tls ({version}, {how})"),
        }
    }
}

/// A TLS library file the probes are attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbedFile {
    /// The path in the process that mapped it first.
    pub path: PathBuf,
    pub library: ProbedLibrary,
    /// The functions found and probed.
    pub functions: Vec<&'static str>,
}

/// What a scan of one process found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// The process's memory map was read (false: it is gone, nothing can be said).
    pub read: bool,
    /// Files probed by this scan.
    pub newly_probed: usize,
    /// The process maps a probed TLS library (newly or before).
    pub maps_probed: bool,
}

/// The TLS probes of one agent.
pub struct TlsProbes {
    probed: HashMap<FileId, ProbedFile>,
    /// Files looked at and found to hold no TLS library (or refused: said once).
    examined: HashSet<FileId>,
    /// TLS libraries found that could not be probed.
    failures: u64,
    go: go::GoBinaries,
}

impl TlsProbes {
    /// Loads the TLS programs into the kernel (the verifier runs here); nothing is
    /// attached until a library is found.
    pub fn load(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let programs = c_libraries::OPENSSL
            .names()
            .chain(c_libraries::GNUTLS.names())
            .chain(go::PROGRAMS.iter().copied())
            .chain([LOADER_PROGRAM]);
        load_uprobes(ebpf, programs)?;
        Ok(Self {
            probed: HashMap::new(),
            examined: HashSet::new(),
            failures: 0,
            go: go::GoBinaries::new(ebpf)?,
        })
    }

    /// TLS library files found that could not be probed (said in the log).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Every file probed so far.
    pub fn probed(&self) -> impl Iterator<Item = &ProbedFile> {
        self.probed.values()
    }

    /// Looks at every executable file process `pid` maps and probes the TLS libraries
    /// among them not probed yet. A process that is gone has nothing to scan.
    pub fn scan(&mut self, ebpf: &mut Ebpf, pid: u32) -> Scanned {
        let mut scanned = Scanned::default();
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            return scanned;
        };
        scanned.read = true;
        for mapping in maps.lines().filter_map(Mapping::parse) {
            if self.probed.contains_key(&mapping.id) {
                scanned.maps_probed = true;
            }
            if !self.examined.insert(mapping.id) {
                continue;
            }
            let path = path_seen_by(pid, mapping.path);
            if self.probe_new_file(ebpf, mapping.id, &path, Path::new(mapping.path)) {
                scanned.newly_probed += 1;
                scanned.maps_probed = true;
            }
        }
        scanned
    }

    /// Probes the TLS libraries among `executable` and the shared libraries it needs,
    /// before it runs (`sonde run`): the dynamic loader maps them before the program's
    /// first instruction, faster than a scan of the running process could find them.
    pub fn probe_before_run(&mut self, ebpf: &mut Ebpf, executable: &Path) -> usize {
        let files = std::iter::once(executable.to_owned())
            .chain(interpreter(executable))
            .chain(needed_libraries(executable));
        files.map(|path| self.probe_path(ebpf, path)).sum()
    }

    /// Probes the system's own TLS libraries (`libssl.so*`, `libgnutls.so*` in the standard library
    /// directories) now, for processes that will start later (`sonde run`, `--exe`): a
    /// program that loads one with `dlopen` (Python on `import ssl`) may call it within
    /// milliseconds, sooner than a scan could find it.
    pub fn probe_system_libraries(&mut self, ebpf: &mut Ebpf) -> usize {
        needed::system_tls_libraries()
            .into_iter()
            .map(|path| self.probe_path(ebpf, path))
            .sum()
    }

    /// Probes one file by path, unless a file with its device and inode was examined.
    fn probe_path(&mut self, ebpf: &mut Ebpf, path: PathBuf) -> usize {
        let Ok(meta) = std::fs::metadata(&path) else {
            return 0;
        };
        let id = {
            use std::os::unix::fs::MetadataExt;
            let dev = meta.dev();
            FileId {
                dev: (libc::major(dev), libc::minor(dev)),
                inode: meta.ino(),
            }
        };
        if !meta.is_file() || !self.examined.insert(id) {
            return 0;
        }
        usize::from(self.probe_new_file(ebpf, id, &path, &path))
    }

    /// Examines a file not seen before (`path` opens it, `shown` names it) and probes it
    /// if it is a TLS library; true when it was probed.
    fn probe_new_file(&mut self, ebpf: &mut Ebpf, id: FileId, path: &Path, shown: &Path) -> bool {
        match self.probe_file(ebpf, path) {
            Ok(Some((library, functions))) => {
                log::info!(
                    "TLS: probing {library} in {} ({})",
                    shown.display(),
                    functions.join(", ")
                );
                self.probed.insert(
                    id,
                    ProbedFile {
                        path: shown.to_owned(),
                        library,
                        functions,
                    },
                );
                true
            }
            Ok(None) => false,
            // Not a file Sonde can read (nor, then, a library it knows): no TLS library.
            Err(e @ TlsProbeError::Elf(_)) => {
                log::debug!("TLS: {e}");
                false
            }
            Err(e) => {
                // With its causes: "perf_event_open failed" alone does not say why.
                log::warn!("TLS: {:#}", anyhow::Error::from(e));
                self.failures += 1;
                false
            }
        }
    }

    /// Attaches the programs of the TLS library `path` is, or the loader program if it
    /// is a dynamic loader; None for any other file.
    fn probe_file(
        &mut self,
        ebpf: &mut Ebpf,
        path: &Path,
    ) -> Result<Option<(ProbedLibrary, Vec<&'static str>)>, TlsProbeError> {
        let Some(found) = examine(path)? else {
            return Ok(None);
        };
        match &found {
            Found::Loader { offset } => {
                attach(ebpf, LOADER_PROGRAM, path, *offset, None)?;
                log::debug!("TLS: watching the dynamic loader {}", path.display());
            }
            Found::CLibrary {
                programs,
                functions,
                ..
            } => c_libraries::attach_all(programs, ebpf, path, functions)?,
            Found::Go(plan) => self.go.attach(ebpf, path, plan)?,
        }
        Ok(found.summary())
    }
}

/// A path as process `pid` maps it, opened from here: as it is when the process shares
/// the agent's mount namespace, else through `/proc/PID/root` (containers, chroots).
/// Plain when possible: Linux 6.1's uprobe attach does not find files through
/// `/proc/PID/root` in an initramfs (ENOENT), where 6.18 does.
pub(super) fn path_seen_by(pid: u32, mapped: &str) -> PathBuf {
    let same_namespace = match (
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")),
        std::fs::read_link("/proc/self/ns/mnt"),
    ) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        _ => false,
    };
    let chrooted =
        std::fs::read_link(format!("/proc/{pid}/root")).map_or(true, |root| root != Path::new("/"));
    if same_namespace && !chrooted {
        PathBuf::from(mapped)
    } else {
        PathBuf::from(format!("/proc/{pid}/root{mapped}"))
    }
}

/// Loads uprobe programs of the object (the verifier runs here).
pub(super) fn load_uprobes<'a>(
    ebpf: &mut Ebpf,
    names: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<()> {
    for name in names {
        let program: &mut UProbe = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow::anyhow!("program {name} missing from the object"))?
            .try_into()?;
        program
            .load()
            .map_err(|e| anyhow::anyhow!("loading {name}: {e}"))?;
    }
    Ok(())
}

/// Attaches `program` at `offset` of `path`, for every process; `cookie` is what
/// `bpf_get_attach_cookie` returns there.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    program: &'static str,
    path: &Path,
    offset: u64,
    cookie: Option<u64>,
) -> Result<(), TlsProbeError> {
    let err = |source| TlsProbeError::Attach {
        program,
        path: path.to_owned(),
        offset,
        source: Box::new(source),
    };
    let uprobe: &mut UProbe = ebpf
        .program_mut(program)
        .ok_or(aya::programs::ProgramError::NotLoaded)
        .and_then(TryInto::try_into)
        .map_err(err)?;
    let point = UProbeAttachPoint {
        location: offset.into(),
        cookie,
    };
    uprobe
        .attach(point, path, UProbeScope::AllProcesses)
        .map(drop)
        .map_err(err)
}
