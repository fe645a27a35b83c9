/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Context that arrived in a TCP header option (inject.bpf.c), by the receiving struct
 * sock, until the request it came with is read (trace_ctx/decide.h takes it out).
 * Key: __u64 struct sock address. Value: struct tcp_opt_ctx.
 * LRU: an option whose request is never read by a traced process is never taken out.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

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

/* Context to send in a TCP option on a socket's next data segment, by struct sock: a TLS
 * request's client span (tls/request_ctx.h), decided before its ciphertext leaves, from
 * whichever thread sends it (goroutines and event loops move the write elsewhere). Taken
 * by sock_ops (inject.bpf.c) when written; a newer request on the socket replaces it.
 * LRU: a socket that closes first never takes its entry out. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct tcp_opt_ctx);
} tcp_opt_out SEC(".maps");

/* Set once the first option arrives: until then (most hosts: no peer agent sends one)
 * requests skip the tcp_opt_ctxs lookup. */
bool tcp_opt_seen = false;
