/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one contract between the probes and the Rust agent (userspace-agent/src/abi.rs).
 * Rules: every struct is hand-padded and naturally aligned (never packed), the event
 * kind byte comes first, and a Rust test compares sizes and offsets against the BTF of
 * the compiled object (abi_types.bpf.c), so drift fails the build's tests.
 */
#pragma once

/* Bytes of payload a data event can carry (power of two: masks prove bounds). */
#define SONDE_MAX_CAPTURE 4096
/* Last bytes of a syscall's data reported separately (chunked terminator detection). */
#define SONDE_TAIL_BYTES 8
/* iovec entries walked per readv/writev/recvmsg/sendmsg (bounded loop). */
#define SONDE_MAX_IOV 8

enum sonde_event_kind {
    SONDE_EV_DATA = 1,       /* bytes moved on a TCP socket of a traced process */
    SONDE_EV_SOCK_STATE = 2, /* TCP state change of a socket seen by a data event */
    SONDE_EV_EXEC = 3,       /* a traced process (or any, when watching exe globs) exec'd:
                              * struct sonde_exec_event, a snapshot for short-lived processes */
    SONDE_EV_EXIT = 4,       /* a traced process exited */
    SONDE_EV_LIBS = 5,       /* a traced process's dynamic loader changed its link map
                              * (dlopen, dlclose): struct sonde_proc_event */
};

enum sonde_direction {
    SONDE_DIR_INGRESS = 0, /* the process read these bytes */
    SONDE_DIR_EGRESS = 1,  /* the process wrote these bytes */
};

/* Which syscall produced a data event (diagnostics and tests). */
enum sonde_syscall {
    SONDE_SYS_READ = 1,
    SONDE_SYS_WRITE = 2,
    SONDE_SYS_READV = 3,
    SONDE_SYS_WRITEV = 4,
    SONDE_SYS_RECVFROM = 5,
    SONDE_SYS_SENDTO = 6,
    SONDE_SYS_RECVMSG = 7,
    SONDE_SYS_SENDMSG = 8,
    SONDE_SYS_SENDFILE = 9,
    SONDE_SYS_SPLICE = 10,
    SONDE_SYS_TLS = 20, /* not a syscall: plaintext a TLS library call moved (source) */
};

/* Where a data event's bytes were read. */
enum sonde_source {
    SONDE_SRC_SOCKET = 0,  /* the socket's own bytes, at the syscall or the socket layer */
    SONDE_SRC_OPENSSL = 1, /* plaintext of an OpenSSL/BoringSSL SSL_read/SSL_write call */
    SONDE_SRC_GO = 2,      /* plaintext of a Go crypto/tls (*Conn).Read/Write call */
    SONDE_SRC_GNUTLS = 3,  /* plaintext of a GnuTLS gnutls_record_recv/send call */
};

/* What the kernel decided about trace context for a data event. */
enum sonde_ctx_role {
    SONDE_CTX_NONE = 0,           /* not the first bytes of an HTTP request */
    SONDE_CTX_SERVER_REQUEST = 1, /* a request arrived: new server span */
    SONDE_CTX_CLIENT_REQUEST = 2, /* a request left: new client span */
    SONDE_CTX_IN_SPAN = 3,        /* other bytes sent while the thread serves a request (a
                                   * database or cache call): ctx.trace_id and
                                   * ctx.parent_span_id name that request, span_id is zero */
};

/* How a span's parent was found (mirrors spans::ParentSource). */
enum sonde_parent_source {
    SONDE_PARENT_NONE = 0,       /* root span: new trace */
    SONDE_PARENT_THREAD = 1,     /* same thread was serving a request */
    SONDE_PARENT_FORK = 2,       /* inherited from the thread or process that forked this one */
    SONDE_PARENT_HEADER = 3,     /* the request carried a trace context header (ctx_format) */
    SONDE_PARENT_TCP_OPTION = 4, /* no header: the peer's agent sent it in a TCP option */
    /* The same goroutine, or one it started or handed the request to (Go): exact. */
    SONDE_PARENT_GOROUTINE = 5,
    /* The thread serves several requests at once (an event loop): the last request it
     * read is named, which may be the wrong one. A guess, said as one. */
    SONDE_PARENT_THREAD_LAST_READ = 6,
};

/* Which trace context header a request carried (incoming: the server span's parent;
 * outgoing: the application's own header, which the client span then follows). */
enum sonde_ctx_format {
    SONDE_FMT_NONE = 0,
    SONDE_FMT_W3C = 1,      /* traceparent */
    SONDE_FMT_B3 = 2,       /* b3: single header */
    SONDE_FMT_B3_MULTI = 3, /* X-B3-TraceId + X-B3-SpanId */
    SONDE_FMT_JAEGER = 4,   /* uber-trace-id */
    SONDE_FMT_XRAY = 5,     /* X-Amzn-Trace-Id */
};

