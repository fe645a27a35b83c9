//! MiniDebugInfo: the `.gnu_debugdata` section some distributions (Fedora, RHEL, CentOS)
//! add to stripped binaries, an xz-compressed ELF file holding only a `.symtab` of the
//! functions `.dynsym` lacks (GDB's "MiniDebugInfo"; Debian does not ship it).
//!
//! Unpacked with `lzma-rust2`: pure Rust (no C liblzma to build or link), maintained, and
//! a streaming reader, so the output is capped by reading at most `limit + 1` bytes and the
//! decoder's dictionary by its memory limit, whatever the xz headers claim.

use std::io::Read;

use lzma_rust2::XzReader;
use object::FileKind;
use object::read::elf::ElfFile64;

/// The decoder's memory limit in KiB (80 MiB): enough for every xz preset (`-9`/`-9e` use a
/// 64 MiB dictionary, about 65 MiB to decode; the default `-6` 8 MiB), refusing anything
/// asking for more.
const MEM_LIMIT_KIB: u32 = 80 * 1024;

/// Unpacks the xz stream `xz` into the ELF file it holds, at most `limit` bytes; the reason
/// on failure (not xz, corrupt, too large, or not a 64-bit ELF inside).
pub(crate) fn unpack(xz: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    XzReader::new_mem_limit(xz, true, MEM_LIMIT_KIB)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("xz: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("unpacks to more than {limit} bytes"));
    }
    match FileKind::parse(out.as_slice()) {
        Ok(FileKind::Elf64) => {}
        _ => return Err("does not hold a 64-bit ELF file".to_owned()),
    }
    ElfFile64::<object::Endianness>::parse(out.as_slice())
        .map_err(|e| format!("the ELF file it holds is malformed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(unpack(b"", 1 << 20).is_err());
        assert!(unpack(b"\xfd7zXZ\0garbage", 1 << 20).is_err());
        assert!(unpack(&[0u8; 4096], 1 << 20).is_err());
    }
}
