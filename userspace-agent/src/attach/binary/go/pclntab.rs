//! Function names and address ranges from a Go binary's `.gopclntab`, the table the Go
//! runtime itself uses for stack traces, so it survives `-ldflags=-s -w` (which strip
//! `.symtab` and DWARF). Pure: input is the section's bytes (and, for Go 1.18+, the address
//! functions are relative to); no ELF here (see `moduledata` for finding that address).
//!
//! Layout, as Go's `debug/gosym` and `runtime/symtab.go` (`pcHeader`) read it:
//!
//! ```text
//! header   magic u32 | 0 | 0 | min_lc u8 | ptr_size u8 | then words of ptr_size bytes:
//!          1.18+: nfunc, nfiles, text_start*, funcname_off, cu_off, filetab_off, pctab_off, pcln_off
//!          1.16:  nfunc, nfiles,              funcname_off, cu_off, filetab_off, pctab_off, pcln_off
//! functab  at pcln_off: nfunc pairs (entry, func_off) and a last entry (the end of the last
//!          function); entry is a u32 offset from the text start (1.18+) or an absolute
//!          ptr_size address (1.16); func_off is from pcln_off
//! _func    at pcln_off + func_off: entry (u32 1.18+, ptr 1.16), name_off i32, ...
//! names    NUL-terminated at funcname_off + name_off
//! ```
//!
//! Magic per version: `0xfffffff1` Go 1.20+, `0xfffffff0` Go 1.18 and 1.19, `0xfffffffa`
//! Go 1.16 and 1.17. Go 1.2–1.15 (`0xfffffffb`) is refused: those releases pass arguments
//! on the stack, which Sonde's Go probes do not read. (*) The header's text start is no
//! longer written by recent linkers (0; "requires a relocation", `runtime/symtab.go`), so
//! it is only a last resort. Little-endian only (x86_64, aarch64).

use thiserror::Error;

/// Go 1.20 and later.
pub const MAGIC_GO120: u32 = 0xffff_fff1;
/// Go 1.18 and 1.19.
pub const MAGIC_GO118: u32 = 0xffff_fff0;
/// Go 1.16 and 1.17.
pub const MAGIC_GO116: u32 = 0xffff_fffa;
/// Go 1.2 to 1.15 (refused).
pub const MAGIC_GO12: u32 = 0xffff_fffb;

/// The longest function name read (names of generic instantiations run long; 64 KiB is
/// far past any real one).
const MAX_NAME: usize = 64 << 10;

/// Why the table could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PclntabError {
    /// The magic is none Sonde reads (the value).
    #[error("unsupported .gopclntab magic {0:#010x}")]
    UnsupportedMagic(u32),
    /// Go 1.2–1.15: arguments on the stack, not supported.
    #[error(".gopclntab of Go 1.2-1.15 (magic 0xfffffffb): not supported")]
    TooOld,
    /// Something in the header or tables points outside the section.
    #[error("malformed .gopclntab: {0}")]
    Malformed(&'static str),
    /// Go 1.18+ entries are offsets from the text start, which is unknown.
    #[error("the text start address is unknown")]
    NoTextStart,
}

/// The table format, by the Go releases that write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PclntabVersion {
    /// Go 1.16, 1.17 (absolute entries).
    Go116,
    /// Go 1.18, 1.19.
    Go118,
    /// Go 1.20 and later.
    Go120,
}

/// A function from the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoFunc<'a> {
    /// Its name as the runtime prints it (`crypto/tls.(*Conn).Write`).
    pub name: &'a [u8],
    /// Its entry address.
    pub entry: u64,
    /// Where the next function starts (for the last one, the end of Go's text).
    pub end: u64,
}

/// A parsed `.gopclntab`, borrowing the section's bytes.
#[derive(Clone, Debug)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    version: PclntabVersion,
    ptr_size: usize,
    nfunc: usize,
    funcname_off: usize,
    pcln_off: usize,
    header_text_start: u64,
    text_start: Option<u64>,
}

