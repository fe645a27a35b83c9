/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * State of the per-CPU generator trace and span IDs come from (trace_ctx/ids.h).
 * Key: __u32 0. Value: __u64 splitmix64 state, 0 until first seeded. Per CPU: no sharing,
 * no contention.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} id_rng SEC(".maps");
