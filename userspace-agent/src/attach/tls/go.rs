//! Go's `crypto/tls` probes (`ebpf-probes/tls_go.bpf.c`): each Go program carries its own
//! copy, so every Go binary is probed on its own, with its own struct offsets. The
//! binary's number, given to its probes as their attach cookie, selects its offsets in
//! the `go_tls_binaries` map.

use std::path::Path;

use aya::Ebpf;
use aya::maps::Array;

use super::{ProbedLibrary, TlsProbeError, attach};
use crate::abi::RawGoTlsOffsets;
use crate::attach::binary::go::{self, FunctionSource, GoTls, OffsetsSource};
use crate::attach::binary::{Elf, go_tls};

const WRITE: &str = "sonde_uprobe_go_tls_write";
const READ: &str = "sonde_uprobe_go_tls_read";
const READ_RETURN: &str = "sonde_uprobe_go_tls_read_return";
const HANDSHAKE: &str = "sonde_uprobe_go_tls_handshake";

/// Every program of this library, for loading.
pub(super) const PROGRAMS: &[&str] = &[WRITE, READ, READ_RETURN, HANDSHAKE];

/// Where every handshake of a `Conn` runs (client and server, since go1.17).
const CONN_HANDSHAKE: &str = "crypto/tls.(*Conn).handshakeContext";
/// The itab of `*net.TCPConn` as a `net.Conn`, named in unstripped binaries.
const TCP_CONN_ITAB: &str = "go:itab.*net.TCPConn,net.Conn";
/// `itab.hash`'s offset: after the interface and type pointers (go1.17 to go1.26).
const ITAB_HASH_OFFSET: u64 = 16;
/// The map the probes read the offsets from; its size (`GO_TLS_MAX_BINARIES`).
const MAP: &str = "go_tls_binaries";
const MAX_BINARIES: u32 = 256;

/// What Sonde probes in one Go program, read from the file.
pub(super) struct GoPlan {
    tls: GoTls,
    /// `(*Conn).handshakeContext`'s entry, when found.
    handshake: Option<u64>,
    offsets: RawGoTlsOffsets,
}

impl GoPlan {
    /// Reads the probe points and offsets of the Go program `path` (read into `elf`).
    pub(super) fn read(path: &Path, elf: &Elf) -> Result<Self, TlsProbeError> {
        let tls = go_tls(elf).map_err(|source| TlsProbeError::Go {
            path: path.to_owned(),
            source,
        })?;
        // Without it a server's handshake ciphertext reaches userspace, where it is
        // recognised and skipped: worth having, not worth refusing the binary for.
        let handshake = go::find_function(elf, CONN_HANDSHAKE)
            .ok()
            .flatten()
            .and_then(|f| elf.file_offset(f.address));
        let offsets = RawGoTlsOffsets {
            tls_conn_conn: tls.offsets.tls_conn_conn,
            net_conn_fd: tls.offsets.net_conn_fd,
            net_fd_pfd: tls.offsets.net_fd_pfd,
            poll_fd_sysfd: tls.offsets.poll_fd_sysfd,
            tls_conn_vers: tls.offsets.tls_conn_vers,
            tcp_conn_type_hash: tcp_conn_type_hash(elf).unwrap_or(0),
            _pad: 0,
        };
        Ok(Self {
            tls,
            handshake,
            offsets,
        })
    }

    pub(super) fn library(&self) -> ProbedLibrary {
        ProbedLibrary::Go {
            version: self.tls.go_version.clone(),
            how: how(&self.tls, self.offsets.tcp_conn_type_hash != 0),
        }
    }

    pub(super) fn functions(&self) -> Vec<&'static str> {
        let mut functions = vec!["(*Conn).Write", "(*Conn).Read"];
        if self.handshake.is_some() {
            functions.push("(*Conn).handshakeContext");
        }
        functions
    }
}

/// The Go binaries probed so far, numbered in attach order.
pub(super) struct GoBinaries {
    next: u32,
}

impl GoBinaries {
    pub(super) fn new(ebpf: &Ebpf) -> anyhow::Result<Self> {
        anyhow::ensure!(ebpf.map(MAP).is_some(), "map {MAP} missing from the object");
        Ok(Self { next: 0 })
    }

    /// Probes the Go program `path` as `plan` says: its offsets into the map, then the
    /// entry, return and handshake probes with its number as cookie.
    pub(super) fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        path: &Path,
        plan: &GoPlan,
    ) -> Result<(), TlsProbeError> {
        let setup_err = |reason: String| TlsProbeError::GoSetup {
            path: path.to_owned(),
            reason,
        };
        if self.next >= MAX_BINARIES {
            return Err(setup_err(format!(
                "{MAX_BINARIES} Go programs are probed already, the most Sonde keeps"
            )));
        }
        let index = self.next;
        let map = ebpf
            .map_mut(MAP)
            .ok_or_else(|| setup_err(format!("map {MAP} missing")))?;
        let mut array: Array<_, RawGoTlsOffsets> =
            Array::try_from(map).map_err(|e| setup_err(format!("map {MAP}: {e}")))?;
        array
            .set(index, plan.offsets, 0)
            .map_err(|e| setup_err(format!("writing map {MAP}: {e}")))?;
        self.next += 1;

        let cookie = Some(u64::from(index));
        let tls = &plan.tls;
        attach(ebpf, WRITE, path, tls.write.entry_offset, cookie)?;
        attach(ebpf, READ, path, tls.read.entry_offset, cookie)?;
        for &offset in &tls.read.return_offsets {
            attach(ebpf, READ_RETURN, path, offset, cookie)?;
        }
        if let Some(offset) = plan.handshake {
            attach(ebpf, HANDSHAKE, path, offset, cookie)?;
        }
        Ok(())
    }
}

/// `itab.hash` of `*net.TCPConn` as `net.Conn`, from its itab's symbol (unstripped
/// binaries only: the hash's formula changes between Go releases).
fn tcp_conn_type_hash(elf: &Elf) -> Option<u32> {
    let itab = elf.data_symbol(TCP_CONN_ITAB)?;
    let bytes = elf.bytes_at(itab.address.checked_add(ITAB_HASH_OFFSET)?, 4)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?)).filter(|h| *h != 0)
}

/// Where the probe points and offsets came from, for the log and `sonde doctor`.
fn how(tls: &GoTls, hash_checked: bool) -> String {
    let functions = match tls.functions_from {
        FunctionSource::Symtab => "functions from the symbol table",
        FunctionSource::Pclntab(_) => "functions from the pclntab (stripped)",
    };
    let offsets = match tls.offsets_from {
        OffsetsSource::Dwarf => "offsets from DWARF".to_owned(),
        OffsetsSource::VersionTable { measured_on } => {
            format!("offsets by release (as measured on {measured_on})")
        }
    };
    let conn = if hash_checked {
        "conn type checked"
    } else {
        "conn type not checkable"
    };
    format!(
        "{functions}, {offsets}, {} return sites, {conn}",
        tls.read.return_offsets.len()
    )
}
