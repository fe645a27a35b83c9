//! Raw bpf(2) calls: the feature probes' throwaway maps and programs, and the few
//! commands aya does not offer.
//!
//! We call the syscall directly instead of going through aya because aya's probes
//! fold "permission denied" into a generic error, and telling "the kernel lacks it"
//! from "the kernel refuses it to us" is the whole point of the doctor.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_map_type, bpf_prog_type};

use super::owned_fd;

/// Kernel-internal "operation not supported" that leaks to userspace from BPF.
pub const ENOTSUPP: i32 = 524;

/// A failed bpf(2) call: which command, the errno, and the verifier log if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfError {
    pub op: &'static str,
    pub errno: i32,
    /// First lines of the verifier log (empty when the load never reached it).
    pub log: String,
}

impl BpfError {
    fn last(op: &'static str, log: String) -> Self {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Self { op, errno, log }
    }

    /// Permission problems (capabilities, lockdown, LSM) rather than absence.
    pub fn is_denied(&self) -> bool {
        matches!(self.errno, libc::EPERM | libc::EACCES)
    }

    /// The kernel does not know or support what we asked for.
    pub fn is_missing(&self) -> bool {
        matches!(
            self.errno,
            libc::EINVAL | libc::E2BIG | libc::ENOSYS | libc::EOPNOTSUPP | ENOTSUPP
        )
    }
}

impl std::error::Error for BpfError {}

impl From<BpfError> for std::io::Error {
    fn from(e: BpfError) -> Self {
        std::io::Error::from_raw_os_error(e.errno)
    }
}

impl fmt::Display for BpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.errno {
            ENOTSUPP => "ENOTSUPP (not supported)".to_owned(),
            e => io::Error::from_raw_os_error(e).to_string(),
        };
        write!(f, "{} failed: {name}", self.op)?;
        if !self.log.is_empty() {
            write!(f, "; verifier: {}", self.log)?;
        }
        Ok(())
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of integer fields; all-zero is valid and is what
    // the kernel requires for every field we do not set.
    unsafe { std::mem::zeroed() }
}

/// Issues one bpf(2) command that returns a new file descriptor.
fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr, op: &'static str) -> Result<OwnedFd, BpfError> {
    let size = std::mem::size_of::<bpf_attr>();
    // SAFETY: `attr` is a valid, initialised bpf_attr of `size` bytes, and every
    // pointer stored in it by our callers points to memory that outlives this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size,
        )
    };
    owned_fd(ret).map_err(|e| BpfError {
        op,
        errno: e.raw_os_error().unwrap_or(0),
        log: String::new(),
    })
}

/// Creates and immediately closes a map, to see whether the kernel allows it.
pub fn try_create_map(
    map_type: bpf_map_type,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<(), BpfError> {
    create_map(map_type, key_size, value_size, max_entries).map(drop)
}

/// Creates a map; it lives until the returned fd is closed.
pub fn create_map(
    map_type: bpf_map_type,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<OwnedFd, BpfError> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the map-create member of the union.
    let create = unsafe { &mut attr.__bindgen_anon_1 };
    create.map_type = map_type as u32;
    create.key_size = key_size;
    create.value_size = value_size;
    create.max_entries = max_entries;
    bpf_fd(bpf_cmd::BPF_MAP_CREATE, &mut attr, "BPF_MAP_CREATE")
}

/// `map[key] = value` (BPF_ANY) for a map with u64 keys and u32 values.
pub fn update_u64_u32(map: &OwnedFd, key: u64, value: u32) -> Result<(), BpfError> {
    map_update(map.as_raw_fd(), &key, &value)
}

/// Makes the child `command` starts add its own pid to the traced-pid map `map_fd`
/// (pid -> 1) between fork and exec, so it is traced from its first instruction (std's
/// `spawn` returns only after exec: too late for the parent to do it).
pub fn enroll_before_exec(command: &mut Command, map_fd: RawFd) {
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (getpid, bpf) with pointers to its own stack; it allocates nothing.
    unsafe {
        command.pre_exec(move || enroll_self(map_fd));
    }
}

/// `map_fd[own pid] = 1`.
fn enroll_self(map_fd: RawFd) -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    map_update(map_fd, &pid, &1u32).map_err(io::Error::from)
}

