//! Rust mirrors of `ebpf-probes/include/sonde_abi.h`, the kernel <-> agent contract.
//!
//! Records arrive from the ring buffer as bytes; [`read_record`] copies a fixed header out
//! with `read_unaligned` after checking the length, so a short record is `None`, never
//! undefined behaviour (`capture::record` decodes the rest). Layout drift against the C
//! header fails to compile: build.rs prints the C offsets and the `const` block below
//! compares them.

/// Layout of the C structs, printed by `ebpf-probes/host/abi_layout.c` at build time.
mod c_layout {
    include!(concat!(env!("OUT_DIR"), "/abi_layout.rs"));
}

pub const MAX_CAPTURE: usize = 4096;
pub const TAIL_BYTES: usize = 8;

pub const EV_DATA: u8 = 1;
pub const EV_SOCK_STATE: u8 = 2;
pub const EV_EXEC: u8 = 3;
pub const EV_EXIT: u8 = 4;
pub const EV_LIBS: u8 = 5;

/// `enum sonde_source`: where a data event's bytes were read.
pub const SRC_SOCKET: u8 = 0;
pub const SRC_OPENSSL: u8 = 1;
pub const SRC_GO: u8 = 2;
pub const SRC_GNUTLS: u8 = 3;

pub const DROP_RINGBUF_FULL: u32 = 0;
pub const DROP_READ_FAULT: u32 = 1;
pub const DROP_UNDECODED: u32 = 2;
pub const DROP_TLS_CIPHERTEXT: u32 = 3;
pub const DROP_TLS_UNMAPPED: u32 = 4;
pub const DROP_MULTIPLEXED_THREAD: u32 = 5;
pub const DROP_MAX: u32 = 8;

pub const INJ_ENROLLED: u32 = 0;
pub const INJ_ENROL_FAILED: u32 = 1;
pub const INJ_DONE: u32 = 2;
pub const INJ_APP_HEADER: u32 = 3;
pub const INJ_SKIPPED: u32 = 4;
pub const INJ_FAILED: u32 = 5;
pub const INJ_TCP_OPT_SENT: u32 = 6;
pub const INJ_TCP_OPT_RECV: u32 = 7;
pub const INJ_ARMED_LATE: u32 = 8;
pub const INJ_MAX: u32 = 16;

/// `struct sonde_trace_ctx`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawTraceCtx {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: [u8; 8],
}

/// The fixed part of `struct sonde_data_event` (everything before `data[]`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawDataHeader {
    pub kind: u8,
    pub direction: u8,
    pub syscall: u8,
    pub family: u8,
    pub ctx_role: u8,
    pub parent_source: u8,
    pub tail_len: u16,
    pub tgid: u32,
    pub tid: u32,
    pub ts_ns: u64,
    pub sock_id: u64,
    pub total_len: u64,
    pub captured_len: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub ctx_format: u8,
    pub inject_status: u8,
    pub trace_flags: u8,
    /// Where the bytes were read (`SRC_*`).
    pub source: u8,
    /// The descriptor the process used; -1 when not known (TLS plaintext).
    pub fd: i32,
    /// TLS plaintext: the session's protocol version (`0x0303`: TLS 1.2), 0 when unknown.
    pub tls_version: u16,
    pub _pad: [u8; 6],
    /// Egress: bytes the process has written to the socket so far (0 for ingress and for
    /// HTTP response heads).
    pub sent_bytes: u64,
    /// The socket's folded egress when the record was made (see [`RawSockInfo`]).
    pub folded_bytes: u64,
    pub folded_ts_ns: u64,
    pub ctx: RawTraceCtx,
    pub tail: [u8; TAIL_BYTES],
}

impl RawDataHeader {
    /// The ring record the kernel would make of this header and `captured` bytes (its
    /// `captured_len` is taken from them): for tests and benchmarks that replay traffic.
    pub fn record(mut self, captured: &[u8]) -> Vec<u8> {
        self.captured_len = u32::try_from(captured.len()).unwrap_or(u32::MAX);
        // SAFETY: a repr(C) struct of integers and byte arrays whose padding is explicit
        // fields: every byte of it is initialised, so it can be read as bytes.
        let header = unsafe {
            std::slice::from_raw_parts((&raw const self).cast::<u8>(), size_of::<Self>())
        };
        let mut record = Vec::with_capacity(header.len() + captured.len());
        record.extend_from_slice(header);
        record.extend_from_slice(captured);
        record
    }
}

