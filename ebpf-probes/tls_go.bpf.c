/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Go's crypto/tls, compiled into each Go program: uprobes on
 *
 *   func (c *Conn) Write(b []byte) (int, error)   entry: the plaintext to send
 *   func (c *Conn) Read(b []byte) (int, error)    entry: the buffer; each RET: the count
 *   func (c *Conn) handshakeContext(ctx) error    entry: marks the socket before the
 *                                                 handshake's ciphertext moves
 *
 * Go's register ABI (go1.17+, amd64): the receiver in RAX, a slice in RBX/RCX/RDI, the
 * first result in RAX at return, the running goroutine in R14. A uretprobe rewrites the
 * return address on the stack, which Go's stack growth and traceback cannot cope with:
 * Read's returns are probed at its RET instructions instead, found by userspace
 * (userspace-agent/src/attach/binary/go/returns_x86_64.rs).
 *
 * The socket is not seen during the call (goroutines park, other threads do the I/O for
 * them): it is read from the Conn itself, through the binary's struct offsets
 * (maps/go_tls.h), which the attach cookie selects.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/traced.h>
#include <maps/go_tls.h>
#include <socket_data/sock_lookup.h>
#include <tls/plaintext.h>
#include <tls/request_ctx.h>

/* A descriptor above this is not one (Go's Sysfd is an int). */
#define GO_MAX_FD (1 << 24)

/*
 * The TCP connection of the *tls.Conn conn in the binary the probe's cookie names, marked
 * as TLS (its own bytes are ciphertext from now on), or NULL: not a TCP socket, or the
 * Conn's transport is not a *net.TCPConn.
 */
static __always_inline const struct sonde_sock_info *go_tls_conn(struct pt_regs *ctx, __u64 conn) {
    __u32 binary = (__u32)bpf_get_attach_cookie(ctx);
    const struct go_tls_offsets *off = bpf_map_lookup_elem(&go_tls_binaries, &binary);
    if (!off || !conn) {
        log_debug("Go TLS: no offsets for this binary", LOG_NUM("binary", binary));
        return NULL;
    }
    __u64 iface[2]; /* net.Conn: itab, data */
    if (bpf_probe_read_user(iface, sizeof(iface), (void *)(conn + off->tls_conn_conn)) ||
        !iface[0] || !iface[1]) {
        log_debug("Go TLS: Conn.conn unreadable", LOG_HEX("conn", conn));
        return NULL;
    }
    if (off->tcp_conn_type_hash) {
        __u32 hash = 0; /* itab.hash, after the interface and type pointers */
        if (bpf_probe_read_user(&hash, sizeof(hash), (void *)(iface[0] + 16)) ||
            hash != off->tcp_conn_type_hash) {
            count_drop(SONDE_DROP_TLS_UNMAPPED);
            log_debug("Go TLS: the Conn's transport is not a *net.TCPConn: skipped",
                      LOG_HEX("itab_hash", hash));
            return NULL;
        }
    }
    __u64 netfd = 0;
    __s64 fd = -1;
    if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(iface[1] + off->net_conn_fd)) ||
        !netfd ||
        bpf_probe_read_user(&fd, sizeof(fd),
                            (void *)(netfd + off->net_fd_pfd + off->poll_fd_sysfd)) ||
        fd < 0 || fd > GO_MAX_FD) {
        log_debug("Go TLS: the Conn's descriptor unreadable", LOG_HEX("netfd", netfd),
                  LOG_NUM("fd", fd));
        return NULL;
    }

    __u32 zero = 0;
    struct sonde_sock_info *scratch = bpf_map_lookup_elem(&tls_sock_scratch, &zero);
    if (!scratch)
        return NULL;
    const struct sonde_sock_info *si = tcp_sock_of_fd((__u32)fd, scratch);
    if (!si) {
        log_debug("Go TLS: the Conn's descriptor is not a TCP socket", LOG_NUM("fd", fd));
        return NULL;
    }
    struct sonde_sock_info *known = bpf_map_lookup_elem(&known_socks, &si->sk);
    if (known)
        known->tls = 1;
    return si;
}

