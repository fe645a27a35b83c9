/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The server span a thread is working on: set when a request arrives on a socket the
 * thread reads, inherited by forked threads and processes, cleared when the thread
 * starts the response. Read it only through thread_ctx_of() (trace_ctx/thread_ctx.h).
 * Key: __u32 TID. Value: struct thread_ctx.
 * LRU: a thread that dies without exit cleanup cannot leak.
 * Cleared means sock_id == 0, written in place: a thread keeps its entry from one request
 * to the next (map updates and deletes cost more than the stores).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

struct thread_ctx {
    struct sonde_trace_ctx ctx;
    __u64 sock_id; /* the request's socket; 0: cleared */
    /* The thread serving the request this context belongs to. An inherited (fork) entry
     * is valid only while that thread is still on the same span: a pool thread started
     * during one request must not parent calls made for later ones. */
    __u32 owner_tid;
    __u8 source;      /* enum sonde_parent_source the entry gives its children */
    __u8 trace_flags; /* of the server span (bit 0: sampled), carried by outgoing calls */
    __u8 _pad[2];
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct thread_ctx);
} thread_ctxs SEC(".maps");
