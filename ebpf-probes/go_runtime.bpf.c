/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Go runtime probes: how work moves between goroutines, so that a request's calls stay
 * its children whichever goroutine makes them (contexts are keyed by goroutine in Go
 * programs: trace_ctx/exec_key.h). Uprobes on each Go program:
 *
 *   runtime.newproc1(fn, callergp *g, ...) *g     each RET: RAX = the new goroutine,
 *                                                 whose parentGoid (go1.21+) names its
 *                                                 starter; before go1.21 the entry (RBX =
 *                                                 callergp) notes the starter. A new
 *                                                 goroutine inherits its starter's context.
 *   net/http.(*persistConn).roundTrip(req)        entry, on the caller's goroutine: RBX =
 *                                                 *transportRequest, whose first field is
 *                                                 the *Request (go1.17 to go1.26)
 *   net/http.(*Request).write(w, ...)             entry, on the connection's writer
 *                                                 goroutine: RAX = the *Request
 *
 * net/http's client writes a request on the connection's own writer goroutine, which
 * serves every caller of that connection in turn: the caller's context is handed to it
 * per request, and taken back when it writes one for a caller without context.
 *
 * Register ABI (go1.17+, amd64): arguments in RAX, RBX, ...; results in RAX; the running
 * goroutine in R14 (userspace-agent/src/attach/binary/go/mod.rs). Per-process offsets
 * (g.goid) come from go_procs, which holds only traced Go processes: the probes of a file
 * also fire in untraced processes that run it, and return at the first lookup.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/log.h>
#include <maps/go_procs.h>
#include <maps/go_runtime.h>
#include <trace_ctx/exec_key.h>
#include <trace_ctx/thread_ctx.h>

/* The offsets of the current process if it is a traced Go process, with its TGID. */
static __always_inline const struct go_runtime_offsets *go_process(__u32 *tgid) {
    if (empty_probes)
        return NULL;
    *tgid = bpf_get_current_pid_tgid() >> 32;
    return bpf_map_lookup_elem(&go_procs, tgid);
}

SEC("uprobe")
int sonde_uprobe_go_newproc1(struct pt_regs *ctx) {
    __u32 tgid;
    const struct go_runtime_offsets *rt = go_process(&tgid);
    if (!rt)
        return 0;
    __u64 starter = key_of_g(rt, tgid, ctx->bx);
    if (!starter || !live_ctx_of(starter))
        return 0; /* most starts: nothing to hand down */
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    bpf_map_update_elem(&go_spawns, &tid, &starter, BPF_ANY);
    return 0;
}

/* The goroutine that started g: from g.parentGoid (go1.21+), else from the entry probe's
 * note for this thread (taken). 0: none, or it has no context to hand down. */
static __always_inline __u64 starter_of(const struct go_runtime_offsets *rt, __u32 tgid, __u64 g) {
    if (rt->g_parent_goid) {
        __u64 parent = 0;
        if (bpf_probe_read_user(&parent, sizeof(parent), (void *)(g + rt->g_parent_goid)) ||
            !parent)
            return 0;
        return goroutine_key(tgid, parent);
    }
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    __u64 *found = bpf_map_lookup_elem(&go_spawns, &tid);
    if (!found)
        return 0;
    __u64 starter = *found;
    bpf_map_delete_elem(&go_spawns, &tid);
    return starter;
}

/* At each RET of runtime.newproc1: RAX is the new goroutine, goid and parentGoid set. */
SEC("uprobe")
int sonde_uprobe_go_newproc1_return(struct pt_regs *ctx) {
    __u32 tgid;
    const struct go_runtime_offsets *rt = go_process(&tgid);
    if (!rt || !ctx->ax)
        return 0;
    __u64 starter = starter_of(rt, tgid, ctx->ax);
    struct thread_ctx *tc = starter ? live_ctx_of(starter) : NULL;
    if (!tc)
        return 0; /* most starts: nothing to hand down */
    __u64 child = key_of_g(rt, tgid, ctx->ax);
    if (child)
        inherit_ctx(child, tc, SONDE_PARENT_GOROUTINE);
    return 0;
}

SEC("uprobe")
int sonde_uprobe_go_round_trip(struct pt_regs *ctx) {
    __u32 tgid;
    const struct go_runtime_offsets *rt = go_process(&tgid);
    if (!rt)
        return 0;
    struct go_request_key key = {.tgid = tgid};
    if (!ctx->bx || bpf_probe_read_user(&key.request, sizeof(key.request), (void *)ctx->bx) ||
        !key.request)
        return 0;
    __u64 caller = key_of_g(rt, tgid, ctx->r14);
    struct thread_ctx *tc = caller ? live_ctx_of(caller) : NULL;
    if (!tc) {
        log_debug("Go: RoundTrip by a goroutine without context", LOG_HEX("key", caller));
        /* A Request's memory may have carried an earlier request's hand-off. */
        bpf_map_delete_elem(&go_handoffs, &key);
        return 0;
    }
    struct thread_ctx handoff;
    inherited_copy(&handoff, tc, SONDE_PARENT_GOROUTINE);
    bpf_map_update_elem(&go_handoffs, &key, &handoff, BPF_ANY);
    return 0;
}

SEC("uprobe")
int sonde_uprobe_go_request_write(struct pt_regs *ctx) {
    __u32 tgid;
    const struct go_runtime_offsets *rt = go_process(&tgid);
    if (!rt)
        return 0;
    __u64 writer = key_of_g(rt, tgid, ctx->r14);
    if (!writer)
        return 0;
    struct go_request_key key = {.request = ctx->ax, .tgid = tgid};
    struct thread_ctx *handoff = bpf_map_lookup_elem(&go_handoffs, &key);
    if (handoff) {
        bpf_map_update_elem(&thread_ctxs, &writer, handoff, BPF_ANY);
        bpf_map_delete_elem(&go_handoffs, &key);
        return 0;
    }
    /* Written for a caller without context: what the writer holds is an earlier
     * caller's (its own server span, when a handler writes a Request itself, stays). */
    log_debug("Go: Request written without a hand-off", LOG_HEX("writer", writer));
    struct thread_ctx *tc = thread_ctx_of(writer);
    if (tc && tc->inherited)
        tc->sock_id = 0;
    return 0;
}
