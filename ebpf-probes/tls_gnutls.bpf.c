/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * GnuTLS (libgnutls.so.30: wget, and GnuTLS builds of curl and others): uprobes at the
 * entry and uretprobes at the return of
 *
 *   ssize_t gnutls_record_recv(gnutls_session_t session, void *data, size_t data_size)
 *   ssize_t gnutls_record_send(gnutls_session_t session, const void *data, size_t data_size)
 *   int gnutls_handshake(gnutls_session_t session)         (no plaintext: finds the socket)
 *
 * returning bytes moved, or a negative GNUTLS_E_* code. With the default transport the
 * library reads and writes the socket on the calling thread, as OpenSSL does: the same
 * call records (tls/call.h) tie the plaintext to its connection.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"
#include <tls/call.h>

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_gnutls_recv, void *session, void *data, size_t size) {
    return tls_call_enter((__u64)session, (__u64)data, 0, SONDE_DIR_INGRESS, 0);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_gnutls_send, void *session, const void *data, size_t size) {
    return tls_call_enter((__u64)session, (__u64)data, 0, SONDE_DIR_EGRESS, size);
}

SEC("uprobe")
int BPF_KPROBE(sonde_uprobe_gnutls_handshake, void *session) {
    return tls_call_enter((__u64)session, 0, 0, SONDE_DIR_INGRESS, 0);
}

/* One return program for the three: recv and send return ssize_t (the whole register),
 * the handshake an int whose count is never used. */
SEC("uretprobe")
int BPF_KRETPROBE(sonde_uretprobe_gnutls, long rax) {
    if (empty_probes)
        return 0;
    return tls_call_exit(rax, SONDE_SRC_GNUTLS);
}
