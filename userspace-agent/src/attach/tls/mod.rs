//! TLS library probes: finding the TLS libraries traced processes map, and attaching the
//! OpenSSL programs (`ebpf-probes/tls_openssl.bpf.c`) to each library file once.
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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::programs::UProbe;
use aya::programs::uprobe::UProbeScope;
use object::{Object, ObjectSegment, ObjectSymbol};
use thiserror::Error;

/// The OpenSSL functions probed, and the entry program of each. They all share one
/// return program: its entry's record says what to report.
const OPENSSL_ENTRIES: &[(&str, &str)] = &[
    ("SSL_read", "sonde_uprobe_ssl_read"),
    ("SSL_read_ex", "sonde_uprobe_ssl_read_ex"),
    ("SSL_write", "sonde_uprobe_ssl_write"),
    ("SSL_write_ex", "sonde_uprobe_ssl_write_ex"),
    ("SSL_do_handshake", "sonde_uprobe_ssl_handshake"),
];
const OPENSSL_RETURN: &str = "sonde_uretprobe_ssl";
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
    Elf {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
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

/// A TLS library file the probes are attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbedFile {
    /// The path in the process that mapped it first.
    pub path: PathBuf,
    pub library: &'static str,
    /// The functions found and probed.
    pub functions: Vec<&'static str>,
}

/// What a scan of one process found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
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
}

impl TlsProbes {
    /// Loads the TLS programs into the kernel (the verifier runs here); nothing is
    /// attached until a library is found.
    pub fn load(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        for name in OPENSSL_ENTRIES
            .iter()
            .map(|(_, program)| *program)
            .chain([OPENSSL_RETURN, LOADER_PROGRAM])
        {
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow::anyhow!("program {name} missing from the object"))?
                .try_into()?;
            program
                .load()
                .map_err(|e| anyhow::anyhow!("loading {name}: {e}"))?;
        }
        Ok(Self {
            probed: HashMap::new(),
            examined: HashSet::new(),
        })
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
        for mapping in maps.lines().filter_map(Mapping::parse) {
            if self.probed.contains_key(&mapping.id) {
                scanned.maps_probed = true;
            }
            if !self.examined.insert(mapping.id) {
                continue;
            }
            // The process's own view of the path: containers and chroots included.
            let path = PathBuf::from(format!("/proc/{pid}/root{}", mapping.path));
            match self.probe_file(ebpf, &path) {
                Ok(Some(functions)) => {
                    log::info!(
                        "TLS: probing OpenSSL in {} ({})",
                        mapping.path,
                        functions.join(", ")
                    );
                    self.probed.insert(
                        mapping.id,
                        ProbedFile {
                            path: PathBuf::from(mapping.path),
                            library: "openssl",
                            functions,
                        },
                    );
                    scanned.newly_probed += 1;
                    scanned.maps_probed = true;
                }
                Ok(None) => {}
                Err(e) => log::warn!("TLS: {e}"),
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

    /// Probes the system's own TLS libraries (`libssl.so*` in the standard library
    /// directories) now, for processes that will start later (`sonde run`, `--exe`): a
    /// program that loads one with `dlopen` (Python on `import ssl`) may call it within
    /// milliseconds, sooner than a scan could find it.
    pub fn probe_system_libraries(&mut self, ebpf: &mut Ebpf) -> usize {
        let mut files = Vec::new();
        for dir in LIBRARY_DIRS {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libssl.so"))
            }));
        }
        files
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
        match self.probe_file(ebpf, &path) {
            Ok(Some(functions)) => {
                log::info!(
                    "TLS: probing OpenSSL in {} ({})",
                    path.display(),
                    functions.join(", ")
                );
                self.probed.insert(
                    id,
                    ProbedFile {
                        path,
                        library: "openssl",
                        functions,
                    },
                );
                1
            }
            Ok(None) => 0,
            Err(e) => {
                log::warn!("TLS: {e}");
                0
            }
        }
    }

    /// Attaches the OpenSSL programs to `path` if it defines the OpenSSL functions, or
    /// the loader program if it is a dynamic loader.
    fn probe_file(
        &mut self,
        ebpf: &mut Ebpf,
        path: &Path,
    ) -> Result<Option<Vec<&'static str>>, TlsProbeError> {
        let functions = probed_functions(path)?;
        if let Some((_, offset)) = functions.iter().find(|(n, _)| *n == LOADER_SYMBOL) {
            attach(ebpf, LOADER_PROGRAM, path, *offset)?;
            log::debug!("TLS: watching the dynamic loader {}", path.display());
            return Ok(None);
        }
        // SSL_read and SSL_write are what every OpenSSL user calls (or their _ex forms).
        let has = |name| functions.iter().any(|(n, _)| *n == name);
        if !(has("SSL_read") || has("SSL_read_ex")) || !(has("SSL_write") || has("SSL_write_ex")) {
            return Ok(None);
        }
        let mut probed = Vec::new();
        for (function, offset) in functions {
            let Some((_, entry)) = OPENSSL_ENTRIES.iter().find(|(f, _)| *f == function) else {
                continue;
            };
            for program in [*entry, OPENSSL_RETURN] {
                attach(ebpf, program, path, offset)?;
            }
            probed.push(function);
        }
        Ok(Some(probed))
    }
}

