//! The files a program will map before it runs, read from its ELF headers the way the
//! dynamic loader resolves them (`sonde run` probes them before the first instruction).

use std::path::{Path, PathBuf};

use super::{MAX_FILE_BYTES, TlsProbeError};

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
    let elf_err = |source| TlsProbeError::Object {
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

/// The system's own TLS libraries (`libssl.so*`, `libgnutls.so*` in the standard library
/// directories).
pub(super) fn system_tls_libraries() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in LIBRARY_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libssl.so") || n.starts_with("libgnutls.so"))
        }));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
