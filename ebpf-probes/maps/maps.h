/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map the probes share, with what it tracks and why its type was chosen. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include "common/ctx_parse.h"

/* TGIDs to trace. Userspace fills it on attach; the fork hook adds children in the
 * kernel so a child's first syscall is already traced (no userspace race). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, __u32);
} traced_pids SEC(".maps");

/* All events to userspace. Size is set at load time. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} events SEC(".maps");

/* A data event is larger than the 512-byte stack; build it here. The spare half after
 * data[] lets a bounded offset plus a bounded length pass the verifier. */
struct scratch {
    struct sonde_data_event ev;
    __u8 spare[SONDE_MAX_CAPTURE];
    struct ctx_scan_state ctx_scan; /* trace-context parser state (see ctx_parse.h) */
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} scratch_map SEC(".maps");

/* State of the per-CPU generator trace and span IDs come from (trace_ctx.h). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} id_rng SEC(".maps");

/* Exec snapshots are built here (too large for the stack). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct sonde_exec_event);
} exec_scratch SEC(".maps");

/* Counted instead of reported, by enum sonde_drop_reason. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, SONDE_DROP_MAX);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

/* The server span a thread is working on: set when a request arrives on a socket the
 * thread reads, inherited by forked threads and processes, cleared when the thread
 * starts the response. LRU: a thread that dies without exit cleanup cannot leak.
 * Cleared means sock_id == 0, written in place: a thread keeps its entry from one request
 * to the next (map updates and deletes cost more than the stores). Read it only through
 * thread_ctx_of() (trace_ctx.h). */
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

/* What a socket is, by its sockfs inode number (unique per socket, so an entry can never
 * describe a newer socket that reuses the same kernel memory). Saves walking file ->
 * socket -> sock and reading the 4-tuple on every event. sk == 0: not a TCP socket. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct sonde_sock_info);
} sock_cache SEC(".maps");

/* TCP sockets data events have reported, by kernel address, until they close: state
 * changes are forwarded only for these, socket-layer hooks find their ports and fold
 * payload-less egress here, and userspace reads the folded total of quiet connections. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct sonde_sock_info);
} known_socks SEC(".maps");

/* Client sockets of traced processes the sk_msg program runs on, by socket cookie. A
 * socket is in here only between (re)enrolment and its next request (inject.bpf.c). */
struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __u32); /* a socket fd on update from userspace */
} inject_socks SEC(".maps");

/* Sockets connect()ed by traced processes, marked until the handshake completes. */
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, __u8);
} inject_marks SEC(".maps");

/* What the sk_msg program decided for the request a thread is sending, picked up by the
 * same syscall's exit tracepoint so the reported client span has the injected IDs. */
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

/* Client sockets opened before the agent attached that userspace wants armed (by
 * socket cookie): the tcp iterator in inject.bpf.c switches their transmit callback on. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u64);
    __type(value, __u8);
} arm_requests SEC(".maps");

/* Context that arrived in a TCP header option (inject.bpf.c), by the receiving struct
 * sock, until the request it came with is read. */
struct tcp_opt_ctx {
    __u8 trace_id[16];
    __u8 span_id[8];
    __u64 ts_ns; /* when it arrived: an entry nobody read soon is stale */
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct tcp_opt_ctx);
} tcp_opt_ctxs SEC(".maps");

/* Set once the first option arrives: until then (most hosts: no peer agent sends one)
 * requests skip the tcp_opt_ctxs lookup. */
bool tcp_opt_seen = false;

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct inject_note);
} inject_notes SEC(".maps");

/* A copy of an outgoing request's head, examined by the sk_msg program. */
struct inject_scratch {
    __u8 head[4096];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct inject_scratch);
} inject_scratch_map SEC(".maps");

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

static __always_inline void count_drop(__u32 reason) {
    __u64 *n = bpf_map_lookup_elem(&drops, &reason);
    if (n)
        (*n)++;
}