fn attach(
    ebpf: &mut Ebpf,
    program: &'static str,
    path: &Path,
    offset: u64,
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
    uprobe
        .attach(offset, path, UProbeScope::AllProcesses)
        .map(drop)
        .map_err(err)
}

/// One line of `/proc/PID/maps`: an executable mapping of a file.
struct Mapping<'a> {
    id: FileId,
    path: &'a str,
}

impl<'a> Mapping<'a> {
    /// `address perms offset dev inode path`; None for anything but an executable
    /// mapping of a file with an absolute path.
    fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.split_ascii_whitespace();
        let _range = fields.next()?;
        let perms = fields.next()?;
        let _offset = fields.next()?;
        let dev = fields.next()?;
        let inode: u64 = fields.next()?.parse().ok()?;
        let path = fields.next()?;
        if !perms.contains('x') || inode == 0 || !path.starts_with('/') {
            return None;
        }
        let (major, minor) = dev.split_once(':')?;
        let dev = (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        );
        Some(Self {
            id: FileId { dev, inode },
            path,
        })
    }
}

/// The OpenSSL functions `path` defines, with their file offsets (where a uprobe goes).
fn probed_functions(path: &Path) -> Result<Vec<(&'static str, u64)>, TlsProbeError> {
    let read_err = |source| TlsProbeError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(TlsProbeError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let elf = object::File::parse(bytes.as_slice()).map_err(|source| TlsProbeError::Elf {
        path: path.to_owned(),
        source,
    })?;
    let mut found = Vec::new();
    for name in OPENSSL_ENTRIES
        .iter()
        .map(|(n, _)| n)
        .chain(&[LOADER_SYMBOL])
    {
        let symbol = elf
            .dynamic_symbols()
            .chain(elf.symbols())
            .find(|s| s.is_definition() && s.name() == Ok(name));
        if let Some(offset) = symbol.and_then(|s| file_offset(&elf, s.address())) {
            found.push((*name, offset));
        }
    }
    Ok(found)
}

/// Directories the dynamic loader searches on Debian and most distributions, after a
/// library's own RUNPATH (ld.so.cache lists the same libraries).
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];
/// Libraries followed at most (a program needs a few dozen).
const MAX_NEEDED: usize = 256;

/// The shared libraries `executable` needs (DT_NEEDED, transitively), resolved as the
/// dynamic loader would for the usual layouts: RUNPATH/RPATH (with `$ORIGIN`), then the
/// standard directories. Unresolvable names are left out; nothing is executed.
pub fn needed_libraries(executable: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut queue = vec![executable.to_owned()];
    while let Some(file) = queue.pop() {
        let Ok(dynamic) = dynamic_entries(&file) else {
            continue;
        };
        let origin = file.parent().map(Path::to_owned).unwrap_or_default();
        let run_dirs: Vec<PathBuf> = dynamic
            .search_paths
            .iter()
            .flat_map(|p| p.split(':'))
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d.replace("$ORIGIN", &origin.to_string_lossy())))
            .collect();
        for name in dynamic.needed {
            if found.len() >= MAX_NEEDED {
                return found;
            }
            let candidates = run_dirs
                .iter()
                .cloned()
                .chain(LIBRARY_DIRS.iter().map(PathBuf::from))
                .map(|dir| dir.join(&name));
            if let Some(path) = candidates.into_iter().find(|p| p.is_file())
                && !found.contains(&path)
            {
                found.push(path.clone());
                queue.push(path);
            }
        }
    }
    found
}

