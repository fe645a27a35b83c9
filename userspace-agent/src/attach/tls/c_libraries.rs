//! The probes of libraries whose calls do their socket I/O on the calling thread: the
//! OpenSSL API (OpenSSL, BoringSSL: `ebpf-probes/tls_openssl.bpf.c`) and GnuTLS
//! (`ebpf-probes/tls_gnutls.bpf.c`). Each probed function has an entry program; one
//! return program per library reports what its entry recorded.

use std::path::Path;

use aya::Ebpf;

use super::{TlsProbeError, attach};
use crate::attach::binary::TlsFunction;

/// One library's programs: the entry program of each probed function, and the return
/// program they share.
pub(super) struct Programs {
    entries: &'static [(&'static str, &'static str)],
    ret: &'static str,
}

pub(super) const OPENSSL: Programs = Programs {
    entries: &[
        ("SSL_read", "sonde_uprobe_ssl_read"),
        ("SSL_read_ex", "sonde_uprobe_ssl_read_ex"),
        ("SSL_write", "sonde_uprobe_ssl_write"),
        ("SSL_write_ex", "sonde_uprobe_ssl_write_ex"),
        ("SSL_do_handshake", "sonde_uprobe_ssl_handshake"),
    ],
    ret: "sonde_uretprobe_ssl",
};

pub(super) const GNUTLS: Programs = Programs {
    entries: &[
        ("gnutls_record_recv", "sonde_uprobe_gnutls_recv"),
        ("gnutls_record_send", "sonde_uprobe_gnutls_send"),
        ("gnutls_handshake", "sonde_uprobe_gnutls_handshake"),
    ],
    ret: "sonde_uretprobe_gnutls",
};

impl Programs {
    /// Every program, for loading.
    pub(super) fn names(&self) -> impl Iterator<Item = &'static str> {
        self.entries.iter().map(|(_, p)| *p).chain([self.ret])
    }
}

/// Attaches the entry and return programs to each of `functions` in `path` (every one
/// has its program: see the tests).
pub(super) fn attach_all(
    programs: &Programs,
    ebpf: &mut Ebpf,
    path: &Path,
    functions: &[TlsFunction],
) -> Result<(), TlsProbeError> {
    for function in functions {
        let Some((_, entry)) = programs.entries.iter().find(|(f, _)| *f == function.name) else {
            continue;
        };
        for program in [*entry, programs.ret] {
            attach(ebpf, program, path, function.file_offset, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::binary::tls::{GNUTLS_FUNCTIONS, OPENSSL_FUNCTIONS};

    /// Every function attach/binary finds has a program here, and no program waits for a
    /// function it never finds.
    #[test]
    fn programs_match_the_functions_found() {
        for (programs, functions) in [
            (OPENSSL, &OPENSSL_FUNCTIONS[..]),
            (GNUTLS, &GNUTLS_FUNCTIONS[..]),
        ] {
            let mut names: Vec<&str> = programs.entries.iter().map(|(f, _)| *f).collect();
            let mut expected = functions.to_vec();
            names.sort_unstable();
            expected.sort_unstable();
            assert_eq!(names, expected);
        }
    }
}
