/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A TLS library call returned: its plaintext becomes a data event on the call's
 * connection, exactly as if the socket had carried it in the clear, so everything after
 * the ring (parsers, spans, trace context) treats it as it treats plaintext. The trace
 * decision is the socket path's own (trace_ctx/decide.h), made on the plaintext.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/traced.h>
#include <maps/tls.h>
#include <socket_data/handler.h>
#include <tls/memory_bio.h>

/* version if it is one of SSL 3.0 to TLS 1.3 (0x0300-0x0304), else 0: a value read from
 * a library's memory whose layout may not be the one assumed. */
static __always_inline __u16 tls_version_or_0(__u32 version) {
    return version >= 0x0300 && version <= 0x0304 ? version : 0;
}

/*
 * len plaintext bytes at buf, moved in direction dir on connection si by a call of the
 * library source, become a data event. ts_ns: when the bytes started to move, 0 for now;
 * tls_version: the session's protocol version (tls_version_or_0), 0 when not known.
 * Returns the event's scratch (the event stays readable there after submission), NULL if
 * none was made.
 */
static __always_inline const struct scratch *emit_plaintext(const struct sonde_sock_info *si,
                                                            __u8 dir, __u64 buf, __u64 len,
                                                            __u64 ts_ns, __u8 source,
                                                            __u16 tls_version) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
    if (!s)
        return NULL;
    struct sonde_data_event *ev = start_data_event(s, si, dir, SONDE_SYS_TLS, pid_tgid, len);
    ev->source = source;
    ev->tls_version = tls_version;
    if (ts_ns)
        ev->ts_ns = ts_ns;
    /* Plaintext has no folded egress of its own: the socket's count is of ciphertext. */
    ev->folded_bytes = 0;
    ev->folded_ts_ns = 0;
    capture_buf(s, (const __u8 *)buf, len);
    if (ev->captured_len)
        decide_trace_ctx(s, pid_tgid);
    /* No descriptor and no re-enrolment: nothing can be inserted into TLS records. */
    ev->fd = -1;
    ev->sent_bytes = 0;
    submit_data(s);
    return s;
}

/*
 * The call in call (its entry probe's record) moved len plaintext bytes; source says
 * which library. The connection is the one the socket hooks saw during the call, else
 * the one an earlier call of the same session used (answered from the library's buffer),
 * or for a library working on memory the one the I/O around its calls names.
 */
static __always_inline void emit_tls_plaintext(const struct tls_call *call, __u64 len, __u8 source,
                                               __u16 tls_version) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct tls_session_key key = {.ssl = call->ssl, .tgid = pid_tgid >> 32};
    const struct sonde_sock_info *si;
    if (call->seen_sock) {
        si = &call->sock;
        bpf_map_update_elem(&tls_sessions, &key, si, BPF_ANY);
    } else {
        __u32 *flags = traced(&key.tgid);
        if (!flags)
            return;
        si = memory_bio_connection(call, &key, (__u32)pid_tgid, flags);
        if (!si) {
            /* Nothing lost: a handshake, or a call that moved no plaintext. */
            if (!call->buf || !len)
                return;
            count_drop(SONDE_DROP_TLS_UNMAPPED);
            log_debug("TLS plaintext on a connection never seen: skipped",
                      LOG_NUM("tgid", pid_tgid >> 32), LOG_NUM("bytes", len));
            return;
        }
    }
    if (!call->buf || !len)
        return;
    /* Written plaintext left when the call began (a request starts there, before the
     * peer can read it); read plaintext is there when the call returns. */
    __u64 ts_ns = call->dir == SONDE_DIR_EGRESS ? call->entry_ns : 0;
    emit_plaintext(si, call->dir, call->buf, len, ts_ns, source, tls_version);
}
