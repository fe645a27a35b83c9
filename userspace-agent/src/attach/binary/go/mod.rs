//! A Go binary's facts, read without running it: release ([`buildinfo`]), functions
//! ([`pclntab`], which survives `-ldflags=-s -w`, and the text start it needs,
//! [`moduledata`]), the `RET`s of a function ([`returns_x86_64`]), struct offsets from DWARF
//! ([`dwarf`]) or, for binaries without DWARF, by release ([`offsets`]); and [`go_tls`],
//! which puts them together into the probe points of `crypto/tls`.
//!
//! # Register ABI (amd64), what the probes read
//!
//! From Go 1.17 on amd64, Go functions take and return arguments in registers
//! (`ABIInternal`, `src/cmd/compile/abi-internal.md`, "amd64 architecture"): integer
//! arguments and results go, in order, in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; the
//! receiver is the first argument, a slice takes three registers (ptr, len, cap), an
//! interface two (itab or type, data); R14 holds the current goroutine `g` everywhere
//! ("Current goroutine" in the special-purpose register table), so `g` (or its `goid`)
//! keys entry/return pairs as pixie's `go_tls_trace.c` does, since goroutines move between
//! threads. Hence:
//!
//! ```text
//! func (c *Conn) Write(b []byte) (int, error)    func (c *Conn) Read(b []byte) (int, error)
//!   entry:  RAX = c, RBX = b.ptr, RCX = b.len, RDI = b.cap
//!   RET:    RAX = n, RBX = err.itab, RCX = err.data (err == nil iff RBX == 0)
//! ```
//!
//! Releases before 1.17 pass everything on the stack; [`go_tls`] refuses them. Returns are
//! probed at each `RET` ([`returns_x86_64`] explains why uretprobes are not used).

pub mod buildinfo;
pub mod dwarf;
pub mod moduledata;
pub mod offsets;
pub mod pclntab;
pub mod returns_x86_64;
pub mod runtime;

use thiserror::Error;

pub use buildinfo::{BuildInfo, BuildInfoError, GoVersion};
pub use moduledata::TextStartSource;
pub use offsets::{ConnField, ConnOffsets};
pub use pclntab::{Pclntab, PclntabError};

use crate::attach::binary::elf::{Elf, Machine};

/// `(*crypto/tls.Conn).Write`, as Go names it in symbols and the pclntab.
pub const CONN_WRITE: &str = "crypto/tls.(*Conn).Write";
/// `(*crypto/tls.Conn).Read`.
pub const CONN_READ: &str = "crypto/tls.(*Conn).Read";

/// The largest function whose bytes are decoded for `RET`s (1 MiB; `(*Conn).Read` is a
/// few hundred bytes).
pub const MAX_FUNCTION_BYTES: u64 = 1 << 20;

/// The section names `.gopclntab` has had (the second in PIE binaries of older linkers).
const PCLNTAB_SECTIONS: [&str; 2] = [".gopclntab", ".data.rel.ro.gopclntab"];

