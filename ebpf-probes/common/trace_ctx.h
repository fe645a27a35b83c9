/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Trace-context decisions, made in the kernel at the moment a request crosses a socket,
 * so that an outgoing request can carry the right IDs synchronously (propagation). */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "common/http_detect.h"
#include "maps/maps.h"

static __always_inline void random_bytes(__u8 *dst, int words) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (i >= words)
            break;
        __u32 r = bpf_get_prandom_u32();
        __builtin_memcpy(dst + 4 * i, &r, 4);
    }
}

static __always_inline void new_span_id(__u8 *span_id) {
    /* An all-zero span ID is invalid; a zero word pair is one chance in 2^64, but cheap to rule
     * out. */
    random_bytes(span_id, 2);
    span_id[0] |= 1;
}

/* A request arrived on sock_id: start a server span, make it this thread's context. */
static __always_inline void on_server_request(struct sonde_data_event *ev, __u32 tid) {
    ev->ctx_role = SONDE_CTX_SERVER_REQUEST;
    ev->parent_source = SONDE_PARENT_NONE;
    random_bytes(ev->ctx.trace_id, 4);
    ev->ctx.trace_id[0] |= 1;
    new_span_id(ev->ctx.span_id);
    __builtin_memset(ev->ctx.parent_span_id, 0, sizeof(ev->ctx.parent_span_id));

    struct thread_ctx tc = {};
    tc.ctx = ev->ctx;
    tc.sock_id = ev->sock_id;
    tc.owner_tid = tid;
    tc.source = SONDE_PARENT_THREAD;
    bpf_map_update_elem(&thread_ctxs, &tid, &tc, BPF_ANY);
}

/* An inherited context still describes live work: its owner is on the same span. */
static __always_inline bool inherited_ctx_live(const struct thread_ctx *tc) {
    if (tc->source != SONDE_PARENT_FORK)
        return true;
    __u32 owner = tc->owner_tid;
    struct thread_ctx *origin = bpf_map_lookup_elem(&thread_ctxs, &owner);
    return origin &&
           __builtin_memcmp(origin->ctx.span_id, tc->ctx.span_id, sizeof(tc->ctx.span_id)) == 0;
}

/* A request left on sock_id: a client span, child of the thread's server span if any. */
static __always_inline void on_client_request(struct sonde_data_event *ev, __u32 tid) {
    ev->ctx_role = SONDE_CTX_CLIENT_REQUEST;
    new_span_id(ev->ctx.span_id);

    struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &tid);
    if (tc && !inherited_ctx_live(tc)) {
        bpf_map_delete_elem(&thread_ctxs, &tid);
        tc = NULL;
    }
    if (tc && tc->sock_id != ev->sock_id) {
        __builtin_memcpy(ev->ctx.trace_id, tc->ctx.trace_id, sizeof(ev->ctx.trace_id));
        __builtin_memcpy(ev->ctx.parent_span_id, tc->ctx.span_id, sizeof(ev->ctx.parent_span_id));
        ev->parent_source = tc->source;
        return;
    }
    random_bytes(ev->ctx.trace_id, 4);
    ev->ctx.trace_id[0] |= 1;
    __builtin_memset(ev->ctx.parent_span_id, 0, sizeof(ev->ctx.parent_span_id));
    ev->parent_source = SONDE_PARENT_NONE;
}

/* The thread started answering on the socket its request came from: it is done with
 * that request, so later calls it makes must not become that request's children.
 * Interim 1xx responses (100 Continue, 103 Early Hints) come before the handler's work. */
static __always_inline void on_server_response(struct sonde_data_event *ev, __u32 tid) {
    /* "HTTP/1.x NNN": looks_like_http_response() guaranteed at least 12 bytes. */
    if (ev->data[9] == '1')
        return;
    struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &tid);
    if (tc && tc->sock_id == ev->sock_id)
        bpf_map_delete_elem(&thread_ctxs, &tid);
}

/* Other bytes sent while the thread serves a request (a database or cache call): name that
 * request as their parent, so userspace can parent the call's span without parsing the
 * protocol here. Bytes on the server socket itself belong to the request, not a call. */
static __always_inline void on_other_egress(struct sonde_data_event *ev, __u32 tid) {
    struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &tid);
    if (!tc || tc->sock_id == ev->sock_id || !inherited_ctx_live(tc))
        return;
    ev->ctx_role = SONDE_CTX_IN_SPAN;
    ev->parent_source = tc->source;
    __builtin_memcpy(ev->ctx.trace_id, tc->ctx.trace_id, sizeof(ev->ctx.trace_id));
    __builtin_memset(ev->ctx.span_id, 0, sizeof(ev->ctx.span_id));
    __builtin_memcpy(ev->ctx.parent_span_id, tc->ctx.span_id, sizeof(ev->ctx.parent_span_id));
}

static __always_inline void decide_trace_ctx(struct sonde_data_event *ev, __u32 tid) {
    __u32 n = ev->captured_len;
    if (ev->direction == SONDE_DIR_INGRESS) {
        if (looks_like_http_request(ev->data, n))
            on_server_request(ev, tid);
    } else if (looks_like_http_request(ev->data, n)) {
        on_client_request(ev, tid);
    } else if (looks_like_http_response(ev->data, n)) {
        on_server_response(ev, tid);
    } else {
        on_other_egress(ev, tid);
    }
}