impl<'a> Pclntab<'a> {
    /// Parses the header and checks that every table it points to lies inside `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, PclntabError> {
        let magic = u32::from_le_bytes(
            data.get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(PclntabError::Malformed("shorter than its header"))?,
        );
        let version = match magic {
            MAGIC_GO120 => PclntabVersion::Go120,
            MAGIC_GO118 => PclntabVersion::Go118,
            MAGIC_GO116 => PclntabVersion::Go116,
            MAGIC_GO12 => return Err(PclntabError::TooOld),
            other => return Err(PclntabError::UnsupportedMagic(other)),
        };
        let (pad, min_lc, ptr_size) = (data.get(4..6), data.get(6), data.get(7));
        if pad != Some(&[0, 0][..])
            || !matches!(min_lc, Some(1 | 2 | 4))
            || !matches!(ptr_size, Some(4 | 8))
        {
            return Err(PclntabError::Malformed("bad header"));
        }
        let ptr_size = usize::from(ptr_size.copied().unwrap_or(8));
        let word = |i: usize| -> Result<u64, PclntabError> {
            read_word(data, 8 + i * ptr_size, ptr_size)
                .ok_or(PclntabError::Malformed("truncated header"))
        };
        let offset = |i: usize| -> Result<usize, PclntabError> {
            let off = usize::try_from(word(i)?).map_err(|_| PclntabError::Malformed("offset"))?;
            if off > data.len() {
                return Err(PclntabError::Malformed(
                    "a table offset is past the section",
                ));
            }
            Ok(off)
        };
        let nfunc = usize::try_from(word(0)?).map_err(|_| PclntabError::Malformed("nfunc"))?;
        let (header_text_start, funcname_off, pcln_off) = match version {
            PclntabVersion::Go118 | PclntabVersion::Go120 => (word(2)?, offset(3)?, offset(7)?),
            PclntabVersion::Go116 => (0, offset(2)?, offset(6)?),
        };
        let tab = Pclntab {
            data,
            version,
            ptr_size,
            nfunc,
            funcname_off,
            pcln_off,
            header_text_start,
            text_start: None,
        };
        // The functab (2 * nfunc + 1 fields) must fit: this also bounds nfunc.
        let fields = nfunc
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(tab.field_size()))
            .ok_or(PclntabError::Malformed("nfunc"))?;
        if pcln_off
            .checked_add(fields)
            .is_none_or(|end| end > data.len())
        {
            return Err(PclntabError::Malformed(
                "the function table runs past the section",
            ));
        }
        Ok(tab)
    }

    /// The same table with Go 1.18+ entries resolved against `text_start` (the address of
    /// `runtime.text`, a.k.a. `moduledata.text`).
    pub fn with_text_start(mut self, text_start: u64) -> Self {
        self.text_start = Some(text_start);
        self
    }

    /// The format.
    pub fn version(&self) -> PclntabVersion {
        self.version
    }

    /// How many functions it lists.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    /// Whether it lists no function.
    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The pointer size (8 on 64-bit targets).
    pub fn ptr_size(&self) -> usize {
        self.ptr_size
    }

    /// Whether entries are offsets from the text start (Go 1.18+) rather than addresses.
    pub fn needs_text_start(&self) -> bool {
        self.version >= PclntabVersion::Go118
    }

    /// The header's text start field (Go 1.18+), if the linker wrote it (not 0).
    pub fn header_text_start(&self) -> Option<u64> {
        (self.needs_text_start() && self.header_text_start != 0).then_some(self.header_text_start)
    }

    /// The byte offset of the function-name table from the start of the section.
    pub fn funcname_offset(&self) -> usize {
        self.funcname_off
    }

    /// The byte offset of the function table (`pcln_off`) from the start of the section.
    pub fn functab_offset(&self) -> usize {
        self.pcln_off
    }

    /// The raw entry field of function `i` (an offset from the text start for Go 1.18+, an
    /// address before); `i == len()` gives the end of the last function.
    pub fn raw_entry(&self, i: usize) -> Option<u64> {
        if i > self.nfunc {
            return None;
        }
        let size = self.field_size();
        read_word(self.data, self.pcln_off + 2 * i * size, size)
    }

    /// Function `i`.
    pub fn func(&self, i: usize) -> Result<GoFunc<'a>, PclntabError> {
        if i >= self.nfunc {
            return Err(PclntabError::Malformed("function index"));
        }
        let base = if self.needs_text_start() {
            self.text_start.ok_or(PclntabError::NoTextStart)?
        } else {
            0
        };
        let size = self.field_size();
        let place = || -> Option<(u64, u64, u64)> {
            let entry = base.checked_add(self.raw_entry(i)?)?;
            let end = base.checked_add(self.raw_entry(i + 1)?)?;
            let func_off = read_word(self.data, self.pcln_off + (2 * i + 1) * size, size)?;
            // _func: entry (u32 for 1.18+, else ptr_size), then name_off: i32.
            let name_field = self
                .pcln_off
                .checked_add(usize::try_from(func_off).ok()?)?
                .checked_add(size)?;
            let name_off = read_word(self.data, name_field, 4)?;
            (entry <= end).then_some((entry, end, name_off))
        };
        let (entry, end, name_off) =
            place().ok_or(PclntabError::Malformed("function table entry"))?;
        let name = self
            .name_at(name_off)
            .ok_or(PclntabError::Malformed("function name"))?;
        Ok(GoFunc { name, entry, end })
    }

    /// Every function, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = Result<GoFunc<'a>, PclntabError>> + '_ {
        (0..self.nfunc).map(|i| self.func(i))
    }

    /// The first function named `name`; malformed entries are skipped.
    pub fn find(&self, name: &str) -> Result<Option<GoFunc<'a>>, PclntabError> {
        if self.needs_text_start() && self.text_start.is_none() {
            return Err(PclntabError::NoTextStart);
        }
        Ok(self
            .funcs()
            .filter_map(Result::ok)
            .find(|f| f.name == name.as_bytes()))
    }

    /// Whether a function named `name` is listed (works without a text start).
    pub fn contains(&self, name: &str) -> bool {
        let size = self.field_size();
        (0..self.nfunc).any(|i| {
            read_word(self.data, self.pcln_off + (2 * i + 1) * size, size)
                .and_then(|func_off| usize::try_from(func_off).ok())
                .and_then(|off| self.pcln_off.checked_add(off)?.checked_add(size))
                .and_then(|at| read_word(self.data, at, 4))
                .and_then(|name_off| self.name_at(name_off))
                == Some(name.as_bytes())
        })
    }

    fn name_at(&self, name_off: u64) -> Option<&'a [u8]> {
        let start = self
            .funcname_off
            .checked_add(usize::try_from(name_off).ok()?)?;
        let tail = self.data.get(start..)?;
        let tail = &tail[..tail.len().min(MAX_NAME)];
        let len = memchr::memchr(0, tail)?;
        Some(&tail[..len])
    }

    fn field_size(&self) -> usize {
        if self.needs_text_start() {
            4
        } else {
            self.ptr_size
        }
    }
}

/// A little-endian word of `size` (4 or 8) bytes at `at`.
fn read_word(data: &[u8], at: usize, size: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(size)?)?;
    match size {
        4 => Some(u32::from_le_bytes(bytes.try_into().ok()?).into()),
        8 => Some(u64::from_le_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
