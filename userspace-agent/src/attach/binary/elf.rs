//! One ELF file, read once: its build ID, its function symbols (`.dynsym`, `.symtab`, and
//! the `.symtab` of MiniDebugInfo in `.gnu_debugdata`), defined told apart from undefined,
//! its `PT_LOAD` segments (which turn a symbol's virtual address into the file offset a
//! uprobe attaches at), and bounded access to its sections (zlib-compressed ones inflated).
//!
//! The file is read whole into memory, up to [`MAX_FILE_BYTES`], rather than mapped: the
//! agent reads binaries of processes it does not trust, and a process that truncates a
//! file Sonde has mapped would kill the agent with `SIGBUS`. Parsing is done by `object`
//! (as in its `nm` example); the file is parsed once on [`Elf::parse`] and the cheap header
//! parse is repeated per lookup instead of keeping an index, so an `Elf` costs its bytes and
//! no more. Every size read from the file is checked against the file or a cap before use.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{
    CompressionFormat, Endianness, FileKind, Object, ObjectSection, ObjectSymbol, SymbolKind,
    SymbolSection, elf,
};
use thiserror::Error;

use super::debugdata;

/// The largest file [`Elf::open`] reads (1 GiB): past it the file is refused, not truncated.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// The largest section (after decompression) handed out by [`Elf::section`] (512 MiB).
pub const MAX_SECTION_BYTES: u64 = 512 << 20;

/// The largest unpacked MiniDebugInfo ELF (`.gnu_debugdata`, 64 MiB; real ones are a few
/// hundred KiB to a few MiB).
pub const MAX_DEBUGDATA_BYTES: u64 = 64 << 20;

/// Why a file could not be read as an ELF binary, or one of its sections not be had.
#[derive(Debug, Error)]
pub enum ElfError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file is larger than the cap; nothing was parsed.
    #[error("{path} is {size} bytes, more than the {limit} Sonde reads")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or what was read of it).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The bytes are not an ELF file.
    #[error("not an ELF file")]
    NotElf,
    /// An ELF file of a kind Sonde does not read (only 64-bit ELF is supported).
    #[error("unsupported ELF file: {what}")]
    Unsupported {
        /// What kind.
        what: &'static str,
    },
    /// The ELF headers or tables are malformed.
    #[error("malformed ELF file: {source}")]
    Malformed {
        /// What `object` found wrong.
        #[source]
        source: object::Error,
    },
    /// A section is larger (after decompression) than [`MAX_SECTION_BYTES`].
    #[error("section {name} is {size} bytes, more than the {limit} Sonde reads")]
    SectionTooLarge {
        /// The section.
        name: String,
        /// Its (uncompressed) size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// A section is compressed with something other than zlib (zstd is refused: `object`
    /// inflates it without a bound, and Go and GCC's defaults write zlib).
    #[error("section {name} uses unsupported compression {format}")]
    UnsupportedCompression {
        /// The section.
        name: String,
        /// The compression, as `object` names it.
        format: String,
    },
    /// A compressed section did not inflate to the size its header promised.
    #[error("section {name} does not decompress: {reason}")]
    Decompress {
        /// The section.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

impl ElfError {
    fn malformed(source: object::Error) -> Self {
        ElfError::Malformed { source }
    }
}

/// The CPU a binary is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `EM_X86_64`.
    X86_64,
    /// `EM_AARCH64`.
    Aarch64,
    /// Any other `e_machine`.
    Other(u16),
}

/// Which symbol table a symbol came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolSource {
    /// `.dynsym`: exported (or imported) through the dynamic linker; survives `strip`.
    Dynsym,
    /// `.symtab`: the full static table; gone from stripped binaries.
    Symtab,
    /// The `.symtab` of the xz-compressed ELF in `.gnu_debugdata` (MiniDebugInfo).
    MiniDebugInfo,
}

/// A function defined in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Its virtual address (`st_value`), as linked (not relocated by a load bias).
    pub address: u64,
    /// Its size in bytes (`st_size`; 0 when the table does not say).
    pub size: u64,
    /// The table it came from (the first of dynsym, symtab, MiniDebugInfo that defines it).
    pub source: SymbolSource,
}