/// `BPF_MAP_UPDATE_ELEM` (BPF_ANY) of `key -> value` into the map `map_fd`, whose key and
/// value sizes must be those of `K` and `V`. Allocates nothing (see
/// [`enroll_before_exec`]).
fn map_update<K: Copy, V: Copy>(map_fd: RawFd, key: &K, value: &V) -> Result<(), BpfError> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers and pointers to values that outlive the syscall
    // into the map-elem member of the union.
    let elem = unsafe { &mut attr.__bindgen_anon_2 };
    elem.map_fd = map_fd as u32;
    elem.key = key as *const K as u64;
    elem.__bindgen_anon_1.value = value as *const V as u64;
    let size = std::mem::size_of::<bpf_attr>();
    // SAFETY: `attr` is a valid bpf_attr whose pointers reference live values.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_MAP_UPDATE_ELEM as libc::c_long,
            &mut attr as *mut bpf_attr,
            size,
        )
    };
    if ret < 0 {
        return Err(BpfError::last("BPF_MAP_UPDATE_ELEM", String::new()));
    }
    Ok(())
}

/// One eBPF instruction, laid out as `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// `r0 = 0; exit` — the smallest program any verifier accepts.
const RETURN_ZERO: [Insn; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K
    Insn {
        code: 0xb7,
        regs: 0,
        off: 0,
        imm: 0,
    },
    // BPF_JMP | BPF_EXIT
    Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    },
];

/// Loads an empty fentry program on the kernel function with BTF id `btf_id`, then
/// attaches it for an instant (the trampoline can be refused at attach time even
/// when the load passes). Everything is closed before returning.
pub fn try_fentry(btf_id: u32) -> Result<(), BpfError> {
    try_tracing(btf_id, bpf_attach_type::BPF_TRACE_FENTRY)
}

/// Loads an empty `tp_btf` program on the raw tracepoint whose `btf_trace_<name>`
/// typedef has BTF id `btf_id`, and attaches it for an instant.
pub fn try_tp_btf(btf_id: u32) -> Result<(), BpfError> {
    try_tracing(btf_id, bpf_attach_type::BPF_TRACE_RAW_TP)
}

fn try_tracing(btf_id: u32, attach: bpf_attach_type) -> Result<(), BpfError> {
    let prog = prog_load(
        &RETURN_ZERO,
        bpf_prog_type::BPF_PROG_TYPE_TRACING,
        attach as u32,
        btf_id,
    )?;

    let mut attr = zeroed_attr();
    attr.raw_tracepoint.name = 0; // NULL name: attach to the BTF target given at load
    attr.raw_tracepoint.prog_fd = fd_u32(&prog);
    bpf_fd(
        bpf_cmd::BPF_RAW_TRACEPOINT_OPEN,
        &mut attr,
        "BPF_RAW_TRACEPOINT_OPEN",
    )
    .map(drop)
}

/// `bpf_probe_write_user(NULL, stack, 8)`: a tracepoint program that only has to pass
/// the verifier, which offers the helper only when lockdown allows it.
const PROBE_WRITE_USER: [Insn; 8] = [
    // *(u64 *)(r10 - 8) = 0  (BPF_ST | BPF_MEM | BPF_DW): the source must be initialised
    Insn {
        code: 0x7a,
        regs: 0x0a,
        off: -8,
        imm: 0,
    },
    // r1 = 0  (destination: never run, only verified)
    Insn {
        code: 0xb7,
        regs: 0x01,
        off: 0,
        imm: 0,
    },
    // r2 = r10  (BPF_ALU64 | BPF_MOV | BPF_X; src in the high nibble)
    Insn {
        code: 0xbf,
        regs: 0xa2,
        off: 0,
        imm: 0,
    },
    // r2 += -8
    Insn {
        code: 0x07,
        regs: 0x02,
        off: 0,
        imm: -8,
    },
    // r3 = 8
    Insn {
        code: 0xb7,
        regs: 0x03,
        off: 0,
        imm: 8,
    },
    // call bpf_probe_write_user (helper 36)
    Insn {
        code: 0x85,
        regs: 0,
        off: 0,
        imm: 36,
    },
    RETURN_ZERO[0],
    RETURN_ZERO[1],
];

