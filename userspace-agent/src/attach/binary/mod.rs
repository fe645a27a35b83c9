//! Reading the binaries Sonde probes, without a kernel: pure functions from a file (or its
//! bytes) to values, for the uprobe attach code.
//!
//! - [`elf`]: one ELF file read once: build ID, function symbols (`.dynsym`, `.symtab`,
//!   MiniDebugInfo) defined vs undefined, virtual address to file offset through `PT_LOAD`
//! - `debugdata`: unpacking MiniDebugInfo (`.gnu_debugdata`, xz)
//! - [`tls`]: which TLS library a file is (OpenSSL, BoringSSL, GnuTLS, Go) and the file
//!   offsets of its read/write functions, or which one it imports
//! - [`go`]: a Go binary's release, functions (also when stripped), `RET` sites, struct
//!   offsets (DWARF, else a table by release), summed up by [`go::go_tls`]
//!
//! Everything read from a file is untrusted: sizes are checked against the file and caps
//! before anything is allocated from them, and a malformed file gives an error or `None`.

#![warn(missing_docs)]

mod debugdata;
pub mod elf;
pub mod go;
pub mod tls;

pub use elf::{Elf, ElfError, Symbol, SymbolSource, SymbolState};
pub use go::{FnProbe, GoTls, GoTlsError, go_tls};
pub use tls::{ImportedTls, OpenSslFlavor, TlsFunction, TlsLibrary, imported_tls, tls_library};

#[cfg(test)]
mod testutil;
