/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Go's crypto/tls (tls_go.bpf.c): where each probed Go binary keeps a connection's file
 * descriptor, and the Read calls in flight.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

/* Values: struct go_tls_offsets (sonde_abi.h), written by the agent. */
/* Index: the attach cookie of the binary's probes (userspace numbers the binaries). */
#define GO_TLS_MAX_BINARIES 256
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, GO_TLS_MAX_BINARIES);
    __type(key, __u32);
    __type(value, struct go_tls_offsets);
} go_tls_binaries SEC(".maps");

/* A goroutine of a process: goroutines move between threads, so a Read's entry and its
 * return are paired by the goroutine (g, in R14 under Go's register ABI). */
struct go_g_key {
    __u64 g;
    __u32 tgid;
    __u32 _pad;
};

/* A (*Conn).Read in flight: what its return needs. */
struct go_tls_read {
    __u64 buf;
    __u64 conn; /* the *tls.Conn */
    struct sonde_sock_info sock;
};

/* LRU: a goroutine that never returns (the process died) must not leak its entry. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct go_g_key);
    __type(value, struct go_tls_read);
} go_tls_reads SEC(".maps");

/* Scratch for the records above (too big for the stack beside a data event's work). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct go_tls_read);
} go_tls_read_scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct sonde_sock_info);
} tls_sock_scratch SEC(".maps");
