/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The header line the sk_msg program inserts: W3C Trace Context, version 00. */
#pragma once

#include "vmlinux.h"
#include "sonde_abi.h"

/* "traceparent: 00-" + 32 hex + "-" + 16 hex + "-" + 2 hex + "\r\n" */
#define INJECT_LINE_LEN 70

static __always_inline void put_hex(char *dst, const __u8 *src, int n) {
    const char digits[] = "0123456789abcdef";
    for (int i = 0; i < n && i < 16; i++) {
        dst[2 * i] = digits[src[i] >> 4];
        dst[2 * i + 1] = digits[src[i] & 0xf];
    }
}

/* The line for a client span: its trace ID, its own span ID (the callee's parent). */
static __always_inline void format_traceparent(char *line, const struct sonde_trace_ctx *ctx,
                                               __u8 flags) {
    __builtin_memcpy(line, "traceparent: 00-", 16);
    put_hex(line + 16, ctx->trace_id, 16);
    line[48] = '-';
    put_hex(line + 49, ctx->span_id, 8);
    line[65] = '-';
    put_hex(line + 66, &flags, 1);
    line[68] = '\r';
    line[69] = '\n';
}
