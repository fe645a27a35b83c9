/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Probe diagnostics for aya-log (common/log.h writes them). The name and type are
 * aya-log's: its EbpfLogger takes the map called AYA_LOGS and reads it as a ring buffer
 * (aya-log 0.3.0, aya commit 302985c, aya-log/src/lib.rs MAP_NAME). No key/value: records
 * of any size. 128 KiB as aya-log-ebpf's own; the loader shrinks it to one page while
 * logging is off (attach/probe_log.rs).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 128 << 10);
} AYA_LOGS SEC(".maps");
