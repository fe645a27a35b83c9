/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Traced processes that run Go: where their threads keep the running goroutine.
 * Key: __u32 TGID. Value: struct go_runtime_offsets (sonde_abi.h).
 * Written by the agent when it finds a traced process's executable is Go; removed here
 * when the process execs or exits (process.bpf.c), so a reused PID never inherits it.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct go_runtime_offsets);
} go_procs SEC(".maps");
