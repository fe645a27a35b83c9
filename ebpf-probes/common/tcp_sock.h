/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* From a file descriptor of the current task to its TCP socket, via CO-RE reads. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6

/* Syscall arguments as saved at syscall entry: still valid at sys_exit, which lets one
 * exit tracepoint per syscall do the work of an enter/exit pair. */
static __always_inline struct pt_regs *syscall_regs(void)
{
    return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

/* NULL unless fd is an IPv4/IPv6 TCP socket: files, pipes and unix sockets never match. */
static __always_inline struct sock *tcp_sock_of_fd(__u32 fd)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
        return NULL;

    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *file = NULL;
    if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
        return NULL;

    umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
    if ((mode & S_IFMT) != S_IFSOCK)
        return NULL;

    struct socket *sock = BPF_CORE_READ(file, private_data);
    struct sock *sk = BPF_CORE_READ(sock, sk);
    if (!sk)
        return NULL;

    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    if (family != AF_INET && family != AF_INET6)
        return NULL;
    if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return NULL;
    return sk;
}

/* Local and remote address and port, as the data event carries them. */
static __always_inline void read_tuple(struct sock *sk, struct sonde_data_event *ev)
{
    ev->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    ev->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
    ev->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    /* Sizes spelled out: BPF_CORE_READ_INTO would copy sizeof(*dst), one byte of the array. */
    if (ev->family == AF_INET) {
        bpf_core_read(ev->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
        bpf_core_read(ev->remote_addr, 4, &sk->__sk_common.skc_daddr);
    } else {
        bpf_core_read(ev->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
        bpf_core_read(ev->remote_addr, 16, &sk->__sk_common.skc_v6_daddr);
    }
}