/// `struct sonde_sock_state_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawSockStateEvent {
    pub kind: u8,
    pub old_state: u8,
    pub new_state: u8,
    pub _pad: [u8; 5],
    pub ts_ns: u64,
    pub sock_id: u64,
    /// The socket's folded egress at the change (see [`RawSockInfo`]).
    pub folded_bytes: u64,
    pub folded_ts_ns: u64,
}

/// `struct sonde_sock_info`: a `known_socks` value. Egress with no bytes to capture
/// (sendfile, splice) gets no record: the kernel adds it to `folded_bytes` (a running
/// total per socket) and stamps `folded_ts_ns`; later records on the socket carry both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawSockInfo {
    pub sk: u64,
    pub family: u8,
    /// A TLS library call moved bytes on it: its own bytes are ciphertext.
    pub tls: u8,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad2: [u8; 2],
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub folded_bytes: u64,
    pub folded_ts_ns: u64,
}

// SAFETY: a repr(C) struct of integers and byte arrays with explicit padding fields: every
// bit pattern is valid and it has no implicit padding.
unsafe impl aya::Pod for RawSockInfo {}

/// `struct go_tls_offsets`: a `go_tls_binaries` value, the path from a Go
/// `*crypto/tls.Conn` to its socket's descriptor in one binary.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawGoTlsOffsets {
    pub tls_conn_conn: u64,
    pub net_conn_fd: u64,
    pub net_fd_pfd: u64,
    pub poll_fd_sysfd: u64,
    pub tls_conn_vers: u64,
    /// `itab.hash` of `*net.TCPConn` as `net.Conn`; 0: not checked.
    pub tcp_conn_type_hash: u32,
    pub _pad: u32,
}

// SAFETY: repr(C), integers only, explicit padding: every bit pattern is valid.
unsafe impl aya::Pod for RawGoTlsOffsets {}

/// Where a traced Go process keeps the running goroutine (`struct go_runtime_offsets`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawGoRuntimeOffsets {
    /// The `g` pointer's place relative to the thread pointer (FS base).
    pub g_tls_offset: i64,
    /// `runtime.g.goid`.
    pub g_goid: u64,
    /// `runtime.g.parentGoid` (go1.21+); 0: absent.
    pub g_parent_goid: u64,
}

// SAFETY: repr(C), integers only, no padding: every bit pattern is valid.
unsafe impl aya::Pod for RawGoRuntimeOffsets {}

pub const EXEC_FILENAME_MAX: usize = 256;
pub const EXEC_ARGS_MAX: usize = 1024;
pub const EXEC_ENV_MAX: usize = 2816;

/// The fixed part of `struct sonde_exec_event` (everything before `data[]`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawExecHeader {
    pub kind: u8,
    pub traced: u8,
    pub _pad: [u8; 2],
    pub tgid: u32,
    pub ts_ns: u64,
    pub filename_len: u16,
    pub args_len: u16,
    pub env_len: u16,
    pub _pad2: u16,
}

/// What a process looked like right after exec, as the kernel read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecSnapshot<'a> {
    /// The process was traced when it exec'd.
    pub traced: bool,
    pub filename: &'a [u8],
    /// NUL-separated argv.
    pub args: &'a [u8],
    /// NUL-separated prefix of the environment.
    pub env: &'a [u8],
}

/// `struct sonde_proc_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawProcEvent {
    pub kind: u8,
    pub _pad: [u8; 3],
    pub tgid: u32,
    pub ts_ns: u64,
}

// ===== compile-time layout checks against the C header =====