/// Why a Go binary's TLS probe points could not be had.
#[derive(Debug, Error)]
pub enum GoTlsError {
    /// Neither `.go.buildinfo` nor `.gopclntab`: not a Go binary.
    #[error("not a Go binary")]
    NotGo,
    /// The build info (hence the release) could not be read.
    #[error(transparent)]
    BuildInfo(#[from] BuildInfoError),
    /// A development build (`devel go1.27-...`): no release to check the ABI or look
    /// offsets up by.
    #[error("unreleased Go {0:?}: not supported")]
    DevelVersion(String),
    /// Built before Go 1.17: arguments on the stack.
    #[error("{0} passes arguments on the stack (register ABI since go1.17): not supported")]
    NoRegisterAbi(GoVersion),
    /// Only x86_64 return sites can be found so far.
    #[error("Go probes need x86_64, this binary is for {0:?}")]
    UnsupportedMachine(Machine),
    /// The pclntab is unusable.
    #[error(transparent)]
    Pclntab(#[from] PclntabError),
    /// The pclntab cannot place functions: `runtime.text` unknown (see [`moduledata`]).
    #[error("stripped Go binary whose text start cannot be found")]
    NoTextStart,
    /// The function is in no symbol table and not in the pclntab: `crypto/tls` is not
    /// linked in (or not this method).
    #[error("{0} is not in the binary")]
    FunctionMissing(&'static str),
    /// The function's bytes or file offset could not be read.
    #[error("{name}: {reason}")]
    FunctionBytes {
        /// The function.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No `RET` decoded in the function.
    #[error("{0}: no RET instruction found")]
    NoReturns(&'static str),
    /// The DWARF lacks a field, or there is no DWARF (the reason) and no table row for
    /// the release.
    #[error("struct offsets unknown for {version}: {reason}")]
    OffsetsUnknown {
        /// The version string.
        version: String,
        /// What DWARF and the table lacked.
        reason: String,
    },
}

/// Where the functions' addresses came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionSource {
    /// A symbol table (`.symtab` of an unstripped binary).
    Symtab,
    /// The pclntab (stripped binary), with the text start found as said.
    Pclntab(TextStartSource),
}

/// Where the struct offsets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetsSource {
    /// This binary's DWARF.
    Dwarf,
    /// [`offsets::TABLE`], by release; `measured_on` names the toolchain the row came from.
    VersionTable {
        /// The toolchain the row was read from (`go1.26.8`).
        measured_on: &'static str,
    },
}

/// A Go function's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoFunction {
    /// Entry virtual address.
    pub address: u64,
    /// End virtual address (exclusive).
    pub end: u64,
    /// Where it was found.
    pub source: FunctionSource,
}

/// Where to probe one function, as file offsets (what uprobes attach at).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FnProbe {
    /// Entry virtual address (for reports).
    pub address: u64,
    /// File offset of the entry.
    pub entry_offset: u64,
    /// File offset of every `RET` in the function, in order; never empty.
    pub return_offsets: Vec<u64>,
}

/// Everything the Go TLS probes need of one binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoTls {
    /// The version string as written (`go1.26.8`).
    pub go_version: String,
    /// The release.
    pub version: GoVersion,
    /// Where [`GoTls::write`] and [`GoTls::read`] were found.
    pub functions_from: FunctionSource,
    /// Where [`GoTls::offsets`] came from.
    pub offsets_from: OffsetsSource,
    /// `(*Conn).Write`.
    pub write: FnProbe,
    /// `(*Conn).Read`.
    pub read: FnProbe,
    /// The path from `*tls.Conn` to the socket's fd.
    pub offsets: ConnOffsets,
}

/// Whether `elf` is a Go binary (has `.go.buildinfo` or a `.gopclntab`).
pub fn is_go(elf: &Elf) -> bool {
    elf.has_section(".go.buildinfo")
        || PCLNTAB_SECTIONS.iter().any(|name| elf.has_section(name))
        || buildinfo::read(elf).is_ok()
}

/// Whether `crypto/tls.(*Conn).Write` and `Read` are in `elf` (symbols or pclntab).
pub fn has_crypto_tls(elf: &Elf) -> bool {
    [CONN_WRITE, CONN_READ].iter().all(|name| {
        elf.symbol(name).is_some() || pclntab_of(elf).is_ok_and(|(tab, _)| tab.contains(name))
    })
}

/// The `.gopclntab` of `elf` and its virtual address, found as Go's own tools find it (the
/// section, else the `runtime.pclntab`..`runtime.epclntab` symbols), else, for a stripped
/// binary whose linker merged the table into another section (LLD puts it in
/// `.data.rel.ro`), by scanning non-executable segments for an aligned table header that the
/// runtime's `moduledata` points at (the same cross-check as [`moduledata`]).
pub fn pclntab_of(elf: &Elf) -> Result<(Pclntab<'_>, u64), GoTlsError> {
    let mut last_error = None;
    for name in PCLNTAB_SECTIONS {
        let Ok(Some(section)) = elf.section(name) else {
            continue;
        };
        // Borrow the bytes through PT_LOAD (it is always loaded and uncompressed).
        let len = section.data.len() as u64;
        let Some(data) = elf.bytes_at(section.address, len) else {
            continue;
        };
        match Pclntab::parse(data) {
            Ok(tab) => return Ok((tab, section.address)),
            Err(e) => last_error = Some(e),
        }
    }
    if let (Some(start), Some(end)) = (
        elf.data_symbol("runtime.pclntab"),
        elf.data_symbol("runtime.epclntab"),
    ) && let Some(data) = end
        .address
        .checked_sub(start.address)
        .and_then(|len| elf.bytes_at(start.address, len))
    {
        match Pclntab::parse(data) {
            Ok(tab) => return Ok((tab, start.address)),
            Err(e) => last_error = Some(e),
        }
    }
    if let Some(found) = scan_for_pclntab(elf) {
        return Ok(found);
    }
    Err(last_error.map_or(GoTlsError::NotGo, GoTlsError::Pclntab))
}