/// The dynamic loader an executable names (PT_INTERP), if any.
pub fn interpreter(executable: &Path) -> Option<PathBuf> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    let bytes = std::fs::read(executable).ok()?;
    let elf = ElfFile64::<object::Endianness>::parse(bytes.as_slice()).ok()?;
    let endian = elf.endian();
    let headers = elf
        .elf_header()
        .program_headers(endian, bytes.as_slice())
        .ok()?;
    headers.iter().find_map(|header| {
        let interp = header.interpreter(endian, bytes.as_slice()).ok()??;
        let path = std::str::from_utf8(interp).ok()?;
        Some(PathBuf::from(path))
    })
}

/// What a file's dynamic section says about the libraries it needs.
#[derive(Debug, Default)]
struct DynamicEntries {
    needed: Vec<String>,
    /// DT_RUNPATH or DT_RPATH values.
    search_paths: Vec<String>,
}

fn dynamic_entries(path: &Path) -> Result<DynamicEntries, TlsProbeError> {
    use object::read::elf::{ElfFile64, FileHeader};
    let read_err = |source| TlsProbeError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(TlsProbeError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let elf_err = |source| TlsProbeError::Elf {
        path: path.to_owned(),
        source,
    };
    let elf = ElfFile64::<object::Endianness>::parse(bytes.as_slice()).map_err(elf_err)?;
    let endian = elf.endian();
    let table = elf
        .elf_header()
        .sections(endian, bytes.as_slice())
        .and_then(|sections| sections.dynamic_table(endian, bytes.as_slice()))
        .map_err(elf_err)?;
    let mut out = DynamicEntries::default();
    for entry in table.iter() {
        let Ok(value) = table.string(entry) else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match entry.tag {
            object::elf::DT_NEEDED => out.needed.push(value),
            object::elf::DT_RUNPATH | object::elf::DT_RPATH => out.search_paths.push(value),
            _ => {}
        }
    }
    Ok(out)
}

/// Where the byte at virtual address `address` lies in the file, through the loadable
/// segments.
fn file_offset(elf: &object::File<'_>, address: u64) -> Option<u64> {
    elf.segments().find_map(|segment| {
        let (start, size) = (segment.address(), segment.size());
        let (file_start, file_size) = segment.file_range();
        (address >= start && address - start < size.min(file_size))
            .then(|| file_start + (address - start))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_name_executable_file_mappings() {
        let line = "7f1c8e1d2000-7f1c8e271000 r-xp 00022000 fe:01 1315204                    /usr/lib/x86_64-linux-gnu/libssl.so.3";
        let m = Mapping::parse(line).expect("an executable file mapping");
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert_eq!(
            m.id,
            FileId {
                dev: (0xfe, 1),
                inode: 1315204
            }
        );
        for other in [
            "7f1c8e1d2000-7f1c8e271000 r--p 00000000 fe:01 1315204 /usr/lib/libssl.so.3",
            "7ffd1a2b3000-7ffd1a2d4000 rw-p 00000000 00:00 0                          [stack]",
            "7ffd1a3f0000-7ffd1a3f2000 r-xp 00000000 00:00 0                          [vdso]",
            "garbage",
            "",
        ] {
            assert!(Mapping::parse(other).is_none(), "{other}");
        }
    }

    /// The system's libssl (Debian's OpenSSL 3): every probed function is found, at the
    /// file offset `nm`-style readers agree on (the symbol's address through PT_LOAD).
    #[test]
    fn finds_openssl_functions_in_the_system_libssl() {
        let path = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        if !path.exists() {
            eprintln!("skipped: no {}", path.display());
            return;
        }
        let found = probed_functions(path).expect("libssl reads");
        let names: Vec<_> = found.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "SSL_read",
                "SSL_read_ex",
                "SSL_write",
                "SSL_write_ex",
                "SSL_do_handshake"
            ]
        );
        assert!(found.iter().all(|(_, offset)| *offset > 0));
    }

    /// curl needs libcurl, which needs libssl: the closure finds it without running curl.
    #[test]
    fn needed_libraries_follow_the_loaders_search() {
        let curl = Path::new("/usr/bin/curl");
        if !curl.exists() {
            eprintln!("skipped: no {}", curl.display());
            return;
        }
        let needed = needed_libraries(curl);
        let names: Vec<String> = needed
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        for lib in ["libcurl.so.4", "libssl.so.3", "libc.so.6"] {
            assert!(
                names.iter().any(|n| n == lib),
                "{lib} missing from {names:?}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_elf_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("sonde-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("garbage.so");
        std::fs::write(&path, b"\x7fELF but not really").expect("write");
        assert!(matches!(
            probed_functions(&path),
            Err(TlsProbeError::Elf { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
