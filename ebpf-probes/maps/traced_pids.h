/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which processes are traced, by TGID (and the TID of each of their threads: the fork hook
 * cannot tell threads from processes). Userspace fills it on attach; the fork hook adds
 * children in the kernel, so a child's first syscall is already traced (no userspace race);
 * the exit hook removes threads and, with the last thread, the process.
 * Key: __u32 TGID or TID. Value: __u32 flags (userspace writes 1; children copy theirs):
 * bit 0 traced, TRACED_TLS_MEMORY_BIO below.
 * A plain HASH, not LRU: an entry evicted under pressure would silently stop tracing a
 * process, and every entry has an owner that removes it (exit hook, or the agent's exit,
 * which frees the map). Read it through traced() (common/traced.h).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, __u32);
} traced_pids SEC(".maps");

/* The process's TLS library moves ciphertext through memory, not through its socket (Node,
 * Python's asyncio: memory BIOs): its sessions learn their connections from the socket I/O
 * around the library's calls (tls/memory_bio.h). */
#define TRACED_TLS_MEMORY_BIO 2