/// How many table-header look-alikes are checked against moduledata, in all.
const MAX_PCLNTAB_CANDIDATES: usize = 8;

fn scan_for_pclntab(elf: &Elf) -> Option<(Pclntab<'_>, u64)> {
    let finder = moduledata::Finder::new(elf);
    let mut tried = 0;
    for load in elf.loads().iter().filter(|l| !l.executable()) {
        let Some(bytes) = elf.bytes_at(load.vaddr, load.filesz) else {
            continue;
        };
        for magic in [
            pclntab::MAGIC_GO120,
            pclntab::MAGIC_GO118,
            pclntab::MAGIC_GO116,
        ] {
            let mut needle = magic.to_le_bytes().to_vec();
            needle.extend_from_slice(&[0, 0]);
            for at in memchr::memmem::find_iter(bytes, &needle) {
                let vaddr = load.vaddr + at as u64;
                if !vaddr.is_multiple_of(8) {
                    continue;
                }
                let Ok(tab) = Pclntab::parse(&bytes[at..]) else {
                    continue;
                };
                if finder.text(vaddr, &tab).is_some() {
                    return Some((tab, vaddr));
                }
                tried += 1;
                if tried >= MAX_PCLNTAB_CANDIDATES {
                    return None;
                }
            }
        }
    }
    None
}

/// `name` from a symbol table (with a size), if there.
pub fn symtab_function(elf: &Elf, name: &str) -> Option<GoFunction> {
    let symbol = elf.symbol(name).filter(|s| s.size > 0)?;
    Some(GoFunction {
        address: symbol.address,
        end: symbol.address.checked_add(symbol.size)?,
        source: FunctionSource::Symtab,
    })
}

/// `name` from the pclntab, whatever the symbol tables say (for stripped binaries, and to
/// check one method against the other).
pub fn pclntab_function(elf: &Elf, name: &str) -> Result<Option<GoFunction>, GoTlsError> {
    let (tab, address) = pclntab_of(elf)?;
    let (tab, source) = if tab.needs_text_start() {
        let (text, source) =
            moduledata::text_start(elf, address, &tab).ok_or(GoTlsError::NoTextStart)?;
        (tab.with_text_start(text), source)
    } else {
        (tab, TextStartSource::NotNeeded)
    };
    Ok(tab.find(name)?.map(|f| GoFunction {
        address: f.entry,
        end: f.end,
        source: FunctionSource::Pclntab(source),
    }))
}

/// `name` from a symbol table if there, else from the pclntab.
pub fn find_function(elf: &Elf, name: &str) -> Result<Option<GoFunction>, GoTlsError> {
    match symtab_function(elf, name) {
        Some(function) => Ok(Some(function)),
        None => pclntab_function(elf, name),
    }
}

/// The entry and every `RET` of `function`, as file offsets.
pub fn probe_points(
    elf: &Elf,
    name: &'static str,
    function: &GoFunction,
) -> Result<FnProbe, GoTlsError> {
    let fail = |reason: &str| GoTlsError::FunctionBytes {
        name,
        reason: reason.to_owned(),
    };
    let len = function
        .end
        .checked_sub(function.address)
        .ok_or_else(|| fail("ends before it starts"))?;
    if len > MAX_FUNCTION_BYTES {
        return Err(fail("larger than the cap"));
    }
    let entry_offset = elf
        .file_offset(function.address)
        .ok_or_else(|| fail("entry is in no PT_LOAD segment"))?;
    let code = elf
        .bytes_at(function.address, len)
        .ok_or_else(|| fail("bytes are not all in one PT_LOAD segment"))?;
    let return_offsets =
        returns_x86_64::return_offsets(entry_offset, code).map_err(|e| fail(&e.to_string()))?;
    if return_offsets.is_empty() {
        return Err(GoTlsError::NoReturns(name));
    }
    Ok(FnProbe {
        address: function.address,
        entry_offset,
        return_offsets,
    })
}

