//! The OpenSSL API's probes (OpenSSL, BoringSSL): `ebpf-probes/tls_openssl.bpf.c`.

use std::path::Path;

use aya::Ebpf;

use super::{TlsProbeError, attach};
use crate::attach::binary::TlsFunction;

/// The entry program of each probed function. They all share one return program: its
/// entry's record says what to report.
const ENTRIES: &[(&str, &str)] = &[
    ("SSL_read", "sonde_uprobe_ssl_read"),
    ("SSL_read_ex", "sonde_uprobe_ssl_read_ex"),
    ("SSL_write", "sonde_uprobe_ssl_write"),
    ("SSL_write_ex", "sonde_uprobe_ssl_write_ex"),
    ("SSL_do_handshake", "sonde_uprobe_ssl_handshake"),
];
const RETURN: &str = "sonde_uretprobe_ssl";

/// Every program of this library, for loading.
pub(super) const PROGRAMS: &[&str] = &[
    "sonde_uprobe_ssl_read",
    "sonde_uprobe_ssl_read_ex",
    "sonde_uprobe_ssl_write",
    "sonde_uprobe_ssl_write_ex",
    "sonde_uprobe_ssl_handshake",
    RETURN,
];

/// Attaches the entry and return programs to each of `functions` in `path`; the names
/// probed.
pub(super) fn attach_all(
    ebpf: &mut Ebpf,
    path: &Path,
    functions: &[TlsFunction],
) -> Result<Vec<&'static str>, TlsProbeError> {
    let mut probed = Vec::new();
    for function in functions {
        let Some((_, entry)) = ENTRIES.iter().find(|(f, _)| *f == function.name) else {
            continue;
        };
        for program in [*entry, RETURN] {
            attach(ebpf, program, path, function.file_offset, None)?;
        }
        probed.push(function.name);
    }
    Ok(probed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_program_is_loaded() {
        for (_, program) in ENTRIES {
            assert!(PROGRAMS.contains(program), "{program}");
        }
    }
}
