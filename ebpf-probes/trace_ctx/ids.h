/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* New trace and span IDs: 8 random bytes per step of a per-CPU splitmix64 stream. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <maps/id_rng.h>

#define SPLITMIX_GAMMA 0x9e3779b97f4a7c15ULL

/* 64 random bits: a per-CPU splitmix64 stream seeded from the kernel's prandom. One step is
 * a few multiplies, where a helper call yields 32 bits; a request needs 24 bytes of IDs.
 * The state advances atomically, so a program nested on the same CPU (softirq) still
 * draws a different value. */
static __always_inline __u64 random_u64(void) {
    __u32 zero = 0;
    __u64 *state = bpf_map_lookup_elem(&id_rng, &zero);
    if (!state)
        return ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
    if (*state == 0)
        *state = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
    __u64 z = __sync_fetch_and_add(state, SPLITMIX_GAMMA) + SPLITMIX_GAMMA;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* words of 8 random bytes at dst (1: a span ID, 2: a trace ID). */
static __always_inline void random_bytes(__u8 *dst, int words) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (i >= words)
            break;
        __u64 r = random_u64();
        __builtin_memcpy(dst + 8 * i, &r, 8);
    }
}

static __always_inline void new_span_id(__u8 *span_id) {
    /* An all-zero span ID is invalid; a zero word pair is one chance in 2^64, but cheap to rule
     * out. */
    random_bytes(span_id, 1);
    span_id[0] |= 1;
}
