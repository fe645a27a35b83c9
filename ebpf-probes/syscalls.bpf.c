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
#include <common/config.h>
#include <socket_data/handler.h>

/* One sys_exit tracepoint per syscall: works on every kernel, but switches every process
 * onto the slow syscall path (docs/benchmarks.md). attach/hooks.rs prefers the socket-layer
 * families of socket_layer.bpf.c where the kernel has one. */
#define DATA_EXIT_HOOK(name, sys, dir)                                                             \
    SEC("tracepoint/syscalls/sys_exit_" #name)                                                     \
    int sonde_tp_exit_##name(struct trace_event_raw_sys_exit *ctx) {                               \
        if (empty_probes)                                                                          \
            return 0;                                                                              \
        return on_socket_data(ctx->ret, sys, dir, NULL);                                           \
    }

DATA_EXIT_HOOK(read, SONDE_SYS_READ, SONDE_DIR_INGRESS)
DATA_EXIT_HOOK(recvfrom, SONDE_SYS_RECVFROM, SONDE_DIR_INGRESS)
DATA_EXIT_HOOK(readv, SONDE_SYS_READV, SONDE_DIR_INGRESS)
DATA_EXIT_HOOK(recvmsg, SONDE_SYS_RECVMSG, SONDE_DIR_INGRESS)
DATA_EXIT_HOOK(write, SONDE_SYS_WRITE, SONDE_DIR_EGRESS)
DATA_EXIT_HOOK(sendto, SONDE_SYS_SENDTO, SONDE_DIR_EGRESS)
DATA_EXIT_HOOK(writev, SONDE_SYS_WRITEV, SONDE_DIR_EGRESS)
DATA_EXIT_HOOK(sendmsg, SONDE_SYS_SENDMSG, SONDE_DIR_EGRESS)
DATA_EXIT_HOOK(sendfile64, SONDE_SYS_SENDFILE, SONDE_DIR_EGRESS)