/// What the file says about a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolState {
    /// A function defined here.
    Defined(Symbol),
    /// Named but undefined (an import: the code is in another file, e.g. an undefined
    /// `SSL_write` means libssl is a separate library in the process).
    Undefined,
    /// Not named in any table.
    Absent,
}

impl SymbolState {
    /// The symbol, if defined here.
    pub fn defined(self) -> Option<Symbol> {
        match self {
            SymbolState::Defined(symbol) => Some(symbol),
            SymbolState::Undefined | SymbolState::Absent => None,
        }
    }
}

/// One `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz`: the part of the segment backed by the file.
    pub filesz: u64,
    /// `p_flags` (`PF_X` 1, `PF_W` 2, `PF_R` 4).
    pub flags: u32,
}

impl Load {
    /// Whether the segment is executable.
    pub fn executable(&self) -> bool {
        self.flags & elf::PF_X != 0
    }

    /// Whether the segment is writable.
    pub fn writable(&self) -> bool {
        self.flags & elf::PF_W != 0
    }
}

/// A section's address and contents (inflated if it was compressed).
#[derive(Debug)]
pub struct Section<'a> {
    /// `sh_addr` (0 for sections not loaded, such as DWARF).
    pub address: u64,
    /// The contents; empty for `SHT_NOBITS`.
    pub data: Cow<'a, [u8]>,
}

/// Whether MiniDebugInfo was found and read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MiniDebugInfo {
    /// No `.gnu_debugdata` section.
    Absent,
    /// Unpacked; its `.symtab` is searched after `.dynsym` and `.symtab`.
    Loaded,
    /// Present but unreadable (the reason); the other tables are still used.
    Unreadable(String),
}

/// An ELF binary read into memory. See the module docs.
pub struct Elf {
    path: Option<PathBuf>,
    data: Vec<u8>,
    machine: Machine,
    build_id: Option<Vec<u8>>,
    loads: Vec<Load>,
    debugdata: Option<Vec<u8>>,
    debugdata_state: MiniDebugInfo,
}

impl fmt::Debug for Elf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elf")
            .field("path", &self.path)
            .field("bytes", &self.data.len())
            .field("machine", &self.machine)
            .field("build_id", &self.build_id_hex())
            .field("loads", &self.loads)
            .field("minidebuginfo", &self.debugdata_state)
            .finish_non_exhaustive()
    }
}

type File64<'a> = ElfFile64<'a, Endianness, &'a [u8]>;

impl Elf {
    /// Reads and parses the file at `path` (at most [`MAX_FILE_BYTES`]).
    pub fn open(path: &Path) -> Result<Self, ElfError> {
        Self::open_with_limit(path, MAX_FILE_BYTES)
    }

    /// Reads and parses the file at `path`, refusing files over `limit` bytes.
    pub fn open_with_limit(path: &Path, limit: u64) -> Result<Self, ElfError> {
        let io = |source| ElfError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > limit {
            return Err(ElfError::FileTooLarge {
                path: path.to_owned(),
                size,
                limit,
            });
        }
        let mut data = Vec::new();
        // The size is capped above; if the reservation fails, read_to_end grows as it goes.
        let _ = data.try_reserve_exact(usize::try_from(size).unwrap_or(0));
        // Reads one byte past the limit so a file that grew after metadata() is refused too.
        file.take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(io)?;
        let read = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if read > limit {
            return Err(ElfError::FileTooLarge {
                path: path.to_owned(),
                size: read,
                limit,
            });
        }
        let mut elf = Self::parse(data)?;
        elf.path = Some(path.to_owned());
        Ok(elf)
    }

