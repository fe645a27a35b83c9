/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The server span an execution context (a thread, or in a Go program a goroutine:
 * trace_ctx/exec_key.h) is working on: set when a request arrives on a socket it reads,
 * inherited by forked threads and processes and by goroutines it starts or hands a request
 * to, cleared when it starts the response. Read it only through thread_ctx_of()
 * (trace_ctx/thread_ctx.h).
 * Key: __u64 execution key. Value: struct thread_ctx.
 * LRU: a thread or goroutine that ends without cleanup cannot leak.
 * Cleared means sock_id == 0, written in place: a context keeps its entry from one request
 * to the next (map updates and deletes cost more than the stores).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

struct thread_ctx {
    struct sonde_trace_ctx ctx;
    __u64 sock_id; /* the request's socket; 0: cleared */
    /* The execution key serving the request this context belongs to. An inherited entry
     * is valid only while that owner is still on the same span: a pool thread started
     * during one request must not parent calls made for later ones. */
    __u64 owner;
    __u8 source;      /* enum sonde_parent_source the entry gives its children */
    __u8 trace_flags; /* of the server span (bit 0: sampled), carried by outgoing calls */
    __u8 inherited;   /* a copy of the owner's entry (fork, goroutine start, hand-off) */
    /* This thread was seen with two requests open at once (an event loop): which one a
     * call belongs to is a guess from then on. Sticky: kept across requests. */
    __u8 multiplexed;
    __u8 _pad[4];
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct thread_ctx);
} thread_ctxs SEC(".maps");
