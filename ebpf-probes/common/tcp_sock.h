/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reading TCP sockets through CO-RE: from a file descriptor of the current task to its
 * socket, a socket's 4-tuple, the bytes it sent. No maps: the caches are socket_data's. */
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

/*
 * Pointers reached from bpf_get_current_task_btf() are BTF pointers: plain field loads
 * (CO-RE relocated through vmlinux.h's preserve_access_index) compile to single guarded
 * loads, far cheaper than a bpf_probe_read_kernel() helper call per field. Only the
 * variable-index fd[] slot needs the helper.
 */

/* i_mode and i_ino both sit in the first 72 bytes of struct inode: one read for both. */
#define INODE_HEAD_BYTES 72

/* The inode number of the socket behind fd, or 0 for anything that is not a socket
 * (files, pipes). */
static __always_inline __u64 socket_ino_of_fd(__u32 fd, struct file **filep) {
    struct task_struct *task = bpf_get_current_task_btf();
    struct fdtable *fdt = task->files->fdt;
    if (!fdt || fd >= fdt->max_fds)
        return 0;

    struct file *file = NULL;
    if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]) || !file)
        return 0;

    struct inode *inode = BPF_CORE_READ(file, f_inode);
    if (!inode)
        return 0;
    __u32 mode_off = bpf_core_field_offset(struct inode, i_mode);
    __u32 ino_off = bpf_core_field_offset(struct inode, i_ino);
    /* The offsets are CO-RE relocated constants: the verifier sees fixed indexes. */
    __u8 head[INODE_HEAD_BYTES] = {};
    if (mode_off + sizeof(umode_t) > INODE_HEAD_BYTES ||
        ino_off + sizeof(__u64) > INODE_HEAD_BYTES ||
        bpf_probe_read_kernel(head, sizeof(head), inode))
        return 0;
    umode_t mode;
    __u64 ino;
    __builtin_memcpy(&mode, &head[mode_off], sizeof(mode));
    __builtin_memcpy(&ino, &head[ino_off], sizeof(ino));
    if ((mode & S_IFMT) != S_IFSOCK)
        return 0;
    *filep = file;
    return ino;
}

/* Fills info from sk; info->sk stays 0 unless it is IPv4/IPv6 TCP with a local port. */
static __always_inline void describe_sock(struct sock *sk, struct sonde_sock_info *info) {
    if (!sk)
        return;
    __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
    if (family != AF_INET && family != AF_INET6)
        return;
    if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return;
    /* No local port: closed under the hook (a reset racing the send), its port given
     * back. Its connection is over and reported so; these bytes would start a new one. */
    __u16 local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
    if (!local_port)
        return;

    info->sk = (__u64)sk;
    info->family = family;
    info->local_port = local_port;
    info->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    /* Sizes spelled out: BPF_CORE_READ_INTO would copy sizeof(*dst), one byte of the array. */
    if (family == AF_INET) {
        bpf_core_read(info->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
        bpf_core_read(info->remote_addr, 4, &sk->__sk_common.skc_daddr);
    } else {
        bpf_core_read(info->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
        bpf_core_read(info->remote_addr, 16, &sk->__sk_common.skc_v6_daddr);
    }
}

/* Fills info from the socket behind file; info->sk stays 0 unless it is IPv4/IPv6 TCP. */
static __always_inline void describe_socket(struct file *file, struct sonde_sock_info *info) {
    struct socket *sock = BPF_CORE_READ(file, private_data);
    describe_sock(BPF_CORE_READ(sock, sk), info);
}

/* The same from a socket the hook was handed (a BTF pointer): plain loads, no helper call
 * per field. */
static __always_inline __u64 tcp_sent_bytes_of(struct sock *sk) {
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
    if (!tp)
        return 0;
    return tp->bytes_acked + (__u32)(tp->write_seq - tp->snd_una);
}

/* Bytes the process has written to the TCP socket at kernel address sk, counted the
 * way userspace can count them too (TCP_INFO bytes_acked + SIOCOUTQ). */
static __always_inline __u64 tcp_sent_bytes(__u64 sk) {
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    __u64 acked = BPF_CORE_READ(tp, bytes_acked);
    __u32 write_seq = BPF_CORE_READ(tp, write_seq);
    __u32 snd_una = BPF_CORE_READ(tp, snd_una);
    return acked + (__u32)(write_seq - snd_una);
}