/* Conn.vers of conn: the negotiated version once the handshake is done, else 0. */
static __always_inline __u16 go_tls_version(struct pt_regs *ctx, __u64 conn) {
    __u32 binary = (__u32)bpf_get_attach_cookie(ctx);
    const struct go_tls_offsets *off = bpf_map_lookup_elem(&go_tls_binaries, &binary);
    __u16 vers = 0;
    if (off)
        bpf_probe_read_user(&vers, sizeof(vers), (void *)(conn + off->tls_conn_vers));
    return tls_version_or_0(vers);
}

static __always_inline bool go_traced(void) {
    return !empty_probes && traced(&(__u32){bpf_get_current_pid_tgid() >> 32});
}

SEC("uprobe")
int sonde_uprobe_go_tls_write(struct pt_regs *ctx) {
    if (!go_traced())
        return 0;
    __u64 len = ctx->cx;
    const struct sonde_sock_info *si = go_tls_conn(ctx, ctx->ax);
    if (!si || !len)
        return 0;
    /* Reported at entry: the bytes are in b now, and a request starts when it is sent. */
    /* Write handshakes first: the first request's version is not known yet here. */
    const struct scratch *s = emit_plaintext(si, SONDE_DIR_EGRESS, ctx->bx, len, bpf_ktime_get_ns(),
                                             SONDE_SRC_GO, go_tls_version(ctx, ctx->ax));
    /* Reported before its bytes leave: the TCP option can carry its client span. */
    if (s)
        send_in_tcp_option(s);
    return 0;
}

SEC("uprobe")
int sonde_uprobe_go_tls_read(struct pt_regs *ctx) {
    if (!go_traced())
        return 0;
    const struct sonde_sock_info *si = go_tls_conn(ctx, ctx->ax);
    if (!si)
        return 0;
    struct go_g_key key = {.g = ctx->r14, .tgid = bpf_get_current_pid_tgid() >> 32};
    __u32 zero = 0;
    struct go_tls_read *read = bpf_map_lookup_elem(&go_tls_read_scratch, &zero);
    if (!read)
        return 0;
    read->buf = ctx->bx;
    read->conn = ctx->ax;
    read->sock = *si;
    bpf_map_update_elem(&go_tls_reads, &key, read, BPF_ANY);
    return 0;
}

/* At each RET of (*Conn).Read: RAX is n. */
SEC("uprobe")
int sonde_uprobe_go_tls_read_return(struct pt_regs *ctx) {
    if (empty_probes)
        return 0;
    struct go_g_key key = {.g = ctx->r14, .tgid = bpf_get_current_pid_tgid() >> 32};
    struct go_tls_read *found = bpf_map_lookup_elem(&go_tls_reads, &key);
    if (!found)
        return 0;
    __u32 zero = 0;
    struct go_tls_read *read = bpf_map_lookup_elem(&go_tls_read_scratch, &zero);
    if (!read) {
        bpf_map_delete_elem(&go_tls_reads, &key);
        return 0;
    }
    *read = *found;
    bpf_map_delete_elem(&go_tls_reads, &key);
    __s64 n = (__s64)ctx->ax;
    if (n > 0)
        emit_plaintext(&read->sock, SONDE_DIR_INGRESS, read->buf, n, 0, SONDE_SRC_GO,
                       go_tls_version(ctx, read->conn));
    return 0;
}

/* Client and server handshakes run here, before any Read or Write of the connection on a
 * server: marking the socket now keeps the handshake's ciphertext out of the ring. */
SEC("uprobe")
int sonde_uprobe_go_tls_handshake(struct pt_regs *ctx) {
    if (go_traced())
        go_tls_conn(ctx, ctx->ax);
    return 0;
}