const fn offset_of_named(table: &[(&str, usize)], name: &str) -> usize {
    let mut i = 0;
    while i < table.len() {
        if const_str_eq(table[i].0, name) {
            return table[i].1;
        }
        i += 1;
    }
    panic!("field missing from the C layout table");
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn enum_value(name: &str) -> u32 {
    let mut i = 0;
    while i < c_layout::ENUMS.len() {
        if const_str_eq(c_layout::ENUMS[i].0, name) {
            return c_layout::ENUMS[i].1;
        }
        i += 1;
    }
    panic!("enum missing from the C layout table");
}

macro_rules! assert_layout {
    ($table:expr, $ty:ty, $($field:ident),+) => {
        $(assert!(
            core::mem::offset_of!($ty, $field) == offset_of_named($table, stringify!($field)),
            concat!("ABI drift: ", stringify!($ty), ".", stringify!($field))
        );)+
    };
}

const _: () = {
    use c_layout::*;
    assert!(
        size_of::<RawDataHeader>() == DATA_HDR_SIZE,
        "ABI drift: data event header size"
    );
    assert!(DATA_HDR_SIZE + MAX_CAPTURE == DATA_EVENT_SIZE);
    assert!(c_layout::MAX_CAPTURE == self::MAX_CAPTURE);
    assert!(c_layout::TAIL_BYTES == self::TAIL_BYTES);
    assert!(offset_of_named(DATA_EVENT_OFFSETS, "data") == DATA_HDR_SIZE);
    assert!(size_of::<RawSockStateEvent>() == SOCK_STATE_EVENT_SIZE);
    assert!(size_of::<RawProcEvent>() == PROC_EVENT_SIZE);
    assert!(
        size_of::<RawExecHeader>() + EXEC_FILENAME_MAX + EXEC_ARGS_MAX + EXEC_ENV_MAX
            == EXEC_EVENT_SIZE
    );
    assert!(c_layout::EXEC_FILENAME_MAX == self::EXEC_FILENAME_MAX);
    assert!(c_layout::EXEC_ARGS_MAX == self::EXEC_ARGS_MAX);
    assert!(c_layout::EXEC_ENV_MAX == self::EXEC_ENV_MAX);
    assert!(offset_of_named(EXEC_EVENT_OFFSETS, "data") == size_of::<RawExecHeader>());
    assert_layout!(
        EXEC_EVENT_OFFSETS,
        RawExecHeader,
        kind,
        traced,
        tgid,
        ts_ns,
        filename_len,
        args_len,
        env_len
    );
    assert_layout!(
        DATA_EVENT_OFFSETS,
        RawDataHeader,
        kind,
        direction,
        syscall,
        family,
        ctx_role,
        parent_source,
        tail_len,
        tgid,
        tid,
        ts_ns,
        sock_id,
        total_len,
        captured_len,
        local_port,
        remote_port,
        local_addr,
        remote_addr,
        ctx_format,
        inject_status,
        trace_flags,
        source,
        fd,
        tls_version,
        sent_bytes,
        folded_bytes,
        folded_ts_ns,
        ctx,
        tail
    );
    assert_layout!(
        SOCK_STATE_EVENT_OFFSETS,
        RawSockStateEvent,
        kind,
        old_state,
        new_state,
        ts_ns,
        sock_id,
        folded_bytes,
        folded_ts_ns
    );
    assert!(size_of::<RawSockInfo>() == SOCK_INFO_SIZE);
    assert_layout!(
        SOCK_INFO_OFFSETS,
        RawSockInfo,
        sk,
        family,
        tls,
        local_port,
        remote_port,
        local_addr,
        remote_addr,
        folded_bytes,
        folded_ts_ns
    );
    assert!(size_of::<RawGoTlsOffsets>() == GO_TLS_OFFSETS_SIZE);
    assert_layout!(
        GO_TLS_OFFSETS_OFFSETS,
        RawGoTlsOffsets,
        tls_conn_conn,
        net_conn_fd,
        net_fd_pfd,
        poll_fd_sysfd,
        tls_conn_vers,
        tcp_conn_type_hash
    );
    assert!(size_of::<RawGoRuntimeOffsets>() == GO_RUNTIME_OFFSETS_SIZE);
    assert_layout!(
        GO_RUNTIME_OFFSETS_OFFSETS,
        RawGoRuntimeOffsets,
        g_tls_offset,
        g_goid,
        g_parent_goid
    );
    assert_layout!(PROC_EVENT_OFFSETS, RawProcEvent, kind, tgid, ts_ns);
    assert!(enum_value("SONDE_EV_DATA") == EV_DATA as u32);
    assert!(enum_value("SONDE_EV_SOCK_STATE") == EV_SOCK_STATE as u32);
    assert!(enum_value("SONDE_EV_EXEC") == EV_EXEC as u32);
    assert!(enum_value("SONDE_EV_EXIT") == EV_EXIT as u32);
    assert!(enum_value("SONDE_EV_LIBS") == EV_LIBS as u32);
    assert!(enum_value("SONDE_DIR_INGRESS") == Direction::Ingress as u32);
    assert!(enum_value("SONDE_DIR_EGRESS") == Direction::Egress as u32);
    assert!(enum_value("SONDE_CTX_NONE") == CtxRole::None as u32);
    assert!(enum_value("SONDE_CTX_SERVER_REQUEST") == CtxRole::ServerRequest as u32);
    assert!(enum_value("SONDE_CTX_CLIENT_REQUEST") == CtxRole::ClientRequest as u32);
    assert!(enum_value("SONDE_CTX_IN_SPAN") == CtxRole::InSpan as u32);
    assert!(enum_value("SONDE_PARENT_NONE") == KernelParentSource::None as u32);
    assert!(enum_value("SONDE_PARENT_THREAD") == KernelParentSource::Thread as u32);
    assert!(enum_value("SONDE_PARENT_FORK") == KernelParentSource::Fork as u32);
    assert!(enum_value("SONDE_PARENT_HEADER") == KernelParentSource::Header as u32);
    assert!(enum_value("SONDE_FMT_NONE") == CtxFormat::None as u32);
    assert!(enum_value("SONDE_FMT_W3C") == CtxFormat::W3c as u32);
    assert!(enum_value("SONDE_FMT_B3") == CtxFormat::B3 as u32);
    assert!(enum_value("SONDE_FMT_B3_MULTI") == CtxFormat::B3Multi as u32);
    assert!(enum_value("SONDE_FMT_JAEGER") == CtxFormat::Jaeger as u32);
    assert!(enum_value("SONDE_FMT_XRAY") == CtxFormat::Xray as u32);
    assert!(enum_value("SONDE_INJECT_NONE") == InjectStatus::None as u32);
    assert!(enum_value("SONDE_INJECT_DONE") == InjectStatus::Injected as u32);
    assert!(enum_value("SONDE_INJECT_APP_HEADER") == InjectStatus::AppHeader as u32);
    assert!(enum_value("SONDE_INJECT_SKIPPED") == InjectStatus::Skipped as u32);
    assert!(enum_value("SONDE_INJECT_FAILED") == InjectStatus::Failed as u32);
    assert!(enum_value("SONDE_DROP_RINGBUF_FULL") == DROP_RINGBUF_FULL);
    assert!(enum_value("SONDE_DROP_READ_FAULT") == DROP_READ_FAULT);
    assert!(enum_value("SONDE_DROP_UNDECODED") == DROP_UNDECODED);
    assert!(enum_value("SONDE_DROP_MAX") == DROP_MAX);
    assert!(enum_value("SONDE_DROP_TLS_CIPHERTEXT") == DROP_TLS_CIPHERTEXT);
    assert!(enum_value("SONDE_DROP_TLS_UNMAPPED") == DROP_TLS_UNMAPPED);
    assert!(enum_value("SONDE_DROP_MULTIPLEXED_THREAD") == DROP_MULTIPLEXED_THREAD);
    assert!(enum_value("SONDE_SRC_SOCKET") == SRC_SOCKET as u32);
    assert!(enum_value("SONDE_SRC_OPENSSL") == SRC_OPENSSL as u32);
    assert!(enum_value("SONDE_SRC_GO") == SRC_GO as u32);
    assert!(enum_value("SONDE_SRC_GNUTLS") == SRC_GNUTLS as u32);
    assert!(enum_value("SONDE_INJ_ENROLLED") == INJ_ENROLLED);
    assert!(enum_value("SONDE_INJ_ENROL_FAILED") == INJ_ENROL_FAILED);
    assert!(enum_value("SONDE_INJ_DONE") == INJ_DONE);
    assert!(enum_value("SONDE_INJ_APP_HEADER") == INJ_APP_HEADER);
    assert!(enum_value("SONDE_INJ_SKIPPED") == INJ_SKIPPED);
    assert!(enum_value("SONDE_INJ_FAILED") == INJ_FAILED);
    assert!(enum_value("SONDE_INJ_MAX") == INJ_MAX);
    assert!(enum_value("SONDE_INJ_TCP_OPT_SENT") == INJ_TCP_OPT_SENT);
    assert!(enum_value("SONDE_INJ_TCP_OPT_RECV") == INJ_TCP_OPT_RECV);
    assert!(enum_value("SONDE_INJ_ARMED_LATE") == INJ_ARMED_LATE);
    assert!(enum_value("SONDE_PARENT_TCP_OPTION") == KernelParentSource::TcpOption as u32);
    assert!(enum_value("SONDE_PARENT_GOROUTINE") == KernelParentSource::Goroutine as u32);
    assert!(
        enum_value("SONDE_PARENT_THREAD_LAST_READ") == KernelParentSource::ThreadLastRead as u32
    );
};

// ===== decoded events =====

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// The process read these bytes.
    Ingress = 0,
    /// The process wrote these bytes.
    Egress = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CtxRole {
    None = 0,
    ServerRequest = 1,
    ClientRequest = 2,
    /// Other bytes sent while the thread serves a request (a database or cache call).
    InSpan = 3,
}

/// How the kernel linked a span to its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum KernelParentSource {
    None = 0,
    Thread = 1,
    Fork = 2,
    /// The request carried a trace context header (see [`CtxFormat`]).
    Header = 3,
    /// No header: the peer's agent sent the context in a TCP header option.
    TcpOption = 4,
    /// The same goroutine, or one it started or handed the request to (Go).
    Goroutine = 5,
    /// The last request an event-loop thread read: a guess.
    ThreadLastRead = 6,
}

