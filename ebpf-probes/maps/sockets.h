/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the probes know about sockets, so an event does not walk kernel structures again
 * (socket_data/sock_lookup.h fills both, sockstate.bpf.c ends known_socks entries).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

/* What a socket is, by its sockfs inode number (unique per socket, so an entry can never
 * describe a newer socket that reuses the same kernel memory). Saves walking file ->
 * socket -> sock and reading the 4-tuple on every event of the syscall tracepoints.
 * Key: __u64 inode number. Value: struct sonde_sock_info; sk == 0: not a TCP socket.
 * LRU: nothing tells the probes when a non-TCP socket closes, so entries are never deleted. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct sonde_sock_info);
} sock_cache SEC(".maps");

/* TCP sockets data events have reported, by kernel address, until they close: state
 * changes are forwarded only for these, socket-layer hooks find their ports and fold
 * payload-less egress here, and userspace reads the folded total of quiet connections.
 * Key: __u64 struct sock address. Value: struct sonde_sock_info (folded_* updated in place).
 * LRU: a full map drops the socket unused longest rather than refusing new ones, and an
 * entry re-added after its TCP_CLOSE (a hook racing the close on another CPU) cannot leak. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct sonde_sock_info);
} known_socks SEC(".maps");