    /// Parses an ELF file held in memory.
    pub fn parse(data: Vec<u8>) -> Result<Self, ElfError> {
        match FileKind::parse(data.as_slice()) {
            Ok(FileKind::Elf64) => {}
            Ok(FileKind::Elf32) => return Err(ElfError::Unsupported { what: "32-bit ELF" }),
            Ok(_) | Err(_) => return Err(ElfError::NotElf),
        }
        let (machine, build_id, loads, debugdata, debugdata_state) = {
            let file = File64::parse(data.as_slice()).map_err(ElfError::malformed)?;
            let endian = file.endian();
            let header = file.elf_header();
            let machine = match header.e_machine(endian) {
                elf::EM_X86_64 => Machine::X86_64,
                elf::EM_AARCH64 => Machine::Aarch64,
                other => Machine::Other(other),
            };
            // A malformed note costs the build ID, not the file.
            let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
            let loads = file
                .elf_program_headers()
                .iter()
                .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
                .map(|ph| Load {
                    vaddr: ph.p_vaddr(endian),
                    memsz: ph.p_memsz(endian),
                    offset: ph.p_offset(endian),
                    filesz: ph.p_filesz(endian),
                    flags: ph.p_flags(endian),
                })
                .collect();
            let (debugdata, state) = match file.section_by_name(".gnu_debugdata") {
                None => (None, MiniDebugInfo::Absent),
                Some(section) => match section
                    .data()
                    .map_err(|e| e.to_string())
                    .and_then(|xz| debugdata::unpack(xz, MAX_DEBUGDATA_BYTES))
                {
                    Ok(inner) => (Some(inner), MiniDebugInfo::Loaded),
                    Err(reason) => (None, MiniDebugInfo::Unreadable(reason)),
                },
            };
            (machine, build_id, loads, debugdata, state)
        };
        Ok(Elf {
            path: None,
            data,
            machine,
            build_id,
            loads,
            debugdata,
            debugdata_state,
        })
    }