/// The build info and release of the Go binary `elf`, if its functions can be probed: an
/// x86_64 build by a released Go with the register ABI (go1.17+).
pub fn probeable_release(elf: &Elf) -> Result<(BuildInfo, GoVersion), GoTlsError> {
    if !is_go(elf) {
        return Err(GoTlsError::NotGo);
    }
    if elf.machine() != Machine::X86_64 {
        return Err(GoTlsError::UnsupportedMachine(elf.machine()));
    }
    let info = buildinfo::read(elf)?;
    let version = info
        .version
        .ok_or_else(|| GoTlsError::DevelVersion(info.go_version.clone()))?;
    if !version.has_register_abi() {
        return Err(GoTlsError::NoRegisterAbi(version));
    }
    Ok((info, version))
}

/// Struct offsets of `elf` for `queries`: from DWARF when the binary has it (it describes
/// this very build, and one that lacks a field is a build the table cannot speak for
/// either; `from_dwarf` gives None when a field is missing), else from the table's row for
/// the release (`from_row`); an error naming what is missing otherwise.
pub fn dwarf_or_table<T>(
    elf: &Elf,
    info: &BuildInfo,
    version: &GoVersion,
    queries: &[dwarf::MemberQuery<'_>],
    from_dwarf: impl FnOnce(&[Option<u64>]) -> Option<T>,
    from_row: impl FnOnce(&offsets::TableRow) -> T,
) -> Result<(T, OffsetsSource), GoTlsError> {
    match dwarf::member_offsets(elf, queries) {
        Ok(found) => {
            let value = from_dwarf(&found).ok_or_else(|| {
                let missing: Vec<String> = queries
                    .iter()
                    .zip(&found)
                    .filter(|(_, offset)| offset.is_none())
                    .map(|(q, _)| format!("{}.{}", q.type_name, q.member))
                    .collect();
                GoTlsError::OffsetsUnknown {
                    version: info.go_version.clone(),
                    reason: format!("its DWARF has no {}", missing.join(", ")),
                }
            })?;
            Ok((value, OffsetsSource::Dwarf))
        }
        Err(e) => {
            let row = offsets::for_version(version).ok_or_else(|| GoTlsError::OffsetsUnknown {
                version: info.go_version.clone(),
                reason: format!(
                    "{e}, and the offsets table has no row for go{}.{}",
                    version.major, version.minor
                ),
            })?;
            let measured_on = row.measured_on;
            Ok((from_row(row), OffsetsSource::VersionTable { measured_on }))
        }
    }
}

/// The probe points and offsets of `crypto/tls` in the Go binary `elf`: functions from the
/// symbol table, else the pclntab; offsets from DWARF, else [`offsets::TABLE`] by release;
/// an error naming what is missing otherwise.
pub fn go_tls(elf: &Elf) -> Result<GoTls, GoTlsError> {
    let (info, version) = probeable_release(elf)?;

    let write_fn =
        find_function(elf, CONN_WRITE)?.ok_or(GoTlsError::FunctionMissing(CONN_WRITE))?;
    let read_fn = find_function(elf, CONN_READ)?.ok_or(GoTlsError::FunctionMissing(CONN_READ))?;
    let write = probe_points(elf, CONN_WRITE, &write_fn)?;
    let read = probe_points(elf, CONN_READ, &read_fn)?;

    let queries = ConnField::ALL.map(ConnField::query);
    let (offsets, offsets_from) = dwarf_or_table(
        elf,
        &info,
        &version,
        &queries,
        ConnOffsets::from_fields,
        |row| row.offsets,
    )?;

    Ok(GoTls {
        go_version: info.go_version,
        version,
        // Both come from the same place unless a symbol table lists only one.
        functions_from: write_fn.source,
        offsets_from,
        write,
        read,
        offsets,
    })
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
