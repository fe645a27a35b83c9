/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Eight bytes at a time ("SIMD within a register"), in straight-line arithmetic. Inside a
 * loop or a bpf_loop callback the verifier keeps apart every path whose values differ,
 * so a branch per byte multiplies its work (byte loops in the trace-context parser once
 * cost it more than its 1M-instruction limit); these helpers have no branch at all.
 * A word is 8 bytes loaded little-endian: the first byte is the lowest. Flags are 0x80
 * in a byte. Plain C: built for BPF and for the host (the parser's unit tests).
 */
#pragma once

#ifdef __bpf__
#include "vmlinux.h"
#else
#include <linux/types.h>
#endif

#define SWAR_01 0x0101010101010101ULL
#define SWAR_7F 0x7f7f7f7f7f7f7f7fULL
#define SWAR_80 0x8080808080808080ULL

/* A flag in every byte of w that is zero, exactly (no carry crosses bytes). */
static inline __attribute__((always_inline)) __u64 swar_zero(__u64 w) {
    return ~(((w & SWAR_7F) + SWAR_7F) | w | SWAR_7F);
}

/* A flag in every byte of w equal to c. */
static inline __attribute__((always_inline)) __u64 swar_eq(__u64 w, __u8 c) {
    return swar_zero(w ^ (c * SWAR_01));
}

/* A flag in every byte of w from lo to hi (both below 0x80; bytes with the high bit set
 * are never in range). Per byte, bit 7 of (x | 0x80) - lo says x >= lo and of
 * (hi | 0x80) - x says x <= hi; neither subtraction borrows across bytes. */
static inline __attribute__((always_inline)) __u64 swar_in(__u64 w, __u8 lo, __u8 hi) {
    __u64 x = w & SWAR_7F;
    __u64 ge = (x | SWAR_80) - lo * SWAR_01;
    __u64 le = (hi | 0x80) * SWAR_01 - x;
    return ge & le & ~w & SWAR_80;
}

/* How many bytes are flagged in m (0..8). */
static inline __attribute__((always_inline)) __u32 swar_count(__u64 m) {
    return ((m >> 7) * SWAR_01) >> 56;
}

/* Index of the first flagged byte of m, 8 when none is. */
static inline __attribute__((always_inline)) __u32 swar_first(__u64 m) {
    /* 0x01 in each byte below the lowest flag (in all eight when there is none). */
    return (((((m & -m) >> 7) - 1) & SWAR_01) * SWAR_01) >> 56;
}

/* How many bytes at the end of the word follow its last flagged byte (8 when none is). */
static inline __attribute__((always_inline)) __u32 swar_after_last(__u64 m) {
    /* Smear the highest flag down to byte 0, then count. */
    m |= m >> 8;
    m |= m >> 16;
    m |= m >> 32;
    return 8 - swar_count(m);
}
