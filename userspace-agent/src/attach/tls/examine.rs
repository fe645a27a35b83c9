//! What Sonde would probe in one file, read from the file alone (no kernel): the attach
//! code acts on it, `sonde doctor --pid` prints it.

use std::path::{Path, PathBuf};

use super::c_libraries::{self, Programs};
use super::go::GoPlan;
use super::{LOADER_SYMBOL, MAX_FILE_BYTES, ProbedLibrary, TlsProbeError};
use crate::attach::binary::{self, Elf, TlsFunction, TlsLibrary};

/// A file worth probing.
pub(super) enum Found {
    /// The dynamic loader: its debugger hook tells when a library is loaded.
    Loader { offset: u64 },
    /// A library whose calls do their I/O on the calling thread (OpenSSL API, GnuTLS).
    CLibrary {
        programs: &'static Programs,
        library: ProbedLibrary,
        functions: Vec<TlsFunction>,
    },
    /// A Go program with crypto/tls.
    Go(Box<GoPlan>),
}

impl Found {
    /// The library and the functions probed in it; None for the loader.
    pub(super) fn summary(&self) -> Option<(ProbedLibrary, Vec<&'static str>)> {
        match self {
            Found::Loader { .. } => None,
            Found::CLibrary {
                library, functions, ..
            } => Some((library.clone(), functions.iter().map(|f| f.name).collect())),
            Found::Go(plan) => Some((plan.library(), plan.functions())),
        }
    }
}

/// Reads `path` and says what in it Sonde probes: None for a file with no TLS library
/// (most files); an error for a TLS library that cannot be probed (a Go release without
/// known offsets...) or a file that cannot be read.
pub(super) fn examine(path: &Path) -> Result<Option<Found>, TlsProbeError> {
    let elf = Elf::open_with_limit(path, MAX_FILE_BYTES)?;
    if let Some(loader) = elf.symbol(LOADER_SYMBOL)
        && let Some(offset) = elf.file_offset(loader.address)
    {
        return Ok(Some(Found::Loader { offset }));
    }
    Ok(match binary::tls_library(&elf) {
        Some(TlsLibrary::OpenSsl { flavor, functions }) => Some(Found::CLibrary {
            programs: &c_libraries::OPENSSL,
            library: ProbedLibrary::OpenSsl(flavor),
            functions,
        }),
        Some(TlsLibrary::GnuTls { functions }) => Some(Found::CLibrary {
            programs: &c_libraries::GNUTLS,
            library: ProbedLibrary::GnuTls,
            functions,
        }),
        Some(TlsLibrary::Go { .. }) => Some(Found::Go(Box::new(GoPlan::read(path, &elf)?))),
        None => None,
    })
}

/// One TLS library file a process maps, as `sonde doctor --pid` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    /// The path as the process maps it.
    pub path: PathBuf,
    /// The library and the functions Sonde would probe, or why it cannot.
    pub outcome: Result<(ProbedLibrary, Vec<&'static str>), String>,
}

/// The TLS libraries process `pid` maps, and what Sonde would probe in each, read from
/// the files only. None: the process is gone or its maps are unreadable.
pub fn process_report(pid: u32) -> Option<Vec<FileReport>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for mapping in maps.lines().filter_map(super::maps_line::Mapping::parse) {
        if !seen.insert(mapping.id) {
            continue;
        }
        let path = super::path_seen_by(pid, mapping.path);
        let outcome = match examine(&path) {
            Ok(Some(found)) => match found.summary() {
                Some(summary) => Ok(summary),
                None => continue,
            },
            Ok(None) => continue,
            // A file that is not ELF (or unreadable) is not reported as a library.
            Err(TlsProbeError::Elf(_)) => continue,
            Err(e) => Err(format!("{:#}", anyhow::Error::from(e))),
        };
        out.push(FileReport {
            path: PathBuf::from(mapping.path),
            outcome,
        });
    }
    Some(out)
}
