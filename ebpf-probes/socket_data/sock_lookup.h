/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The TCP socket an event is about, through the probes' socket caches (maps/sockets.h). */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/log.h>
#include <common/tcp_sock.h>
#include <maps/sockets.h>

/*
 * The TCP socket behind fd, from the cache when this socket was seen before, or NULL.
 * A socket seen for the first time is also registered in known_socks, so its state
 * changes (close, reset) reach userspace.
 */
static __always_inline const struct sonde_sock_info *
tcp_sock_of_fd(__u32 fd, struct sonde_sock_info *scratch) {
    struct file *file = NULL;
    __u64 ino = socket_ino_of_fd(fd, &file);
    if (!ino)
        return NULL;

    const struct sonde_sock_info *cached = bpf_map_lookup_elem(&sock_cache, &ino);
    if (cached)
        return cached->sk ? cached : NULL;

    __builtin_memset(scratch, 0, sizeof(*scratch));
    describe_socket(file, scratch);
    bpf_map_update_elem(&sock_cache, &ino, scratch, BPF_ANY);
    if (!scratch->sk)
        return NULL;
    bpf_map_update_elem(&known_socks, &scratch->sk, scratch, BPF_ANY);
    return scratch;
}

/* The known_socks entry of sk: seen before, and not closed since (sockstate.bpf.c removes
 * it). Writable: folded egress is counted in place. */
static __always_inline struct sonde_sock_info *known_sock(struct sock *sk) {
    __u64 key = (__u64)sk;
    return bpf_map_lookup_elem(&known_socks, &key);
}

/* The TCP socket sk, when a socket-layer hook was handed it and known_sock() did not know
 * it: described and added, or NULL when it is not one. */
static __always_inline const struct sonde_sock_info *new_tcp_sock(struct sock *sk,
                                                                  struct sonde_sock_info *scratch) {
    __u64 key = (__u64)sk;

    /* A kernel socket (NFS, SMB, iSCSI...) used on behalf of the task's syscall has no
     * file: those bytes are not the syscall's buffer. */
    if (!BPF_CORE_READ(sk, sk_socket, file)) {
        log_trace("socket without a file (a kernel socket used for the task): skipped",
                  LOG_NUM("local_port", BPF_CORE_READ(sk, __sk_common.skc_num)),
                  LOG_NUM("remote_port", bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport))));
        return NULL;
    }
    __builtin_memset(scratch, 0, sizeof(*scratch));
    describe_sock(sk, scratch);
    if (!scratch->sk)
        return NULL;
    bpf_map_update_elem(&known_socks, &key, scratch, BPF_ANY);
    return scratch;
}
