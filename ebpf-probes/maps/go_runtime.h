/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Go runtime probes (go_runtime.bpf.c): goroutine starts in flight, and requests handed
 * from the goroutine that asked for them to the one that writes them.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <maps/thread_ctxs.h>

/* runtime.newproc1 in flight on a thread (it runs on the thread's system stack, never
 * preempted, so entry and return meet on one thread): the starting goroutine's key.
 * Key: __u32 TID. Only starts by a goroutine with a live context are kept. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u64);
} go_spawns SEC(".maps");

/* A *net/http.Request of a process, between the caller's RoundTrip and the connection's
 * writer goroutine writing it. */
struct go_request_key {
    __u64 request;
    __u32 tgid;
    __u32 _pad;
};

/* The caller's context at RoundTrip, for the writer. LRU: a request never written (the
 * dial failed) must not leak. A Request's memory is reused after it is collected, so the
 * entry is written or removed at every RoundTrip. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct go_request_key);
    __type(value, struct thread_ctx);
} go_handoffs SEC(".maps");
