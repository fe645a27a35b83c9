//! The Go version and module path a binary was built with, from its build-info blob, as
//! Go's `debug/buildinfo` reads it (no running of the binary).
//!
//! The blob sits in `.go.buildinfo` (else near the start of the first writable, not
//! executable, `PT_LOAD` segment), 16-byte aligned:
//!
//! ```text
//! 0   "\xff Go buildinf:"   14 bytes of magic
//! 14  ptr_size              u8
//! 15  flags                 bit 0: big-endian pointers; bit 1: strings inline (Go 1.18+)
//! 16  version, modinfo      Go 1.18+: padding to 32, then two uvarint-length-prefixed
//!                           strings; before: two pointers to Go string headers (ptr, len)
//! ```
//!
//! `modinfo` is framed by 16-byte sentinels, stripped here, and holds tab-separated lines:
//! `path <main package>`, `mod <module> <version> <sum>`, `dep ...`, `build ...`.

use thiserror::Error;

use crate::attach::binary::elf::Elf;

/// What starts the blob.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const ALIGN: u64 = 16;
const HEADER_SIZE: usize = 32;
const FLAG_BIG_ENDIAN: u8 = 0x1;
const FLAG_INLINE: u8 = 0x2;
/// How far into the data segment the blob is searched for when there is no section
/// (the linker puts it first; Go searches the whole segment, Sonde the first 16 MiB).
const SEARCH_LIMIT: u64 = 16 << 20;
/// The longest version string accepted.
const MAX_VERSION: u64 = 1024;
/// The longest modinfo accepted (1 MiB; a large program's is tens of KiB).
const MAX_MODINFO: u64 = 1 << 20;

/// Why the build info could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildInfoError {
    /// No `.go.buildinfo` section and no blob in the data segment: not a Go binary (or one
    /// older than Go 1.13).
    #[error("no Go build info (not a Go binary)")]
    NotFound,
    /// The blob is there but malformed.
    #[error("malformed Go build info: {0}")]
    Malformed(&'static str),
}

/// A Go release, parsed from the version string (`go1.26.8`, `go1.21rc2`, `go1.22-20231128-RC02`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoVersion {
    /// 1.
    pub major: u32,
    /// 26 in go1.26.8.
    pub minor: u32,
    /// 8 in go1.26.8; 0 when absent (go1.21rc2 gives 0).
    pub patch: u32,
}

impl GoVersion {
    /// Parses `goMAJOR.MINOR[.PATCH]` and ignores what follows (`rc2`, `-2023...`, ` X:...`);
    /// `None` for development builds (`devel ...`) and anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("go")?;
        let (major, rest) = leading_number(rest)?;
        let rest = rest.strip_prefix('.')?;
        let (minor, rest) = leading_number(rest)?;
        let patch = rest
            .strip_prefix('.')
            .and_then(leading_number)
            .map_or(0, |(patch, _)| patch);
        Some(GoVersion {
            major,
            minor,
            patch,
        })
    }

    /// Whether this release passes arguments in registers on amd64 (Go 1.17+, the
    /// `regabi` ABIInternal), which the probes assume.
    pub fn has_register_abi(&self) -> bool {
        (self.major, self.minor) >= (1, 17)
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// What the blob says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// The version string as written (`go1.26.8`, `devel go1.27-abc123 ...`).
    pub go_version: String,
    /// The parsed release, `None` for development builds.
    pub version: Option<GoVersion>,
    /// The main package's path (`path` line), if there is modinfo.
    pub path: Option<String>,
    /// The main module's path (`mod` line), if built in module mode.
    pub main_module: Option<String>,
    /// The modinfo text, sentinels stripped (empty if absent).
    pub modinfo: String,
}

/// Reads the build info of `elf`.
pub fn read(elf: &Elf) -> Result<BuildInfo, BuildInfoError> {
    let (_, data) = locate(elf).ok_or(BuildInfoError::NotFound)?;
    decode(data, &|vaddr, len| elf.bytes_at(vaddr, len))
}

/// The blob's virtual address and the bytes from there to the end of its section or segment.
fn locate(elf: &Elf) -> Option<(u64, &[u8])> {
    if let Ok(Some(section)) = elf.section(".go.buildinfo") {
        // Uncompressed in every Go binary; look its bytes up through PT_LOAD to borrow them.
        let len = section.data.len() as u64;
        let data = elf.bytes_at(section.address, len)?;
        return find_magic(section.address, data);
    }
    let load = elf
        .loads()
        .iter()
        .find(|l| l.writable() && !l.executable())?;
    let len = load.filesz.min(SEARCH_LIMIT);
    let data = elf.bytes_at(load.vaddr, len)?;
    find_magic(load.vaddr, data)
}

