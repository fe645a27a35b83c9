/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One handler for socket data, whichever hook saw it: a syscall's exit (syscalls.bpf.c)
 * or the socket layer inside the syscall (socket_layer.bpf.c). Either way the bytes are
 * read from the syscall's own arguments, in the registers saved at syscall entry, and
 * the event is the same.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/log.h>
#include <common/syscall_regs.h>
#include <common/tcp_sock.h>
#include <common/traced.h>
#include <maps/data_scratch.h>
#include <maps/events.h>
#include <protocols/http1.h>
#include <socket_data/capture.h>
#include <socket_data/sock_lookup.h>
#include <socket_data/submit.h>
#include <socket_data/syscalls.h>
#include <tls/socket_side.h>
#include <trace_ctx/decide.h>

/* The fixed part of a data event about si: who, when, which connection, how much. */
static __always_inline struct sonde_data_event *start_data_event(struct scratch *s,
                                                                 const struct sonde_sock_info *si,
                                                                 __u8 dir, __u8 sys, __u64 pid_tgid,
                                                                 __u64 len) {
    struct sonde_data_event *ev = &s->ev;
    ev->kind = SONDE_EV_DATA;
    ev->direction = dir;
    ev->syscall = sys;
    ev->ctx_role = SONDE_CTX_NONE;
    ev->parent_source = SONDE_PARENT_NONE;
    ev->ctx_format = SONDE_FMT_NONE;
    ev->inject_status = SONDE_INJECT_NONE;
    ev->trace_flags = 1;
    ev->source = SONDE_SRC_SOCKET;
    ev->tls_version = 0;
    ev->tail_len = 0;
    ev->captured_len = 0;
    ev->tgid = pid_tgid >> 32;
    ev->tid = (__u32)pid_tgid;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->sock_id = si->sk;
    ev->total_len = len;
    ev->folded_bytes = si->folded_bytes;
    ev->folded_ts_ns = si->folded_ts_ns;
    ev->family = si->family;
    ev->local_port = si->local_port;
    ev->remote_port = si->remote_port;
    __builtin_memcpy(ev->local_addr, si->local_addr, sizeof(ev->local_addr));
    __builtin_memcpy(ev->remote_addr, si->remote_addr, sizeof(ev->remote_addr));
    return ev;
}

/*
 * ret bytes moved through a socket by the current task. sys is the syscall when the hook
 * knows it (SYS_FROM_REGS otherwise); sk is the socket when the hook was handed it (NULL:
 * found from the syscall's fd, and only TCP sockets pass).
 */
static __always_inline int on_socket_data(long ret, __u8 sys, __u8 dir, struct sock *sk) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    /* A copy as the key: tgid itself, address not taken, stays in a register. */
    __u32 *flags = traced(&(__u32){tgid});
    if (!flags || ret <= 0)
        return 0;
    __u32 traced_flags = *flags;

    struct pt_regs *regs = syscall_regs();
    if (sys == SYS_FROM_REGS) {
        sys = syscall_of_regs(regs, dir);
        if (!sys) {
            count_drop(SONDE_DROP_UNDECODED);
            log_debug("socket I/O by a syscall whose arguments do not describe the bytes: skipped",
                      LOG_NUM("nr", regs->orig_ax), LOG_NUM("tgid", tgid), LOG_NUM("bytes", ret),
                      LOG_STR("comm", bpf_get_current_task_btf()->comm, 16));
            return 0;
        }
    }
    /* MSG_PEEK leaves the bytes in the socket: the read that consumes them reports them. */
    if ((sys == SONDE_SYS_RECVFROM && (regs->r10 & MSG_PEEK)) ||
        (sys == SONDE_SYS_RECVMSG && (regs->dx & MSG_PEEK)))
        return 0;
    struct sonde_sock_info fresh;
    const struct sonde_sock_info *si;
    if (sk) {
        struct sonde_sock_info *known = known_sock(sk);
        /* No bytes to show (sendfile, splice) on a socket already reported: folded, not a
         * record. The socket's next record, its state changes or a userspace read of
         * known_socks (a connection that went quiet) report them. */
        if (known && shape_of(sys) == SHAPE_NONE) {
            __sync_fetch_and_add(&known->folded_bytes, ret);
            known->folded_ts_ns = bpf_ktime_get_ns();
            return 0;
        }
        si = known ? known : new_tcp_sock(sk, &fresh);
    } else {
        si = tcp_sock_of_fd(regs->di, &fresh);
    }
    if (!si)
        return 0;
    /* A TLS connection's own bytes are ciphertext: the library's probes report its
     * plaintext (tls/socket_side.h). */
    if (tls_enabled &&
        tls_ciphertext(si, (__u32)pid_tgid, sk != NULL, dir, traced_flags, regs, sys))
        return 0;

    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
    if (!s)
        return 0;
    struct sonde_data_event *ev = start_data_event(s, si, dir, sys, pid_tgid, ret);

    switch (shape_of(sys)) {
    case SHAPE_BUF:
        capture_buf(s, (const __u8 *)regs->si, ret);
        break;
    case SHAPE_IOV:
        capture_iov(s, regs->si, regs->dx, ret);
        break;
    case SHAPE_MSG: {
        struct user_msghdr msg;
        if (bpf_probe_read_user(&msg, sizeof(msg), (void *)regs->si) == 0) {
            capture_iov(s, (__u64)msg.msg_iov, msg.msg_iovlen, ret);
        } else {
            count_drop(SONDE_DROP_READ_FAULT);
            log_debug("payload unreadable: msghdr", LOG_NUM("tgid", tgid), LOG_NUM("syscall", sys),
                      LOG_NUM("bytes", ret));
        }
        break;
    }
    case SHAPE_NONE:
        break;
    }

    /* No bytes (sendfile, splice): nothing to decide a trace context from. */
    if (ev->captured_len)
        decide_trace_ctx(s, pid_tgid);
    /* splice names its socket third; re-enrolment only needs the fd of plain writes. */
    ev->fd = sys == SONDE_SYS_SPLICE ? -1 : (__s32)regs->di;
    /* Re-enrolment is for client sockets: a server's response head does not need it. */
    ev->sent_bytes = 0;
    if (inject_enabled && dir == SONDE_DIR_EGRESS &&
        !looks_like_http_response(ev->data, ev->captured_len))
        ev->sent_bytes = sk ? tcp_sent_bytes_of(sk) : tcp_sent_bytes(si->sk);
    submit_data(s);
    return 0;
}
