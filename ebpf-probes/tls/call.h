/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A TLS library call on a session, for libraries whose calls do their socket I/O on the
 * calling thread (OpenSSL, GnuTLS): the entry probe records the call per thread
 * (maps/tls.h), the socket hooks note its connection while it runs
 * (tls/socket_side.h), the return probe reports the plaintext (tls/plaintext.h).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/traced.h>
#include <maps/tls.h>
#include <tls/plaintext.h>
#include <tls/request_ctx.h>

/* A call on session ssl moving plaintext at buf in direction dir; len: the bytes a write
 * asks to send (0 when not known). */
static __always_inline int tls_call_enter(__u64 ssl, __u64 buf, __u64 len_ptr, __u8 dir,
                                          __u64 len) {
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
    if (dir == SONDE_DIR_EGRESS) {
        struct tls_session_key key = {.ssl = ssl, .tgid = pid_tgid >> 32};
        decide_request_at_entry(&key, buf, len);
    }
    return 0;
}

/* ret is the function's return value, sign-extended from its C type by the caller; the
 * byte count is ret, or *len_ptr for OpenSSL's _ex functions (which return 1). */
static __always_inline int tls_call_exit(__s64 ret, __u8 source) {
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
    /* OpenSSL 1.1 to 3.1 and the OpenSSL in Node start struct ssl_st with int version;
     * 3.2+ starts with a type tag (0) and BoringSSL with a pointer: both read as unknown. */
    __u32 version = 0;
    if (source == SONDE_SRC_OPENSSL && len)
        bpf_probe_read_user(&version, sizeof(version), (void *)call->ssl);
    /* A failed call (WANT_READ on a non-blocking socket) still names its session's
     * connection when it touched the socket. */
    emit_tls_plaintext(call, len, source, tls_version_or_0(version));
    return 0;
}
