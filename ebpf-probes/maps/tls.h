/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TLS library calls in flight, and which connection each TLS session (SSL*) is on.
 *
 * A library call (SSL_read, SSL_write, the handshake) moves ciphertext through its
 * socket while it runs: the socket hooks, seeing a call in flight on their thread, learn
 * the call's connection from it and skip the ciphertext (tls/socket_side.h). When the call
 * returns, its plaintext is reported on that connection. A read the library answers from
 * what it buffered earlier touches no socket: the session's connection, learnt by an
 * earlier call, names it.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

/* What the call's entry probe saw, until its return probe. */
struct tls_call {
    __u64 ssl;      /* the library's session (SSL*) */
    __u64 buf;      /* the caller's plaintext buffer; 0 for the handshake */
    __u64 len_ptr;  /* SSL_read_ex / SSL_write_ex: where the library writes the byte count */
    __u64 entry_ns; /* when the call began: a write's bytes start leaving then */
    __u8 dir;       /* enum sonde_direction of the plaintext */
    __u8 seen_sock; /* the socket hooks saw the call's connection: sock is set */
    __u8 _pad[6];
    struct sonde_sock_info sock;
};

/*
 * Key: thread id. LRU: a call whose return probe never ran (the thread died inside it)
 * must not leak; a live thread is inside at most one call at a time.
 */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct tls_call);
} tls_calls SEC(".maps");

/* A TLS session of a process. */
struct tls_session_key {
    __u64 ssl;
    __u32 tgid;
    __u32 _pad;
};

/* Key: session. Value: its connection. LRU: sessions are freed without a probe telling. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct tls_session_key);
    __type(value, struct sonde_sock_info);
} tls_sessions SEC(".maps");

/* Scratch for a tls_call (too big for the stack beside a data event's work). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tls_call);
} tls_call_scratch SEC(".maps");

/*
 * Processes whose library works on memory (tls/memory_bio.h). Key: thread id. Value: the
 * socket the thread last read a TLS record from, until a read call takes it. LRU: threads
 * die without telling.
 */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct sonde_sock_info);
} tls_last_read SEC(".maps");

/* Key: thread id. Value: the session of the thread's last call that no socket was found
 * for: the next TLS record the thread writes is that call's output. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct tls_session_key);
} tls_pending_write SEC(".maps");
