/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket data at the socket layer: hooks that fire only when a socket sends or receives,
 * so file and pipe I/O never reach Sonde and no process is switched onto the slow syscall
 * path (what the sys_exit tracepoints of syscalls.bpf.c cost every process). Three
 * interchangeable families over one handler (socket_data/handler.h); attach/hooks.rs picks
 * the first one the kernel offers:
 *
 *   socket-tracepoints  tp_btf on sock_send_length / sock_recv_length (Linux 6.4+; needs
 *                       neither kprobes nor trampolines, so it also runs under lockdown)
 *   fexit               fexit on inet{,6}_sendmsg / inet{,6}_recvmsg (BPF trampolines)
 *   kprobes             kretprobes on the same functions
 *
 * The bytes are the syscall's: its arguments are in the registers saved at syscall entry,
 * and its number says how to read them. Before Linux 6.5 sendfile reached TCP through
 * sendpage, not sendmsg: there the fexit and kprobe families add a sendfile64 hook.
 * Handed the socket, the tracepoint and fexit programs fold sendfile and splice on a known
 * socket into its known_socks entry instead of reporting them (sonde_abi.h, sonde_sock_info).
 *
 * The tracepoint and fexit programs drop failed and empty calls (EAGAIN reads of
 * non-blocking servers) before any map lookup; the kretprobes leave that check to
 * on_socket_data, after the traced-process lookup (checked first there, the kretprobe recv
 * path fails 6.1's verifier).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <socket_data/handler.h>

SEC("tp_btf/sock_send_length")
int BPF_PROG(sonde_sock_send, struct sock *sk, int ret, int flags) {
    if (empty_probes || ret <= 0)
        return 0;
    return on_socket_data(ret, SYS_FROM_REGS, SONDE_DIR_EGRESS, sk);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sonde_sock_recv, struct sock *sk, int ret, int flags) {
    if (empty_probes || ret <= 0)
        return 0;
    return on_socket_data(ret, SYS_FROM_REGS, SONDE_DIR_INGRESS, sk);
}

#define INET_SEND_HOOKS(fn)                                                                        \
    SEC("fexit/" #fn)                                                                              \
    int BPF_PROG(sonde_fexit_##fn, struct socket *sock, struct msghdr *msg, size_t size,           \
                 int ret) {                                                                        \
        if (empty_probes || ret <= 0)                                                              \
            return 0;                                                                              \
        return on_socket_data(ret, SYS_FROM_REGS, SONDE_DIR_EGRESS, sock->sk);                     \
    }                                                                                              \
    SEC("kretprobe/" #fn)                                                                          \
    int BPF_KRETPROBE(sonde_kret_##fn, int ret) {                                                  \
        if (empty_probes)                                                                          \
            return 0;                                                                              \
        return on_socket_data(ret, SYS_FROM_REGS, SONDE_DIR_EGRESS, NULL);                         \
    }

#define INET_RECV_HOOKS(fn)                                                                        \
    SEC("fexit/" #fn)                                                                              \
    int BPF_PROG(sonde_fexit_##fn, struct socket *sock, struct msghdr *msg, size_t size,           \
                 int flags, int ret) {                                                             \
        if (empty_probes || ret <= 0)                                                              \
            return 0;                                                                              \
        return on_socket_data(ret, SYS_FROM_REGS, SONDE_DIR_INGRESS, sock->sk);                    \
    }                                                                                              \
    SEC("kretprobe/" #fn)                                                                          \
    int BPF_KRETPROBE(sonde_kret_##fn, int ret) {                                                  \
        if (empty_probes)                                                                          \
            return 0;                                                                              \
        return on_socket_data(ret, SYS_FROM_REGS, SONDE_DIR_INGRESS, NULL);                        \
    }

INET_SEND_HOOKS(inet_sendmsg)
INET_SEND_HOOKS(inet6_sendmsg)
INET_RECV_HOOKS(inet_recvmsg)
INET_RECV_HOOKS(inet6_recvmsg)

/* sendfile before Linux 6.5 (see above): the syscall's own function. */
SEC("fexit/__x64_sys_sendfile64")
int BPF_PROG(sonde_fexit_sendfile64, const struct pt_regs *regs, long ret) {
    if (empty_probes)
        return 0;
    return on_socket_data(ret, SONDE_SYS_SENDFILE, SONDE_DIR_EGRESS, NULL);
}

SEC("kretprobe/__x64_sys_sendfile64")
int BPF_KRETPROBE(sonde_kret_sendfile64, long ret) {
    if (empty_probes)
        return 0;
    return on_socket_data(ret, SONDE_SYS_SENDFILE, SONDE_DIR_EGRESS, NULL);
}
