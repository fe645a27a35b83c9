/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Who runs the code a hook sees, for trace context (maps/thread_ctxs.h): in a Go program
 * the running goroutine (one thread runs thousands of them, and a goroutine moves between
 * threads), else the thread.
 *
 * The goroutine is read from the thread: Go keeps the running g at a fixed place below
 * the thread pointer (FS base), in syscalls too, so a socket hook, a uprobe and the sk_msg
 * program all see the same one. g.goid names it: g structs are reused, goids never are.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <maps/go_procs.h>

/* Set in keys that name a goroutine; thread keys are TIDs (below 2^32). */
#define EXEC_KEY_GOROUTINE (1ULL << 63)
/* goids kept in a key: 2^40 goroutines started by one process is beyond any program. */
#define EXEC_KEY_GOID_MASK ((1ULL << 40) - 1)

static __always_inline __u64 goroutine_key(__u32 tgid, __u64 goid) {
    return EXEC_KEY_GOROUTINE | ((__u64)(tgid & 0x7fffff) << 40) | (goid & EXEC_KEY_GOID_MASK);
}

static __always_inline bool is_goroutine_key(__u64 key) {
    return key & EXEC_KEY_GOROUTINE;
}

/* g.goid of the goroutine g points to, or 0 (unreadable; g0 and signal stacks have 0). */
static __always_inline __u64 goid_of(const struct go_runtime_offsets *rt, __u64 g) {
    __u64 goid = 0;
    if (!g || bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + rt->g_goid)))
        return 0;
    return goid;
}

/* The key of the goroutine g of process tgid, or 0 when it has no goid. */
static __always_inline __u64 key_of_g(const struct go_runtime_offsets *rt, __u32 tgid, __u64 g) {
    __u64 goid = goid_of(rt, g);
    return goid ? goroutine_key(tgid, goid) : 0;
}

/* The running goroutine of the current thread of a Go process, or 0. */
static __always_inline __u64 current_goroutine_key(const struct go_runtime_offsets *rt,
                                                   __u32 tgid) {
    struct task_struct *task = bpf_get_current_task_btf();
    __u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
    __u64 g = 0;
    if (!fsbase || bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase + (__u64)rt->g_tls_offset)))
        return 0;
    return key_of_g(rt, tgid, g);
}

/* The execution context of the current task: its goroutine in a Go process the agent
 * registered, else (or when the runtime is not on a goroutine) its thread. */
static __always_inline __u64 current_exec_key(__u64 pid_tgid) {
    __u32 tgid = pid_tgid >> 32;
    const struct go_runtime_offsets *rt = bpf_map_lookup_elem(&go_procs, &tgid);
    if (rt) {
        __u64 key = current_goroutine_key(rt, tgid);
        if (key)
            return key;
    }
    return (__u32)pid_tgid;
}
