//! The struct offsets the Go TLS probes read, by Go release, for binaries without DWARF
//! (`-ldflags=-w`, most shipped Go programs). Data, not code: each row was read from the
//! DWARF of a real binary built by that release (see `measured_on`), and `go/tests.rs`
//! checks again on every run each row whose toolchain or binary is on the machine
//! (`dwarf_offsets_match_the_table`, `go_119_builds`, `go_programs_of_this_machine`).
//!
//! Covered: go1.19.x, go1.24.x, go1.26.x. Every other release is unknown.
//!
//! The path from a `*tls.Conn` (RAX at `(*Conn).Read`/`Write` entry) to its socket:
//!
//! ```text
//! crypto/tls.Conn.conn      net.Conn interface: (itab, data) words; data (at +8) points
//!                           to the concrete conn, for TCP a *net.TCPConn = struct { net.conn }
//! net.conn.fd               *net.netFD
//! net.netFD.pfd             internal/poll.FD (embedded)
//! internal/poll.FD.Sysfd    int: the file descriptor
//! ```
//!
//! and `crypto/tls.Conn.vers` (`uint16`), the negotiated version (`tls.protocol.version`);
//! and for the goroutine probes ([`super::runtime`]) `runtime.g.goid`.
//!
//! Rows match a release line (`go1.26.x` for the `go1.26.8` row): Go changes no struct
//! layout in point releases, whose fixes are security and critical ones only. A release
//! line with no row is unknown: [`for_version`] gives `None` and the caller refuses the
//! binary rather than guess.

use super::buildinfo::GoVersion;
use super::dwarf::MemberQuery;

/// One field the probes read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnField {
    /// `crypto/tls.Conn.conn` (a `net.Conn` interface value).
    TlsConnConn,
    /// `net.conn.fd` (a `*net.netFD`).
    NetConnFd,
    /// `net.netFD.pfd` (an `internal/poll.FD`).
    NetFdPfd,
    /// `internal/poll.FD.Sysfd` (an `int`).
    PollFdSysfd,
    /// `crypto/tls.Conn.vers` (a `uint16`: the negotiated TLS version, 0 before the
    /// handshake).
    TlsConnVers,
}

impl ConnField {
    /// Every field, in [`ConnOffsets`] order.
    pub const ALL: [ConnField; 5] = [
        ConnField::TlsConnConn,
        ConnField::NetConnFd,
        ConnField::NetFdPfd,
        ConnField::PollFdSysfd,
        ConnField::TlsConnVers,
    ];

    /// The type and member as Go's DWARF names them.
    pub fn query(self) -> MemberQuery<'static> {
        let (type_name, member) = match self {
            ConnField::TlsConnConn => ("crypto/tls.Conn", "conn"),
            ConnField::NetConnFd => ("net.conn", "fd"),
            ConnField::NetFdPfd => ("net.netFD", "pfd"),
            ConnField::PollFdSysfd => ("internal/poll.FD", "Sysfd"),
            ConnField::TlsConnVers => ("crypto/tls.Conn", "vers"),
        };
        MemberQuery { type_name, member }
    }
}

/// The byte offsets of [`ConnField::ALL`] in one binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnOffsets {
    /// `crypto/tls.Conn.conn`.
    pub tls_conn_conn: u64,
    /// `net.conn.fd`.
    pub net_conn_fd: u64,
    /// `net.netFD.pfd`.
    pub net_fd_pfd: u64,
    /// `internal/poll.FD.Sysfd`.
    pub poll_fd_sysfd: u64,
    /// `crypto/tls.Conn.vers`.
    pub tls_conn_vers: u64,
}

impl ConnOffsets {
    /// Builds them from per-field values in [`ConnField::ALL`] order; `None` if any is missing.
    pub fn from_fields(values: &[Option<u64>]) -> Option<Self> {
        match values {
            [Some(a), Some(b), Some(c), Some(d), Some(e)] => Some(ConnOffsets {
                tls_conn_conn: *a,
                net_conn_fd: *b,
                net_fd_pfd: *c,
                poll_fd_sysfd: *d,
                tls_conn_vers: *e,
            }),
            _ => None,
        }
    }

    /// The offset of one field.
    pub fn get(&self, field: ConnField) -> u64 {
        match field {
            ConnField::TlsConnConn => self.tls_conn_conn,
            ConnField::NetConnFd => self.net_conn_fd,
            ConnField::NetFdPfd => self.net_fd_pfd,
            ConnField::PollFdSysfd => self.poll_fd_sysfd,
            ConnField::TlsConnVers => self.tls_conn_vers,
        }
    }
}

/// One release line's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRow {
    /// The release line: (1, 26) is every go1.26.x.
    pub release: (u32, u32),
    /// The toolchain (and binary) the row was read from.
    pub measured_on: &'static str,
    /// The offsets.
    pub offsets: ConnOffsets,
    /// `runtime.g.goid` (the goroutine probes, [`super::runtime`]).
    pub g_goid: u64,
    /// `runtime.g.parentGoid`, from go1.21 on.
    pub g_parent_goid: Option<u64>,
}

/// The socket's path has not moved since the register ABI; `Conn.vers` moved in go1.21
/// (the `quic` field before it). Each row stands only for its release line.
const GO_1_19: ConnOffsets = ConnOffsets {
    tls_conn_conn: 0,
    net_conn_fd: 0,
    net_fd_pfd: 0,
    poll_fd_sysfd: 16,
    tls_conn_vers: 64,
};
const GO_1_24_TO_1_26: ConnOffsets = ConnOffsets {
    tls_conn_vers: 72,
    ..GO_1_19
};

/// The table. Add a row by reading [`super::dwarf::member_offsets`] of [`ConnField::ALL`]
/// from a binary built by that release (`go/tests.rs` prints them and names the missing row).
pub const TABLE: &[TableRow] = &[
    // Debian's golang-1.19-go, building the test program (go/fixtures.rs).
    TableRow {
        release: (1, 19),
        measured_on: "go1.19.8",
        offsets: GO_1_19,
        g_goid: 152,
        g_parent_goid: None,
    },
    // The DWARF of Docker's CLI (/usr/local/bin/docker on this machine image, built by go1.24.3).
    TableRow {
        release: (1, 24),
        measured_on: "go1.24.3",
        offsets: GO_1_24_TO_1_26,
        // runtime.g gained syscallbp in go1.23.
        g_goid: 160,
        g_parent_goid: Some(280),
    },
    // The machine's Go (/usr/local/go), building the test program.
    TableRow {
        release: (1, 26),
        measured_on: "go1.26.8",
        offsets: GO_1_24_TO_1_26,
        g_goid: 152,
        g_parent_goid: Some(280),
    },
];

/// The row for `version`'s release line, if the table has one.
pub fn for_version(version: &GoVersion) -> Option<&'static TableRow> {
    TABLE
        .iter()
        .find(|row| row.release == (version.major, version.minor))
}