/// The first 16-byte-aligned (by address) copy of [`MAGIC`] in `data` loaded at `address`,
/// and the bytes from there on.
fn find_magic(address: u64, data: &[u8]) -> Option<(u64, &[u8])> {
    let mut from = 0;
    while let Some(found) = memchr::memmem::find(data.get(from..)?, MAGIC) {
        let at = from + found;
        let vaddr = address.checked_add(at as u64)?;
        if vaddr.is_multiple_of(ALIGN) {
            return Some((vaddr, data.get(at..)?));
        }
        from = at + 1;
    }
    None
}

/// Decodes a blob whose bytes (from its magic to the end of its section) are `data`;
/// `read_at(vaddr, len)` reads the file's bytes at a virtual address (for pre-1.18 blobs,
/// whose strings are elsewhere).
pub fn decode<'a>(
    data: &[u8],
    read_at: &dyn Fn(u64, u64) -> Option<&'a [u8]>,
) -> Result<BuildInfo, BuildInfoError> {
    let header = data
        .get(..HEADER_SIZE)
        .ok_or(BuildInfoError::Malformed("truncated header"))?;
    if !header.starts_with(MAGIC) {
        return Err(BuildInfoError::Malformed("no magic"));
    }
    let ptr_size = header[14];
    let flags = header[15];
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let rest = &data[HEADER_SIZE..];
        let (version, rest) = varint_string(rest, MAX_VERSION)?;
        let (modinfo, _) = varint_string(rest, MAX_MODINFO)?;
        (version, modinfo)
    } else {
        let big = flags & FLAG_BIG_ENDIAN != 0;
        let word = |b: &[u8]| -> Option<u64> {
            match (ptr_size, big) {
                (8, false) => Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)),
                (8, true) => Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?)),
                (4, false) => Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?).into()),
                (4, true) => Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?).into()),
                _ => None,
            }
        };
        let ptr = u64::from(ptr_size);
        let string_at = |header_addr: u64, max: u64| -> Option<&'a [u8]> {
            let hdr = read_at(header_addr, 2 * ptr)?;
            let (str_addr, len) = (word(hdr)?, word(hdr.get(usize::from(ptr_size)..)?)?);
            if len > max {
                return None;
            }
            read_at(str_addr, len)
        };
        let version_ptr = word(&header[16..]).ok_or(BuildInfoError::Malformed("pointer size"))?;
        let modinfo_ptr = word(&header[16 + usize::from(ptr_size)..])
            .ok_or(BuildInfoError::Malformed("pointer size"))?;
        let version = string_at(version_ptr, MAX_VERSION)
            .ok_or(BuildInfoError::Malformed("version string"))?;
        let modinfo = string_at(modinfo_ptr, MAX_MODINFO).unwrap_or_default();
        (version, modinfo)
    };
    if version.is_empty() {
        return Err(BuildInfoError::Malformed("empty version"));
    }
    let go_version = String::from_utf8_lossy(version).into_owned();
    let modinfo = strip_sentinels(modinfo);
    let modinfo = String::from_utf8_lossy(modinfo).into_owned();
    let field = |key: &str| {
        modinfo.lines().find_map(|line| {
            let mut parts = line.split('\t');
            (parts.next() == Some(key))
                .then(|| parts.next())
                .flatten()
                .map(str::to_owned)
        })
    };
    Ok(BuildInfo {
        version: GoVersion::parse(&go_version),
        path: field("path"),
        main_module: field("mod"),
        go_version,
        modinfo,
    })
}

/// A uvarint length, then that many bytes (at most `max`); and what follows.
fn varint_string(data: &[u8], max: u64) -> Result<(&[u8], &[u8]), BuildInfoError> {
    let mut len = 0u64;
    let mut used = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            used = i + 1;
            break;
        }
    }
    if used == 0 {
        return Err(BuildInfoError::Malformed("bad string length"));
    }
    if len > max {
        return Err(BuildInfoError::Malformed("string too long"));
    }
    let rest = &data[used..];
    let len = usize::try_from(len).map_err(|_| BuildInfoError::Malformed("string too long"))?;
    if rest.len() < len {
        return Err(BuildInfoError::Malformed("string runs past the section"));
    }
    Ok(rest.split_at(len))
}

/// Strips cmd/go's 16-byte start and end sentinels, as `debug/buildinfo` does (its test:
/// at least 33 bytes and a newline 17 bytes from the end); no modinfo otherwise.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &[]
    }
}

#[cfg(test)]
mod tests;