/// Which trace context header a request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CtxFormat {
    None = 0,
    W3c = 1,
    B3 = 2,
    B3Multi = 3,
    Jaeger = 4,
    Xray = 5,
}

impl CtxFormat {
    /// The value of the `sonde.parent.format` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            CtxFormat::None => "none",
            CtxFormat::W3c => "tracecontext",
            CtxFormat::B3 => "b3",
            CtxFormat::B3Multi => "b3multi",
            CtxFormat::Jaeger => "jaeger",
            CtxFormat::Xray => "xray",
        }
    }
}

/// What the sk_msg program did to an outgoing request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum InjectStatus {
    /// The socket is not enrolled: bytes left alone.
    None = 0,
    /// A `traceparent` line carrying the event's context was inserted.
    Injected = 1,
    /// The request had its own context header: left alone.
    AppHeader = 2,
    /// Not provably safe (split header block, too large): left alone.
    Skipped = 3,
    /// The kernel refused the insertion: bytes unchanged.
    Failed = 4,
}

impl InjectStatus {
    /// The value of the `sonde.inject` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            InjectStatus::None => "not_enrolled",
            InjectStatus::Injected => "injected",
            InjectStatus::AppHeader => "app_header",
            InjectStatus::Skipped => "skipped",
            InjectStatus::Failed => "failed",
        }
    }
}

// ===== reading records =====

/// A `repr(C)` header of integers and byte arrays that any bytes are a valid value of.
///
/// # Safety
/// Implement only for such types (no references, no enums, no `bool`).
pub unsafe trait PlainHeader: Copy {}

// SAFETY: each is repr(C) of integers and byte arrays only (checked by the layout table).
unsafe impl PlainHeader for RawDataHeader {}
// SAFETY: as above.
unsafe impl PlainHeader for RawSockStateEvent {}
// SAFETY: as above.
unsafe impl PlainHeader for RawExecHeader {}
// SAFETY: as above.
unsafe impl PlainHeader for RawProcEvent {}

/// The fixed header `T` at the start of `record`, or `None` if the record is shorter.
pub fn read_record<T: PlainHeader>(record: &[u8]) -> Option<T> {
    if record.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the record holds at least size_of::<T>() bytes; T is valid for every bit
    // pattern (PlainHeader); read_unaligned makes no alignment assumption about the
    // ring-buffer memory.
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<T>()) })
}

/// Where the tail bytes sit in a data record.
pub const fn offset_of_tail() -> usize {
    core::mem::offset_of!(RawDataHeader, tail)
}
