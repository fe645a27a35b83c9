/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* An execution context's current server span (maps/thread_ctxs.h), and the client span a
 * request it sends gets from it: shared by the data handler, the sk_msg program and the Go
 * runtime probes. Keys: trace_ctx/exec_key.h. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <maps/thread_ctxs.h>
#include <trace_ctx/ids.h>

/* The server span execution context key is working on, or NULL (none, or cleared). */
static __always_inline struct thread_ctx *thread_ctx_of(__u64 key) {
    struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &key);
    return tc && tc->sock_id ? tc : NULL;
}

/* An inherited context still describes live work: its owner is on the same span. */
static __always_inline bool inherited_ctx_live(const struct thread_ctx *tc) {
    if (!tc->inherited)
        return true;
    struct thread_ctx *origin = thread_ctx_of(tc->owner);
    return origin &&
           __builtin_memcmp(origin->ctx.span_id, tc->ctx.span_id, sizeof(tc->ctx.span_id)) == 0;
}

/* The live server span of execution context key, or NULL. A dead inherited one is
 * cleared on the way (its owner has moved on). */
static __always_inline struct thread_ctx *live_ctx_of(__u64 key) {
    struct thread_ctx *tc = thread_ctx_of(key);
    if (tc && !inherited_ctx_live(tc)) {
        tc->sock_id = 0;
        return NULL;
    }
    return tc;
}

/* tc as another execution context inherits it: a copy that lives while tc's owner stays
 * on its span, giving its children `source`. */
static __always_inline void inherited_copy(struct thread_ctx *out, const struct thread_ctx *tc,
                                           __u8 source) {
    *out = *tc;
    out->inherited = 1;
    out->multiplexed = 0;
    out->source = source;
}

/* Gives key the context tc (of another execution context). */
static __always_inline void inherit_ctx(__u64 key, const struct thread_ctx *tc, __u8 source) {
    struct thread_ctx copy;
    inherited_copy(&copy, tc, source);
    bpf_map_update_elem(&thread_ctxs, &key, &copy, BPF_ANY);
}

/* The context of a new client span that execution context key sends on socket sk: a child
 * of the server span it is working on, or the root of a new trace. Shared with the sk_msg
 * program, which decides the IDs it inserts before the bytes leave. */
static __always_inline void client_ctx_for(struct thread_ctx *out, __u64 key, __u64 sk) {
    new_span_id(out->ctx.span_id);
    struct thread_ctx *tc = live_ctx_of(key);
    if (tc && tc->sock_id != sk) {
        __builtin_memcpy(out->ctx.trace_id, tc->ctx.trace_id, sizeof(out->ctx.trace_id));
        __builtin_memcpy(out->ctx.parent_span_id, tc->ctx.span_id, sizeof(out->ctx.parent_span_id));
        out->source = tc->source;
        out->trace_flags = tc->trace_flags;
        return;
    }
    random_bytes(out->ctx.trace_id, 2);
    out->ctx.trace_id[0] |= 1;
    __builtin_memset(out->ctx.parent_span_id, 0, sizeof(out->ctx.parent_span_id));
    out->source = SONDE_PARENT_NONE;
    out->trace_flags = 1;
}