    /// The path it was read from, if read by [`Elf::open`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The CPU it is for.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// The GNU build ID (`NT_GNU_BUILD_ID` note), if the file has one.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The build ID in lower-case hex, as `readelf -n` and debuginfod spell it.
    pub fn build_id_hex(&self) -> Option<String> {
        use std::fmt::Write as _;
        self.build_id.as_ref().map(|id| {
            id.iter()
                .fold(String::with_capacity(id.len() * 2), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                })
        })
    }

    /// The `PT_LOAD` segments, in file order.
    pub fn loads(&self) -> &[Load] {
        &self.loads
    }

    /// Whether MiniDebugInfo was present and read.
    pub fn minidebuginfo(&self) -> &MiniDebugInfo {
        &self.debugdata_state
    }

    /// The function `name`, if defined here (by any table; see [`Elf::lookup`]).
    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        self.lookup(&[name])
            .into_iter()
            .next()
            .and_then(SymbolState::defined)
    }

    /// Whether `name` is named here but undefined (an import).
    pub fn imports(&self, name: &str) -> bool {
        self.lookup(&[name]).first() == Some(&SymbolState::Undefined)
    }

    /// What each of `names` is here, in one pass over `.dynsym`, `.symtab` and
    /// MiniDebugInfo's `.symtab`, in that order. A name is `Defined` when some table
    /// defines it as a function (`STT_FUNC` or `STT_GNU_IFUNC` in a section; the first
    /// table wins), `Undefined` when only undefined entries name it. Names are matched
    /// without symbol versions (`SSL_read`, not `SSL_read@@OPENSSL_3.0.0`).
    pub fn lookup(&self, names: &[&str]) -> Vec<SymbolState> {
        self.lookup_kind(names, Want::Function)
    }

    /// The data object `name` (`STT_OBJECT`, e.g. Go's `runtime.pclntab`), if defined here;
    /// `size` is the symbol's.
    pub fn data_symbol(&self, name: &str) -> Option<Symbol> {
        self.lookup_kind(&[name], Want::Data)
            .into_iter()
            .next()
            .and_then(SymbolState::defined)
    }

    fn lookup_kind(&self, names: &[&str], want: Want) -> Vec<SymbolState> {
        let mut found = vec![SymbolState::Absent; names.len()];
        if let Ok(file) = File64::parse(self.data.as_slice()) {
            scan(
                &mut found,
                names,
                want,
                file.dynamic_symbols(),
                SymbolSource::Dynsym,
            );
            scan(
                &mut found,
                names,
                want,
                file.symbols(),
                SymbolSource::Symtab,
            );
        }
        if let Some(inner) = &self.debugdata
            && let Ok(file) = File64::parse(inner.as_slice())
        {
            scan(
                &mut found,
                names,
                want,
                file.symbols(),
                SymbolSource::MiniDebugInfo,
            );
        }
        found
    }

    /// Every defined function, from all tables (a name defined in several appears once
    /// per table). For diagnostics and tests; attach code wants [`Elf::lookup`].
    pub fn functions(&self) -> Vec<(String, Symbol)> {
        let mut out = Vec::new();
        let mut collect = |symbols: &mut dyn Iterator<Item = (String, Symbol)>| {
            out.extend(symbols);
        };
        if let Ok(file) = File64::parse(self.data.as_slice()) {
            collect(&mut defined(file.dynamic_symbols(), SymbolSource::Dynsym));
            collect(&mut defined(file.symbols(), SymbolSource::Symtab));
        }
        if let Some(inner) = &self.debugdata
            && let Ok(file) = File64::parse(inner.as_slice())
        {
            collect(&mut defined(file.symbols(), SymbolSource::MiniDebugInfo));
        }
        out
    }

    /// The file offset of virtual address `vaddr`, through the `PT_LOAD` segment whose
    /// file-backed part holds it: what a uprobe attaches at. `None` if no segment does
    /// (e.g. an address in `.bss`, or a bogus symbol).
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let load = self.load_holding(vaddr, 1)?;
        let offset = load.offset.checked_add(vaddr - load.vaddr)?;
        (offset < self.data.len() as u64).then_some(offset)
    }

    /// The `len` file bytes at virtual address `vaddr`, if one `PT_LOAD` segment's
    /// file-backed part holds them all.
    pub fn bytes_at(&self, vaddr: u64, len: u64) -> Option<&[u8]> {
        let load = self.load_holding(vaddr, len)?;
        let start = load.offset.checked_add(vaddr - load.vaddr)?;
        let end = start.checked_add(len)?;
        self.data
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    fn load_holding(&self, vaddr: u64, len: u64) -> Option<&Load> {
        let end = vaddr.checked_add(len)?;
        self.loads.iter().find(|load| {
            vaddr >= load.vaddr
                && load
                    .vaddr
                    .checked_add(load.filesz)
                    .is_some_and(|e| end <= e)
        })
    }

    /// Whether a section of this name exists (compressed `.zdebug_*` twins count for
    /// `.debug_*` names).
    pub fn has_section(&self, name: &str) -> bool {
        File64::parse(self.data.as_slice()).is_ok_and(|file| find_section(&file, name).is_some())
    }

    /// The section `name` (`.debug_*` also finds `.zdebug_*`), inflated if compressed
    /// (`SHF_COMPRESSED` or GNU `.zdebug`, zlib only), at most [`MAX_SECTION_BYTES`].
    pub fn section(&self, name: &str) -> Result<Option<Section<'_>>, ElfError> {
        let file = File64::parse(self.data.as_slice()).map_err(ElfError::malformed)?;
        let Some(section) = find_section(&file, name) else {
            return Ok(None);
        };
        let address = section.address();
        let compressed = section.compressed_data().map_err(ElfError::malformed)?;
        let too_large = |size| ElfError::SectionTooLarge {
            name: name.to_owned(),
            size,
            limit: MAX_SECTION_BYTES,
        };
        let data = match compressed.format {
            CompressionFormat::None => {
                let size = compressed.data.len() as u64;
                if size > MAX_SECTION_BYTES {
                    return Err(too_large(size));
                }
                Cow::Borrowed(compressed.data)
            }
            CompressionFormat::Zlib => {
                let size = compressed.uncompressed_size;
                if size > MAX_SECTION_BYTES {
                    return Err(too_large(size));
                }
                Cow::Owned(inflate(name, compressed.data, size)?)
            }
            other => {
                return Err(ElfError::UnsupportedCompression {
                    name: name.to_owned(),
                    format: format!("{other:?}"),
                });
            }
        };
        Ok(Some(Section { address, data }))
    }

    /// The `(r_offset, addend)` of every dynamic `R_*_RELATIVE` relocation (x86_64 and
    /// aarch64 only; empty otherwise). Position-independent executables leave pointers in
    /// the file as 0 and put the linked value in such a relocation's addend.
    pub fn relative_relocations(&self) -> Vec<(u64, u64)> {
        let r_relative = match self.machine {
            Machine::X86_64 => elf::R_X86_64_RELATIVE,
            Machine::Aarch64 => elf::R_AARCH64_RELATIVE,
            Machine::Other(_) => return Vec::new(),
        };
        let Ok(file) = File64::parse(self.data.as_slice()) else {
            return Vec::new();
        };
        let Some(relocations) = file.dynamic_relocations() else {
            return Vec::new();
        };
        relocations
            .filter_map(|(offset, relocation)| match relocation.flags() {
                object::RelocationFlags::Elf { r_type } if r_type == r_relative => {
                    u64::try_from(relocation.addend()).ok().map(|a| (offset, a))
                }
                _ => None,
            })
            .collect()
    }
}

