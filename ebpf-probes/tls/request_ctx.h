/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Trace context for the peer of a TLS request. Nothing can be inserted into TLS records,
 * but sock_ops writes a TCP header option on a socket's next data segment from
 * tcp_opt_out (inject.bpf.c), and a peer running Sonde continues the trace it names
 * (trace_ctx/decide.h): another host's agent, or this one. The entry must exist before
 * the request's ciphertext leaves, so a write call's client span is decided at the call's
 * entry, and the call's plaintext event takes the same IDs from the thread's inject note.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <maps/data_scratch.h>
#include <maps/inject.h>
#include <maps/tcp_opt_ctxs.h>
#include <maps/tls.h>
#include <protocols/http1.h>
#include <socket_data/handler.h>
#include <trace_ctx/decide.h>

/*
 * s holds a decided data event of plaintext being written (trace_ctx/decide.h): when it
 * starts a client span Sonde made (the application sent no context header of its own,
 * which crosses inside TLS anyway), that span goes out in the TCP option of the socket's
 * next data segment.
 */
static __always_inline void send_in_tcp_option(const struct scratch *s) {
    const struct sonde_data_event *ev = &s->ev;
    if (!inject_enabled || ev->ctx_role != SONDE_CTX_CLIENT_REQUEST ||
        ev->parent_source == SONDE_PARENT_HEADER)
        return;
    struct tcp_opt_ctx out = {.ts_ns = ev->ts_ns};
    __builtin_memcpy(out.trace_id, ev->ctx.trace_id, sizeof(out.trace_id));
    __builtin_memcpy(out.span_id, ev->ctx.span_id, sizeof(out.span_id));
    __u64 sk = ev->sock_id;
    bpf_map_update_elem(&tcp_opt_out, &sk, &out, BPF_ANY);
}

/* The same span as the thread's note, for the call's plaintext event at its return
 * (client_from_note). */
static __always_inline void note_for_return(const struct scratch *s, __u32 tid) {
    const struct sonde_data_event *ev = &s->ev;
    if (ev->ctx_role != SONDE_CTX_CLIENT_REQUEST || ev->parent_source == SONDE_PARENT_HEADER)
        return;
    struct inject_note note = {};
    note.ctx = ev->ctx;
    note.sk = ev->sock_id;
    note.status = SONDE_INJECT_NONE;
    note.source = ev->parent_source;
    note.trace_flags = ev->trace_flags;
    note.kind = NOTE_CLIENT;
    note.opt_sent = 1; /* the option is tcp_opt_out's, not this note's */
    bpf_map_update_elem(&inject_notes, &tid, &note, BPF_ANY);
}

/*
 * The entry of a write call (OpenSSL, GnuTLS) of len plaintext bytes at buf on session
 * key: when the session's connection is known and the bytes start an HTTP request, its
 * client span is decided now, and the call's return reports the plaintext with it.
 */
static __always_inline void decide_request_at_entry(const struct tls_session_key *key, __u64 buf,
                                                    __u64 len) {
    if (!inject_enabled || !buf || len < 8)
        return;
    /* Most writes are not request starts (a server's responses, bodies): eight bytes
     * tell, before the head is copied. */
    __u8 start[8];
    if (bpf_probe_read_user(start, sizeof(start), (void *)buf) ||
        !looks_like_http_request(start, sizeof(start)))
        return;
    const struct sonde_sock_info *si = bpf_map_lookup_elem(&tls_sessions, key);
    if (!si)
        return;
    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
    if (!s)
        return;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct sonde_data_event *ev =
        start_data_event(s, si, SONDE_DIR_EGRESS, SONDE_SYS_TLS, pid_tgid, len);
    /* Only the head decides. Bounded here, and kept so (barrier_var): from an int
     * argument, clang otherwise hands capture_buf's read the unbounded length where it
     * proved the clamp a no-op, which the verifier refuses. */
    __u64 head = len < SONDE_MAX_CAPTURE ? len : SONDE_MAX_CAPTURE;
    barrier_var(head);
    capture_buf(s, (const __u8 *)buf, head);
    if (!looks_like_http_request(ev->data, ev->captured_len))
        return;
    decide_trace_ctx(s, pid_tgid);
    note_for_return(s, (__u32)pid_tgid);
    send_in_tcp_option(s);
}
