/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TLS libraries working on memory (memory BIOs: Node, Python's asyncio): the library's
 * calls touch no socket, the process's event loop moves the ciphertext between memory and
 * the socket around them. A session learns its connection from that I/O instead:
 *
 *  - a read call belongs to the socket the thread last read a TLS record from: the event
 *    loop hands what it read to the library at once (the read is consumed by the call);
 *  - a call that cannot be placed so (a handshake's first flight, a write) leaves its
 *    session pending on the thread: the next TLS record the thread writes carries that
 *    call's output, and names the session's connection.
 *
 * Only bytes that begin a TLS record count, so plaintext I/O on other sockets of the same
 * thread never names a session. The process is flagged the first time one of its calls
 * finds neither a socket nor a known session; until then none of this runs.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <maps/events.h>
#include <maps/sockets.h>
#include <maps/tls.h>
#include <maps/traced_pids.h>
#include <socket_data/syscalls.h>

/* The user address where the syscall's bytes start (the first iovec's for vectors), 0
 * when it cannot be read. */
static __always_inline __u64 first_bytes_addr(const struct pt_regs *regs, __u8 sys) {
    struct iovec v;
    switch (shape_of(sys)) {
    case SHAPE_BUF:
        return regs->si;
    case SHAPE_IOV:
        if (bpf_probe_read_user(&v, sizeof(v), (void *)regs->si))
            return 0;
        return (__u64)v.iov_base;
    case SHAPE_MSG: {
        struct user_msghdr msg;
        if (bpf_probe_read_user(&msg, sizeof(msg), (void *)regs->si) || !msg.msg_iovlen ||
            bpf_probe_read_user(&v, sizeof(v), msg.msg_iov))
            return 0;
        return (__u64)v.iov_base;
    }
    default:
        return 0;
    }
}

/* True when the bytes at addr begin a TLS record header: content type 20-23
 * (change_cipher_spec, alert, handshake, application_data), version 3.0-3.4. */
static __always_inline bool begins_tls_record(__u64 addr) {
    __u8 h[3];
    if (!addr || bpf_probe_read_user(h, sizeof(h), (void *)addr))
        return false;
    return h[0] >= 20 && h[0] <= 23 && h[1] == 3 && h[2] <= 4;
}

/* The socket hooks' part, for I/O outside any library call in a flagged process: a TLS
 * record read is noted for the thread's next call; one written names the thread's pending
 * session. True when the bytes are a session's ciphertext (counted). */
static __always_inline bool memory_bio_socket_io(const struct sonde_sock_info *si, __u32 tid,
                                                 __u8 dir, const struct pt_regs *regs, __u8 sys) {
    if (!begins_tls_record(first_bytes_addr(regs, sys)))
        return false;
    if (dir == SONDE_DIR_INGRESS) {
        bpf_map_update_elem(&tls_last_read, &tid, si, BPF_ANY);
        return false;
    }
    struct tls_session_key *pending = bpf_map_lookup_elem(&tls_pending_write, &tid);
    if (!pending)
        return false;
    struct tls_session_key key = *pending;
    bpf_map_delete_elem(&tls_pending_write, &tid);
    bpf_map_update_elem(&tls_sessions, &key, si, BPF_ANY);
    struct sonde_sock_info *known = bpf_map_lookup_elem(&known_socks, &si->sk);
    if (known)
        known->tls = 1;
    count_drop(SONDE_DROP_TLS_CIPHERTEXT);
    return true;
}

/* The return probe's part, for a call that touched no socket: its session's connection,
 * NULL when not known (yet). *flags is the process's traced_pids value. */
static __always_inline const struct sonde_sock_info *
memory_bio_connection(const struct tls_call *call, const struct tls_session_key *key, __u32 tid,
                      __u32 *flags) {
    bool flagged = *flags & TRACED_TLS_MEMORY_BIO;
    if (flagged && call->dir == SONDE_DIR_INGRESS) {
        /* The freshest evidence wins over what the session was placed on before. */
        const struct sonde_sock_info *last = bpf_map_lookup_elem(&tls_last_read, &tid);
        if (last) {
            bpf_map_update_elem(&tls_sessions, key, last, BPF_ANY);
            struct sonde_sock_info *known = bpf_map_lookup_elem(&known_socks, &last->sk);
            if (known)
                known->tls = 1;
            bpf_map_delete_elem(&tls_last_read, &tid);
        }
    }
    const struct sonde_sock_info *si = bpf_map_lookup_elem(&tls_sessions, key);
    if (si)
        return si;
    /* A plain store: a racing writer sets the same bit (32-bit atomics need BPF v3). */
    if (!flagged)
        *flags |= TRACED_TLS_MEMORY_BIO;
    bpf_map_update_elem(&tls_pending_write, &tid, key, BPF_ANY);
    return NULL;
}
