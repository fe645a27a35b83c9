/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket data at the syscall layer: one sys_exit tracepoint per data-carrying syscall.
 * Arguments come from the registers saved at syscall entry (syscall_regs()), so no
 * enter hook is needed: half the tracepoints of an enter/exit pair, half the cost.
 * Connection open/close is seen by sockstate.bpf.c, not by accept/connect/close hooks.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"
#include "common/capture.h"
#include "common/config.h"
#include "common/tcp_sock.h"
#include "common/trace_ctx.h"
#include "maps/maps.h"

#define MSG_PEEK 2

/* How a syscall lays out its payload arguments. */
enum payload_shape {
    SHAPE_BUF,  /* (fd, buf, len): read, write, recvfrom, sendto */
    SHAPE_IOV,  /* (fd, iov, iovcnt): readv, writev */
    SHAPE_MSG,  /* (fd, msghdr): recvmsg, sendmsg */
    SHAPE_NONE, /* (out_fd, in_fd, ...): sendfile, no bytes to capture */
};

static __always_inline bool is_traced(__u32 tgid) {
    return bpf_map_lookup_elem(&traced_pids, &tgid) != NULL;
}

static __always_inline void submit_data(struct scratch *s) {
    __u64 size = SONDE_DATA_HDR_SIZE + s->ev.captured_len;
    if (size > sizeof(s->ev))
        size = sizeof(s->ev);
    __u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
                      ? BPF_RB_FORCE_WAKEUP
                      : BPF_RB_NO_WAKEUP;
    if (bpf_ringbuf_output(&events, &s->ev, size, flags))
        count_drop(SONDE_DROP_RINGBUF_FULL);
}

static __always_inline int on_data_exit(long ret, __u8 sys, __u8 dir, enum payload_shape shape) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    if (!is_traced(tgid) || ret <= 0)
        return 0;

    struct pt_regs *regs = syscall_regs();
    /* MSG_PEEK leaves the bytes in the socket: the read that consumes them reports them. */
    if ((sys == SONDE_SYS_RECVFROM && (regs->r10 & MSG_PEEK)) ||
        (sys == SONDE_SYS_RECVMSG && (regs->dx & MSG_PEEK)))
        return 0;
    struct sock_info fresh;
    const struct sock_info *si = tcp_sock_of_fd(regs->di, &fresh);
    if (!si)
        return 0;

    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
    if (!s)
        return 0;
    struct sonde_data_event *ev = &s->ev;
    ev->kind = SONDE_EV_DATA;
    ev->direction = dir;
    ev->syscall = sys;
    ev->ctx_role = SONDE_CTX_NONE;
    ev->parent_source = SONDE_PARENT_NONE;
    ev->ctx_format = SONDE_FMT_NONE;
    ev->inject_status = SONDE_INJECT_NONE;
    ev->trace_flags = 1;
    ev->tail_len = 0;
    ev->captured_len = 0;
    ev->tgid = tgid;
    ev->tid = (__u32)pid_tgid;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->sock_id = si->sk;
    ev->total_len = ret;
    ev->family = si->family;
    ev->local_port = si->local_port;
    ev->remote_port = si->remote_port;
    __builtin_memcpy(ev->local_addr, si->local_addr, sizeof(ev->local_addr));
    __builtin_memcpy(ev->remote_addr, si->remote_addr, sizeof(ev->remote_addr));

    switch (shape) {
    case SHAPE_BUF:
        capture_buf(s, (const __u8 *)regs->si, ret);
        break;
    case SHAPE_IOV:
        capture_iov(s, (const struct iovec *)regs->si, regs->dx, ret);
        break;
    case SHAPE_MSG: {
        struct user_msghdr msg;
        if (bpf_probe_read_user(&msg, sizeof(msg), (void *)regs->si) == 0)
            capture_iov(s, msg.msg_iov, msg.msg_iovlen, ret);
        else
            count_drop(SONDE_DROP_READ_FAULT);
        break;
    }
    case SHAPE_NONE:
        break;
    }

    decide_trace_ctx(s, (__u32)pid_tgid);
    ev->fd = (__s32)regs->di;
    ev->sent_bytes = inject_enabled && dir == SONDE_DIR_EGRESS ? tcp_sent_bytes(si->sk) : 0;
    submit_data(s);
    return 0;
}

/* Thin entry points, two twins per syscall over one handler: the sys_exit tracepoint
 * (sonde_tp_exit_<syscall>, works everywhere) and fexit on the syscall's function
 * (sonde_fexit_<syscall>, needs BPF trampolines). attach/probes.rs attaches one of the
 * two: fexit where the kernel allows it, because syscall tracepoints switch every process
 * onto the slow syscall path while a trampoline costs only the calls it hooks. fexit sees
 * the same pt_regs (syscall_regs()) and return value, so the handler is shared. */
#define DATA_EXIT_HOOK(name, sys, dir, shape)                                                      \
    SEC("tracepoint/syscalls/sys_exit_" #name)                                                     \
    int sonde_tp_exit_##name(struct trace_event_raw_sys_exit *ctx) {                               \
        if (empty_probes)                                                                          \
            return 0;                                                                              \
        return on_data_exit(ctx->ret, sys, dir, shape);                                            \
    }                                                                                              \
    SEC("fexit/__x64_sys_" #name)                                                                  \
    int BPF_PROG(sonde_fexit_##name, const struct pt_regs *regs, long ret) {                       \
        if (empty_probes)                                                                          \
            return 0;                                                                              \
        return on_data_exit(ret, sys, dir, shape);                                                 \
    }

DATA_EXIT_HOOK(read, SONDE_SYS_READ, SONDE_DIR_INGRESS, SHAPE_BUF)
DATA_EXIT_HOOK(recvfrom, SONDE_SYS_RECVFROM, SONDE_DIR_INGRESS, SHAPE_BUF)
DATA_EXIT_HOOK(readv, SONDE_SYS_READV, SONDE_DIR_INGRESS, SHAPE_IOV)
DATA_EXIT_HOOK(recvmsg, SONDE_SYS_RECVMSG, SONDE_DIR_INGRESS, SHAPE_MSG)
DATA_EXIT_HOOK(write, SONDE_SYS_WRITE, SONDE_DIR_EGRESS, SHAPE_BUF)
DATA_EXIT_HOOK(sendto, SONDE_SYS_SENDTO, SONDE_DIR_EGRESS, SHAPE_BUF)
DATA_EXIT_HOOK(writev, SONDE_SYS_WRITEV, SONDE_DIR_EGRESS, SHAPE_IOV)
DATA_EXIT_HOOK(sendmsg, SONDE_SYS_SENDMSG, SONDE_DIR_EGRESS, SHAPE_MSG)
DATA_EXIT_HOOK(sendfile64, SONDE_SYS_SENDFILE, SONDE_DIR_EGRESS, SHAPE_NONE)
