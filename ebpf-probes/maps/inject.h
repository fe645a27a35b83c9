/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Outgoing context injection (inject.bpf.c): which client sockets the sk_msg program runs
 * on, how far each got, what it decided for the request a thread is sending, and the
 * outcome counters.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

/* Client sockets of traced processes the sk_msg program runs on, by socket cookie. A
 * socket is in here only between (re)enrolment and its next request (inject.bpf.c).
 * Key: __u64 socket cookie. Value: a socket fd on update from userspace. A SOCKHASH is
 * what sk_msg programs attach to; its entries go when the socket closes. */
struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __u32);
} inject_socks SEC(".maps");

/* Sockets connect()ed by traced processes, marked until the handshake completes, then
 * MARK_ARMED while enrolled (inject.bpf.c). Value: __u8 mark. Socket-local storage: freed
 * with the socket, nothing to evict. */
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, __u8);
} inject_marks SEC(".maps");

/* Client sockets opened before the agent attached that userspace wants armed: the tcp
 * iterator in inject.bpf.c switches their transmit callback on and deletes the entry.
 * Key: __u64 socket cookie. Value: __u8 (unused). A plain HASH: userspace bounds it and
 * every entry is consumed by the next iterator run. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u64);
    __type(value, __u8);
} arm_requests SEC(".maps");

/* What the sk_msg program decided for the request a thread is sending, picked up by the
 * same syscall's exit probe so the reported client span has the injected IDs. */
enum inject_note_kind {
    NOTE_NO_CTX = 0, /* status only */
    NOTE_CLIENT = 1, /* ctx is the request's client span (the exit probe reports it) */
    NOTE_CALLER = 2, /* not HTTP: ctx.trace_id/span_id name the server span sending it */
};

struct inject_note {
    struct sonde_trace_ctx ctx;
    __u64 sk;
    __u8 status; /* enum sonde_inject_status */
    __u8 source; /* enum sonde_parent_source of ctx.parent_span_id */
    __u8 trace_flags;
    __u8 kind;     /* enum inject_note_kind */
    __u8 opt_sent; /* the TCP option already carried it */
    __u8 _pad[3];
};

/* Key: __u32 TID of the sending thread. Value: struct inject_note. LRU: a note whose exit
 * probe never runs (a socket-data hook family without the send, a dying thread) cannot
 * leak. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct inject_note);
} inject_notes SEC(".maps");

/* A copy of an outgoing request's head, examined by the sk_msg program (plain memory with
 * masked indexes keeps the verifier's work small). Key: __u32 0. Per CPU. */
struct inject_scratch {
    __u8 head[4096];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct inject_scratch);
} inject_scratch_map SEC(".maps");

/* Injection outcomes. Key: __u32 enum sonde_inject_counter. Value: __u64 count, per CPU. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, SONDE_INJ_MAX);
    __type(key, __u32);
    __type(value, __u64);
} inject_counts SEC(".maps");

static __always_inline void count_inject(__u32 what) {
    __u64 *n = bpf_map_lookup_elem(&inject_counts, &what);
    if (n)
        (*n)++;
}
