/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the socket hooks do for TLS: a socket a TLS library call moves bytes on carries
 * ciphertext. The call's connection is noted for its return probe (maps/tls.h), the
 * socket is marked as TLS, and its bytes are skipped, then and from then on: the
 * library's probes report the plaintext.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <maps/events.h>
#include <maps/sockets.h>
#include <maps/tls.h>
#include <maps/traced_pids.h>
#include <tls/memory_bio.h>

/*
 * True when si's bytes, moved by thread tid in direction dir, are TLS ciphertext
 * (counted): inside a library call on this thread, or on a socket such a call used
 * before. si_is_known: si is the socket's known_socks entry itself (socket-layer hooks),
 * so its mark can be read there; otherwise (fd-based hooks) the entry is looked up.
 * flags: the process's traced_pids value; for a process whose library works on memory,
 * the I/O is noted as tls/memory_bio.h says. regs, sys: the syscall moving the bytes.
 */
static __always_inline bool tls_ciphertext(const struct sonde_sock_info *si, __u32 tid,
                                           bool si_is_known, __u8 dir, __u32 flags,
                                           const struct pt_regs *regs, __u8 sys) {
    struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &tid);
    if (call) {
        if (!call->seen_sock) {
            call->sock = *si;
            call->seen_sock = 1;
        }
        struct sonde_sock_info *known = bpf_map_lookup_elem(&known_socks, &si->sk);
        if (known)
            known->tls = 1;
        count_drop(SONDE_DROP_TLS_CIPHERTEXT);
        return true;
    }
    if ((flags & TRACED_TLS_MEMORY_BIO) && memory_bio_socket_io(si, tid, dir, regs, sys))
        return true;
    bool marked;
    if (si_is_known) {
        marked = si->tls;
    } else {
        const struct sonde_sock_info *known = bpf_map_lookup_elem(&known_socks, &si->sk);
        marked = known && known->tls;
    }
    if (marked)
        count_drop(SONDE_DROP_TLS_CIPHERTEXT);
    return marked;
}
