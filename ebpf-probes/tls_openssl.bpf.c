/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * OpenSSL and BoringSSL, as a shared library (libssl.so) or linked into an executable:
 * uprobes at the entry and uretprobes at the return of
 *
 *   int SSL_read(SSL *ssl, void *buf, int num)            returns bytes read, or <= 0
 *   int SSL_write(SSL *ssl, const void *buf, int num)     returns bytes written, or <= 0
 *   int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)   returns 1 / 0
 *   int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)
 *   int SSL_do_handshake(SSL *ssl)                        (no plaintext: finds the socket)
 *
 * Entry records the call (maps/tls.h); the socket hooks, seeing it, note its connection
 * and skip the ciphertext (tls/socket_side.h); return reports the plaintext on that
 * connection (tls/plaintext.h). userspace-agent/src/attach/tls/ finds the functions in
 * the files traced processes map and attaches these programs there, once per file.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/traced.h>
#include <maps/tls.h>
#include <tls/plaintext.h>

static __always_inline int openssl_enter(__u64 ssl, __u64 buf, __u64 len_ptr, __u8 dir) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (empty_probes || !traced(&(__u32){pid_tgid >> 32}))
        return 0;
    __u32 zero = 0;
    struct tls_call *call = bpf_map_lookup_elem(&tls_call_scratch, &zero);
    if (!call)
        return 0;
    __builtin_memset(call, 0, sizeof(*call));
    call->ssl = ssl;
    call->buf = buf;
    call->len_ptr = len_ptr;
    call->dir = dir;
    call->entry_ns = bpf_ktime_get_ns();
    __u32 tid = (__u32)pid_tgid;
    bpf_map_update_elem(&tls_calls, &tid, call, BPF_ANY);
    return 0;
}

/* ret is the function's return value (an int: the upper half of the register is not
 * part of it); the byte count is ret, or *len_ptr for _ex. */
static __always_inline int openssl_exit(int ret) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)pid_tgid;
    struct tls_call *found = bpf_map_lookup_elem(&tls_calls, &tid);
    if (!found)
        return 0;
    __u32 zero = 0;
    struct tls_call *call = bpf_map_lookup_elem(&tls_call_scratch, &zero);
    if (!call) {
        bpf_map_delete_elem(&tls_calls, &tid);
        return 0;
    }
    *call = *found;
    bpf_map_delete_elem(&tls_calls, &tid);

    __u64 len = 0;
    if (call->len_ptr) {
        if (ret != 1 || bpf_probe_read_user(&len, sizeof(len), (void *)call->len_ptr))
            len = 0;
    } else if (ret > 0) {
        len = ret;
    }
    /* A failed call (WANT_READ on a non-blocking socket) still names its session's
     * connection when it touched the socket. */
    emit_tls_plaintext(call, len, SONDE_SRC_OPENSSL);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_read, void *ssl, void *buf, int num) {
    return openssl_enter((__u64)ssl, (__u64)buf, 0, SONDE_DIR_INGRESS);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_read_ex, void *ssl, void *buf, size_t num, size_t *readbytes) {
    return openssl_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, SONDE_DIR_INGRESS);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_write, void *ssl, const void *buf, int num) {
    return openssl_enter((__u64)ssl, (__u64)buf, 0, SONDE_DIR_EGRESS);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_write_ex, void *ssl, const void *buf, size_t num, size_t *written) {
    return openssl_enter((__u64)ssl, (__u64)buf, (__u64)written, SONDE_DIR_EGRESS);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_handshake, void *ssl) {
    return openssl_enter((__u64)ssl, 0, 0, SONDE_DIR_INGRESS);
}

/* One return program for every call: the entry's record says what to report. */
SEC("uretprobe")
int BPF_KRETPROBE(sonde_uretprobe_ssl, long rax) {
    if (empty_probes)
        return 0;
    /* Every probed function returns int: sign-extend from 32 bits, or -1 reads as 4 GiB. */
    return openssl_exit((int)rax);
}
