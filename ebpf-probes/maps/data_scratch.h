/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a data event is built (socket_data/): larger than the 512-byte stack. The spare
 * half after data[] lets a bounded offset plus a bounded length pass the verifier, and
 * holds the trace-context parser's state (map memory keeps the verifier from re-checking
 * the parser's loop for each position).
 * Key: __u32 0. Value: struct scratch. Per CPU: a program never shares it.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <trace_ctx/ctx_parse.h>

struct scratch {
    struct sonde_data_event ev;
    __u8 spare[SONDE_MAX_CAPTURE];
    struct ctx_scan_state ctx_scan; /* trace-context parser state (see ctx_parse.h) */
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} scratch_map SEC(".maps");
