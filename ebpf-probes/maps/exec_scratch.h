/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where exec snapshots are built (process.bpf.c): larger than the 512-byte stack.
 * Key: __u32 0. Value: struct sonde_exec_event. Per CPU: a program never shares it.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct sonde_exec_event);
} exec_scratch SEC(".maps");
