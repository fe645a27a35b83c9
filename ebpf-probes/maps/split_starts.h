/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A request's first byte, read alone on a server socket (trace_ctx/decide.h): Go's
 * net/http server reads the next request's first byte on another goroutine (its
 * background read, to notice a client going away), then the rest, so neither read
 * starts with a request line. Key: __u64 struct sock address. Value: __u8, the byte.
 * LRU: a byte never followed (the client went away) must not stay.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, __u8);
} split_starts SEC(".maps");

/* Entries kept, roughly (LRU evictions are not subtracted): while 0, reads need no
 * lookup. */
__u32 split_starts_pending SEC(".bss");