/// The section `name`, or for a `.debug_*` name its GNU-compressed `.zdebug_*` twin (which
/// `object` finds itself only with its `compression` feature, left off).
fn find_section<'f, 'a>(
    file: &'f File64<'a>,
    name: &str,
) -> Option<object::read::elf::ElfSection64<'a, 'f, Endianness, &'a [u8]>> {
    file.section_by_name(name).or_else(|| {
        let rest = name.strip_prefix(".debug_")?;
        file.section_by_name(&format!(".zdebug_{rest}"))
    })
}

/// Inflates zlib `data` to exactly `size` bytes (the caller has capped `size`).
fn inflate(name: &str, data: &[u8], size: u64) -> Result<Vec<u8>, ElfError> {
    let fail = |reason: String| ElfError::Decompress {
        name: name.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    out.try_reserve_exact(usize::try_from(size).map_err(|e| fail(e.to_string()))?)
        .map_err(|e| fail(e.to_string()))?;
    flate2::read::ZlibDecoder::new(data)
        .take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| fail(e.to_string()))?;
    if out.len() as u64 != size {
        return Err(fail(format!(
            "inflated to {} bytes, the header says {size}",
            out.len()
        )));
    }
    Ok(out)
}

/// Which defined symbols a lookup accepts.
#[derive(Clone, Copy)]
enum Want {
    /// `STT_FUNC`, `STT_GNU_IFUNC`.
    Function,
    /// `STT_OBJECT`, `STT_COMMON`.
    Data,
}

fn is_function<'a, S: ObjectSymbol<'a>>(symbol: &S) -> bool {
    is_kind(symbol, Want::Function)
}

fn is_kind<'a, S: ObjectSymbol<'a>>(symbol: &S, want: Want) -> bool {
    let kind = match want {
        Want::Function => SymbolKind::Text,
        Want::Data => SymbolKind::Data,
    };
    symbol.kind() == kind && matches!(symbol.section(), SymbolSection::Section(_))
}

fn scan<'a, S: ObjectSymbol<'a>>(
    found: &mut [SymbolState],
    names: &[&str],
    want: Want,
    symbols: impl Iterator<Item = S>,
    source: SymbolSource,
) {
    for symbol in symbols {
        let Ok(name) = symbol.name_bytes() else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        for (slot, wanted) in found.iter_mut().zip(names) {
            if wanted.as_bytes() != name {
                continue;
            }
            if is_kind(&symbol, want) {
                if !matches!(slot, SymbolState::Defined(_)) {
                    *slot = SymbolState::Defined(Symbol {
                        address: symbol.address(),
                        size: symbol.size(),
                        source,
                    });
                }
            } else if symbol.is_undefined() && *slot == SymbolState::Absent {
                *slot = SymbolState::Undefined;
            }
        }
    }
}

fn defined<'a, S: ObjectSymbol<'a>>(
    symbols: impl Iterator<Item = S>,
    source: SymbolSource,
) -> impl Iterator<Item = (String, Symbol)> {
    symbols.filter(is_function).filter_map(move |symbol| {
        let name = symbol.name_bytes().ok()?;
        Some((
            String::from_utf8_lossy(name).into_owned(),
            Symbol {
                address: symbol.address(),
                size: symbol.size(),
                source,
            },
        ))
    })
}

#[cfg(test)]
mod tests;
