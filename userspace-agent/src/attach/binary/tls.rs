//! Which TLS library a file is, and where its read/write functions start.
//!
//! A file *is* a TLS library when it defines the functions Sonde probes: OpenSSL's
//! `SSL_read`/`SSL_write` (a libssl, or a program with OpenSSL or BoringSSL linked
//! statically, such as node), GnuTLS's `gnutls_record_recv`/`gnutls_record_send`, or Go's
//! `crypto/tls.(*Conn).Read`/`Write`. A file that only imports them (an undefined
//! `SSL_write`, as in Python's `_ssl` module) is not: the library is another file in the
//! process, which [`imported_tls`] tells the caller to look for.
//!
//! The OpenSSL API has three implementations whose `SSL` structs differ, so the flavour is
//! reported: BoringSSL is told by functions only it defines, and GnuTLS's OpenSSL
//! compatibility layer (`libgnutls-openssl.so`) by defining `SSL_read` while importing
//! `gnutls_record_recv`.

use super::elf::{Elf, Symbol, SymbolState};
use super::go;

/// The OpenSSL-API functions probed: the first two must be defined, the rest are reported
/// when present (`_ex` since OpenSSL 1.1.1).
pub const OPENSSL_FUNCTIONS: [&str; 5] = [
    "SSL_read",
    "SSL_write",
    "SSL_read_ex",
    "SSL_write_ex",
    "SSL_do_handshake",
];

/// The GnuTLS functions probed; the first two must be defined.
pub const GNUTLS_FUNCTIONS: [&str; 3] = [
    "gnutls_record_recv",
    "gnutls_record_send",
    "gnutls_handshake",
];

/// Functions only BoringSSL defines (OpenSSL has no custom-verify or GREASE API, and no
/// `BORINGSSL_*` names).
const BORINGSSL_ONLY: [&str; 3] = [
    "SSL_CTX_set_custom_verify",
    "SSL_CTX_set_grease_enabled",
    "BORINGSSL_self_test",
];

/// Which implementation of the OpenSSL API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSslFlavor {
    /// OpenSSL itself (or a fork keeping its struct layout, unknown here).
    OpenSsl,
    /// BoringSSL (Chrome, Envoy, gRPC C++): defines a BoringSSL-only function.
    BoringSsl,
    /// GnuTLS's OpenSSL compatibility layer: `SSL_read` over `gnutls_record_recv`.
    GnuTlsCompat,
}

/// A probed function found in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsFunction {
    /// Its name, one of [`OPENSSL_FUNCTIONS`] or [`GNUTLS_FUNCTIONS`].
    pub name: &'static str,
    /// The symbol (virtual address, size, table).
    pub symbol: Symbol,
    /// Where a uprobe attaches, as a file offset.
    pub file_offset: u64,
}

/// The TLS library a file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsLibrary {
    /// It defines `SSL_read` and `SSL_write`.
    OpenSsl {
        /// Which implementation.
        flavor: OpenSslFlavor,
        /// Every function of [`OPENSSL_FUNCTIONS`] it defines, in that order.
        functions: Vec<TlsFunction>,
    },
    /// It defines `gnutls_record_recv` and `gnutls_record_send`.
    GnuTls {
        /// Every function of [`GNUTLS_FUNCTIONS`] it defines, in that order.
        functions: Vec<TlsFunction>,
    },
    /// A Go program with `crypto/tls` linked in; [`go::go_tls`] gives the probe points.
    Go {
        /// From `.go.buildinfo`, if readable.
        version: Option<go::GoVersion>,
    },
}

/// The TLS library `elf` is, if any. Go is checked first (a Go program with cgo may also
/// carry OpenSSL, but its Go connections go through `crypto/tls`), then OpenSSL, then GnuTLS.
pub fn tls_library(elf: &Elf) -> Option<TlsLibrary> {
    if go::is_go(elf) && go::has_crypto_tls(elf) {
        let version = go::buildinfo::read(elf).ok().and_then(|info| info.version);
        return Some(TlsLibrary::Go { version });
    }
    let mut names: Vec<&str> = OPENSSL_FUNCTIONS.to_vec();
    names.extend(GNUTLS_FUNCTIONS);
    names.extend(BORINGSSL_ONLY);
    let states = elf.lookup(&names);
    let (openssl, rest) = states.split_at(OPENSSL_FUNCTIONS.len());
    let (gnutls, boring) = rest.split_at(GNUTLS_FUNCTIONS.len());

    if let Some(functions) = required_pair(elf, &OPENSSL_FUNCTIONS, openssl) {
        let flavor = if boring.iter().any(|s| s.defined().is_some()) {
            OpenSslFlavor::BoringSsl
        } else if gnutls[..2].contains(&SymbolState::Undefined) {
            OpenSslFlavor::GnuTlsCompat
        } else {
            OpenSslFlavor::OpenSsl
        };
        return Some(TlsLibrary::OpenSsl { flavor, functions });
    }
    required_pair(elf, &GNUTLS_FUNCTIONS, gnutls).map(|functions| TlsLibrary::GnuTls { functions })
}

/// The functions of `names` that are defined and have a file offset, if the first two are.
fn required_pair(
    elf: &Elf,
    names: &[&'static str],
    states: &[SymbolState],
) -> Option<Vec<TlsFunction>> {
    let functions: Vec<TlsFunction> = names
        .iter()
        .zip(states)
        .filter_map(|(&name, state)| {
            let symbol = state.defined()?;
            let file_offset = elf.file_offset(symbol.address)?;
            Some(TlsFunction {
                name,
                symbol,
                file_offset,
            })
        })
        .collect();
    let has = |name| functions.iter().any(|f| f.name == name);
    (has(names[0]) && has(names[1])).then_some(functions)
}

/// A TLS library a file imports (names undefined there): the process maps it from another
/// file, which is the one to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportedTls {
    /// Imports one of [`OPENSSL_FUNCTIONS`] (Python's `_ssl` imports only the `_ex` pair).
    OpenSsl,
    /// Imports one of [`GNUTLS_FUNCTIONS`].
    GnuTls,
}

/// The TLS libraries `elf` imports, OpenSSL first.
pub fn imported_tls(elf: &Elf) -> Vec<ImportedTls> {
    let mut names: Vec<&str> = OPENSSL_FUNCTIONS.to_vec();
    names.extend(GNUTLS_FUNCTIONS);
    let states = elf.lookup(&names);
    let (openssl, gnutls) = states.split_at(OPENSSL_FUNCTIONS.len());
    let mut out = Vec::new();
    if openssl.contains(&SymbolState::Undefined) {
        out.push(ImportedTls::OpenSsl);
    }
    if gnutls.contains(&SymbolState::Undefined) {
        out.push(ImportedTls::GnuTls);
    }
    out
}

#[cfg(test)]
mod tests;