/* What the sk_msg program did to an outgoing request (client requests only). */
enum sonde_inject_status {
    SONDE_INJECT_NONE = 0,       /* the socket is not enrolled: bytes left alone */
    SONDE_INJECT_DONE = 1,       /* a traceparent line carrying ctx was inserted */
    SONDE_INJECT_APP_HEADER = 2, /* the request had its own context header: left alone */
    SONDE_INJECT_SKIPPED = 3,    /* not provably safe (split header block, too large) */
    SONDE_INJECT_FAILED = 4,     /* the kernel refused the insertion: bytes unchanged */
};

/* Reasons the probes count instead of reporting (index into the `drops` array). */
enum sonde_drop_reason {
    SONDE_DROP_RINGBUF_FULL = 0,   /* ring buffer reserve/output failed */
    SONDE_DROP_READ_FAULT = 1,     /* user memory could not be read */
    SONDE_DROP_UNDECODED = 2,      /* socket bytes moved by a syscall whose arguments do not
                                    * describe them (io_uring, recvmmsg/sendmmsg) */
    SONDE_DROP_TLS_CIPHERTEXT = 3, /* a TLS connection's ciphertext: its plaintext comes
                                    * from the library's probes instead */
    SONDE_DROP_TLS_UNMAPPED = 4,   /* TLS plaintext whose connection was never seen */
    /* Not a drop, counted alike: a thread seen with two requests open at once (an event
     * loop), whose calls get a guessed parent from then on (SONDE_PARENT_THREAD_LAST_READ). */
    SONDE_DROP_MULTIPLEXED_THREAD = 5,
    SONDE_DROP_MAX = 8,
};

/* What the injection programs did (index into the `inject_counts` array). */
enum sonde_inject_counter {
    SONDE_INJ_ENROLLED = 0,     /* a client socket joined the sockhash */
    SONDE_INJ_ENROL_FAILED = 1, /* the sockhash refused it (full, or a state it rejects) */
    SONDE_INJ_DONE = 2,         /* a traceparent line was inserted */
    SONDE_INJ_APP_HEADER = 3,   /* the request already had a context header */
    SONDE_INJ_SKIPPED = 4,      /* a request that could not be proven safe to edit */
    SONDE_INJ_FAILED = 5,       /* the kernel refused the insertion; bytes unchanged */
    SONDE_INJ_TCP_OPT_SENT = 6, /* a TCP header option carried a context to the peer */
    SONDE_INJ_TCP_OPT_RECV = 7, /* a TCP header option from a peer's agent was read */
    SONDE_INJ_ARMED_LATE = 8,   /* a socket opened before the agent attached was armed */
    SONDE_INJ_MAX = 16,
};

struct sonde_trace_ctx {
    __u8 trace_id[16];
    __u8 span_id[8];
    __u8 parent_span_id[8]; /* all zero: no parent */
};

struct sonde_data_event {
    __u8 kind;          /* SONDE_EV_DATA */
    __u8 direction;     /* enum sonde_direction */
    __u8 syscall;       /* enum sonde_syscall */
    __u8 family;        /* AF_INET or AF_INET6 */
    __u8 ctx_role;      /* enum sonde_ctx_role */
    __u8 parent_source; /* enum sonde_parent_source */
    __u16 tail_len;     /* valid bytes in tail[] */
    __u32 tgid;
    __u32 tid;
    __u64 ts_ns;         /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
    __u64 sock_id;       /* kernel address of struct sock: the connection identity */
    __u64 total_len;     /* bytes the syscall moved */
    __u32 captured_len;  /* valid bytes in data[] */
    __u16 local_port;    /* host byte order */
    __u16 remote_port;   /* host byte order */
    __u8 local_addr[16]; /* IPv4 in the first 4 bytes, or IPv6 */
    __u8 remote_addr[16];
    __u8 ctx_format;    /* enum sonde_ctx_format */
    __u8 inject_status; /* enum sonde_inject_status */
    __u8 trace_flags;   /* W3C trace-flags of ctx (bit 0: sampled) */
    __u8 source;        /* enum sonde_source */
    __s32 fd;           /* the descriptor the process used; -1 when not known (TLS plaintext) */
    __u16 tls_version;  /* TLS plaintext: the session's protocol version (0x0303: TLS 1.2), 0
                         * when not known */
    __u8 _pad[6];
    /* Egress: bytes the process has written to this socket so far (tcp_sock bytes_acked
     * + write_seq - snd_una; the agent compares it with TCP_INFO before re-enrolling the
     * socket for injection). 0 for ingress, for HTTP response heads (server sockets are
     * never re-enrolled), and when injection is off. */
    __u64 sent_bytes;
    /* The socket's folded egress when this record was made (struct sonde_sock_info). */
    __u64 folded_bytes;
    __u64 folded_ts_ns;
    struct sonde_trace_ctx ctx; /* valid when ctx_role != SONDE_CTX_NONE */
    __u8 tail[SONDE_TAIL_BYTES];
    __u8 data[SONDE_MAX_CAPTURE];
};

