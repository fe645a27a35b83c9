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
#include <tls/call.h>

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_read, void *ssl, void *buf, int num) {
    return tls_call_enter((__u64)ssl, (__u64)buf, 0, SONDE_DIR_INGRESS, 0);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_read_ex, void *ssl, void *buf, size_t num, size_t *readbytes) {
    return tls_call_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, SONDE_DIR_INGRESS, 0);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_write, void *ssl, const void *buf, int num) {
    return tls_call_enter((__u64)ssl, (__u64)buf, 0, SONDE_DIR_EGRESS, num > 0 ? num : 0);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_write_ex, void *ssl, const void *buf, size_t num, size_t *written) {
    return tls_call_enter((__u64)ssl, (__u64)buf, (__u64)written, SONDE_DIR_EGRESS, num);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_ssl_handshake, void *ssl) {
    return tls_call_enter((__u64)ssl, 0, 0, SONDE_DIR_INGRESS, 0);
}

/* One return program for every call: the entry's record says what to report. */
SEC("uretprobe")
int BPF_KRETPROBE(sonde_uretprobe_ssl, long rax) {
    if (empty_probes)
        return 0;
    /* Every probed function returns int: sign-extend from 32 bits, or -1 reads as 4 GiB. */
    return tls_call_exit((int)rax, SONDE_SRC_OPENSSL);
}