/// Whether the verifier accepts a program calling `bpf_probe_write_user`. The program
/// is never attached, so it writes nothing.
pub fn try_probe_write_user() -> Result<(), BpfError> {
    prog_load(
        &PROBE_WRITE_USER,
        bpf_prog_type::BPF_PROG_TYPE_TRACEPOINT,
        0,
        0,
    )
    .map(drop)
}

/// BPF_PROG_LOAD of a GPL program; the first lines of the verifier log go into the error.
fn prog_load(
    insns: &[Insn],
    prog_type: bpf_prog_type,
    expected_attach_type: u32,
    attach_btf_id: u32,
) -> Result<OwnedFd, BpfError> {
    let mut log = vec![0u8; 4096];
    let license = c"GPL";
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the prog-load member of the union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = prog_type as u32;
    load.expected_attach_type = expected_attach_type;
    load.attach_btf_id = attach_btf_id;
    load.insns = insns.as_ptr() as u64;
    load.insn_cnt = insns.len() as u32;
    load.license = license.as_ptr() as u64;
    load.log_buf = log.as_mut_ptr() as u64;
    load.log_size = log.len() as u32;
    load.log_level = 1;
    bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr, "BPF_PROG_LOAD").map_err(|mut e| {
        e.log = summarize_log(&log);
        e
    })
}

/// `BPF_ITER_CREATE`: a new run of the iterator behind `link` (a BPF link fd); reading
/// the returned fd to its end drives the walk.
pub fn iter_create(link: BorrowedFd<'_>) -> Result<OwnedFd, BpfError> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the iter-create member of the union.
    let create = unsafe { &mut attr.iter_create };
    create.link_fd = link.as_raw_fd() as u32;
    bpf_fd(bpf_cmd::BPF_ITER_CREATE, &mut attr, "BPF_ITER_CREATE")
}

/// `BPF_LINK_GET_FD_BY_ID`: a descriptor of our own on the BPF link `id`.
pub fn link_fd_by_id(id: u32) -> Result<OwnedFd, BpfError> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
    bpf_fd(
        bpf_cmd::BPF_LINK_GET_FD_BY_ID,
        &mut attr,
        "BPF_LINK_GET_FD_BY_ID",
    )
}

fn fd_u32(fd: &OwnedFd) -> u32 {
    // Valid fds are non-negative, so this cannot lose information.
    fd.as_raw_fd().unsigned_abs()
}

/// The verifier log up to the NUL, squeezed onto one short line. The verifier's
/// reason comes last, so a long log keeps its end.
fn summarize_log(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("processed "))
        .collect::<Vec<_>>()
        .join(" | ");
    const MAX: usize = 200;
    let excess = line.chars().count().saturating_sub(MAX);
    if excess == 0 {
        return line;
    }
    let tail: String = line.chars().skip(excess).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_summary_drops_stats_and_joins_lines() {
        let log =
            b"Tracing programs must provide btf_id\nprocessed 0 insns (limit 1000000)\n\0junk";
        assert_eq!(summarize_log(log), "Tracing programs must provide btf_id");
        assert_eq!(summarize_log(b"\0"), "");
    }

    #[test]
    fn a_long_log_keeps_its_last_words() {
        let mut log = "0: (b7) r1 = 0\n".repeat(40);
        log.push_str("unknown func bpf_probe_write_user#36\n\0");
        let summary = summarize_log(log.as_bytes());
        assert!(summary.starts_with('…'), "{summary}");
        assert!(
            summary.ends_with("unknown func bpf_probe_write_user#36"),
            "{summary}"
        );
        assert_eq!(summary.chars().count(), 201);
    }

    #[test]
    fn errno_classes() {
        let e = |errno| BpfError {
            op: "x",
            errno,
            log: String::new(),
        };
        assert!(e(libc::EPERM).is_denied());
        assert!(e(libc::EACCES).is_denied());
        assert!(e(libc::EINVAL).is_missing());
        assert!(e(ENOTSUPP).is_missing());
        assert!(!e(libc::ENOMEM).is_missing() && !e(libc::ENOMEM).is_denied());
    }
}