/* Header part of a data event; the ring record is this plus captured_len bytes. */
#define SONDE_DATA_HDR_SIZE (sizeof(struct sonde_data_event) - SONDE_MAX_CAPTURE)

struct sonde_sock_state_event {
    __u8 kind; /* SONDE_EV_SOCK_STATE */
    __u8 old_state;
    __u8 new_state;
    __u8 _pad[5];
    __u64 ts_ns;
    __u64 sock_id;
    /* The socket's folded egress at the change (struct sonde_sock_info). */
    __u64 folded_bytes;
    __u64 folded_ts_ns;
};

/*
 * What a TCP socket is, kept per socket while it carries traced data (the known_socks map,
 * which userspace also reads). Egress with no bytes in user memory (sendfile, splice) is
 * folded in here instead of getting a record of its own: every later record on the socket,
 * and its state changes, carry the running total, and userspace reads it for a connection
 * that went quiet mid-response. Each fold costs a counter update, not a ring record.
 */
struct sonde_sock_info {
    __u64 sk; /* kernel address of struct sock; 0: not a TCP socket */
    __u8 family;
    __u8 tls; /* a TLS library call moved bytes on it: its own bytes are ciphertext */
    __u16 local_port;
    __u16 remote_port;
    __u8 _pad2[2];
    __u8 local_addr[16];
    __u8 remote_addr[16];
    __u64 folded_bytes; /* total bytes folded so far */
    __u64 folded_ts_ns; /* when the last of them was sent (CLOCK_MONOTONIC) */
};

/* A go_tls_binaries value (maps/go_tls.h), written by the agent per probed Go binary:
 * the path from a *crypto/tls.Conn to its socket's descriptor in one binary (DWARF, else
 * a table by Go release: userspace-agent/src/attach/binary/go/offsets.rs):
 *   Conn.conn (net.Conn: itab, data) -> data: *net.TCPConn = net.conn{fd *netFD}
 *   -> netFD.pfd (internal/poll.FD) -> FD.Sysfd (int) */
struct go_tls_offsets {
    __u64 tls_conn_conn;
    __u64 net_conn_fd;
    __u64 net_fd_pfd;
    __u64 poll_fd_sysfd;
    __u64 tls_conn_vers; /* Conn.vers (uint16): the negotiated version, 0 before the handshake */
    /* The hash the runtime gives *net.TCPConn (itab.hash): a conn of another type (a
     * wrapper) is refused rather than read as if it were a TCPConn. 0: not checked. */
    __u32 tcp_conn_type_hash;
    __u32 _pad;
};

/* A traced Go process (maps/go_procs.h, written by the agent): where the running goroutine
 * is found from a thread (its g pointer at the thread pointer plus g_tls_offset: -8 for
 * every Go binary of the register ABI seen, cgo or not), and g.goid's offset. Offsets
 * come from the binary's DWARF or a table by release
 * (userspace-agent/src/attach/binary/go/runtime.rs). */
struct go_runtime_offsets {
    __s64 g_tls_offset;
    __u64 g_goid;
    /* g.parentGoid (go1.21+): who started a goroutine, read at newproc1's return alone.
     * 0: no such field, the entry probe names the starter. */
    __u64 g_parent_goid;
};

/* Parts of an exec snapshot, at fixed offsets in sonde_exec_event.data. */
#define SONDE_EXEC_FILENAME_MAX 256
#define SONDE_EXEC_ARGS_MAX 1024
#define SONDE_EXEC_ENV_MAX 2816
#define SONDE_EXEC_DATA_MAX (SONDE_EXEC_FILENAME_MAX + SONDE_EXEC_ARGS_MAX + SONDE_EXEC_ENV_MAX)

/* What the process looked like right after exec, read in the kernel: a process that
 * exits before userspace reads /proc still gets its real name and command line. */
struct sonde_exec_event {
    __u8 kind;   /* SONDE_EV_EXEC */
    __u8 traced; /* the process was traced when it exec'd (it may be gone when this is read) */
    __u8 _pad[2];
    __u32 tgid;
    __u64 ts_ns;
    __u16 filename_len; /* bytes at data[0], no NUL */
    __u16 args_len;     /* NUL-separated argv at data[SONDE_EXEC_FILENAME_MAX] */
    __u16 env_len;      /* NUL-separated envp prefix at data[FILENAME_MAX + ARGS_MAX] */
    __u16 _pad2;
    __u8 data[SONDE_EXEC_DATA_MAX];
};

struct sonde_proc_event {
    __u8 kind; /* SONDE_EV_EXIT, SONDE_EV_LIBS */
    __u8 _pad[3];
    __u32 tgid;
    __u64 ts_ns;
};
