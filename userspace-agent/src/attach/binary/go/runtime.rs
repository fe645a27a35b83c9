//! What the Go runtime probes (`ebpf-probes/go_runtime.bpf.c`) need of one Go program:
//! where a thread keeps the running goroutine and where its goid is, the entry and `RET`s
//! of `runtime.newproc1` (goroutine starts), and net/http's client hand-off points.
//!
//! - The running `g` is at a fixed offset from the thread pointer (FS base): `-8` in a
//!   binary without a `PT_TLS` segment (the runtime sets FS so that `-8(FS)` is `m.tls[0]`),
//!   else `runtime.tlsg`'s place in the executable's TLS block, which x86-64 puts just below
//!   the thread pointer (`tlsg - align_up(p_memsz, p_align)`; `-8` in every cgo binary seen).
//! - `runtime.g.goid` and `runtime.g.parentGoid` (go1.21+) from DWARF, else
//!   [`super::offsets::TABLE`] by release ([`super::dwarf_or_table`]). With `parentGoid`,
//!   `newproc1`'s returns alone say who started whom (one trap per goroutine start, not two).

use object::elf::PT_TLS;
use object::read::elf::{ElfFile64, ProgramHeader};

use super::{
    FnProbe, GoTlsError, OffsetsSource, dwarf, dwarf_or_table, find_function, probe_points,
    probeable_release,
};
use crate::attach::binary::elf::Elf;

/// Starts every goroutine (`go f()`): entry and each `RET`.
pub const NEWPROC1: &str = "runtime.newproc1";
/// net/http's client, on the caller's goroutine, per request and connection.
pub const ROUND_TRIP: &str = "net/http.(*persistConn).roundTrip";
/// Writes a request, on the connection's writer goroutine.
pub const REQUEST_WRITE: &str = "net/http.(*Request).write";

/// Where `g` is when the binary has no `PT_TLS` segment (pure Go).
const G_TLS_DEFAULT: i64 = -8;

/// The probe points and offsets of one Go program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoRuntime {
    /// The version string as written (`go1.26.8`).
    pub go_version: String,
    /// Where [`GoRuntime::g_goid`] came from.
    pub offsets_from: OffsetsSource,
    /// The running `g`'s place relative to the thread pointer.
    pub g_tls_offset: i64,
    /// `runtime.g.goid`.
    pub g_goid: u64,
    /// `runtime.g.parentGoid` (go1.21+): the starter, read at `newproc1`'s return alone.
    pub g_parent_goid: Option<u64>,
    /// `runtime.newproc1`.
    pub newproc1: FnProbe,
    /// net/http's client hand-off (entry offsets of [`ROUND_TRIP`], [`REQUEST_WRITE`]);
    /// None when the program has no net/http client.
    pub http_client: Option<(u64, u64)>,
}

/// Reads [`GoRuntime`] from the Go binary `elf`.
pub fn go_runtime(elf: &Elf) -> Result<GoRuntime, GoTlsError> {
    let (info, version) = probeable_release(elf)?;
    let newproc1_fn = find_function(elf, NEWPROC1)?.ok_or(GoTlsError::FunctionMissing(NEWPROC1))?;
    let newproc1 = probe_points(elf, NEWPROC1, &newproc1_fn)?;
    let entry = |name| {
        find_function(elf, name)
            .ok()
            .flatten()
            .and_then(|f| elf.file_offset(f.address))
    };
    let http_client = entry(ROUND_TRIP).zip(entry(REQUEST_WRITE));

    let query = [
        dwarf::MemberQuery {
            type_name: "runtime.g",
            member: "goid",
        },
        // Absent before go1.21: then the entry probe names the starter.
        dwarf::MemberQuery {
            type_name: "runtime.g",
            member: "parentGoid",
        },
    ];
    let ((g_goid, g_parent_goid), offsets_from) = dwarf_or_table(
        elf,
        &info,
        &version,
        &query,
        |found| {
            Some((
                found.first().copied().flatten()?,
                found.get(1).copied().flatten(),
            ))
        },
        |row| (row.g_goid, row.g_parent_goid),
    )?;
    Ok(GoRuntime {
        go_version: info.go_version,
        offsets_from,
        g_tls_offset: g_tls_offset(elf)?,
        g_goid,
        g_parent_goid,
        newproc1,
        http_client,
    })
}

/// The running `g`'s offset from the thread pointer (module docs).
fn g_tls_offset(elf: &Elf) -> Result<i64, GoTlsError> {
    let unknown = |reason: &str| GoTlsError::FunctionBytes {
        name: "runtime.tlsg",
        reason: reason.to_owned(),
    };
    let file = ElfFile64::<object::Endianness>::parse(elf.bytes())
        .map_err(|e| unknown(&format!("program headers: {e}")))?;
    let endian = file.endian();
    let Some(tls) = file
        .elf_program_headers()
        .iter()
        .find(|ph| ph.p_type(endian) == PT_TLS)
    else {
        return Ok(G_TLS_DEFAULT);
    };
    let memsz = tls.p_memsz(endian);
    let align = tls.p_align(endian).max(1);
    let block = memsz
        .checked_next_multiple_of(align)
        .and_then(|b| i64::try_from(b).ok())
        .ok_or_else(|| unknown("TLS segment size out of range"))?;
    // Without the symbol (stripped), only a Go-only TLS block (g alone) is certain.
    let tlsg = match elf.data_symbol("runtime.tlsg") {
        Some(symbol) => symbol.address,
        None if memsz == 8 => 0,
        None => return Err(unknown("stripped, with other thread-local data beside g")),
    };
    let tlsg = i64::try_from(tlsg).map_err(|_| unknown("symbol out of range"))?;
    if tlsg >= block {
        return Err(unknown("symbol outside the TLS segment"));
    }
    Ok(tlsg - block)
}
