/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The road to userspace: the one ring buffer every record takes (layouts in sonde_abi.h),
 * what could not take it (drops), and when a record last woke the agent.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

/* Every record, in order per CPU. A ring buffer rather than a perf buffer: one buffer shared
 * by all CPUs, records reserved in place. Its size is set at load time (--ring-buffer-mib). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} events SEC(".maps");

/* What was counted instead of reported. Key: __u32 enum sonde_drop_reason. Value: __u64
 * count, per CPU (no atomics on the hot path; userspace sums the CPUs). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, SONDE_DROP_MAX);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

/* When a record last woke userspace (socket_data/submit.h; shared by all CPUs, a lost race
 * costs one extra wakeup). */
__u64 last_wakeup_ns = 0;

static __always_inline void count_drop(__u32 reason) {
    __u64 *n = bpf_map_lookup_elem(&drops, &reason);
    if (n)
        (*n)++;
}
