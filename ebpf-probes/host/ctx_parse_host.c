/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Host entry point to the kernel's trace-context parser (trace_ctx/ctx_parse.h), built by
 * userspace-agent/build.rs into a static library that its unit tests call. */
#include <string.h>
#include <trace_ctx/ctx_parse.h>

/* Returns 1 and fills out when data[0, len) carries a valid context, 0 when not, -1 when
 * len exceeds what the kernel can capture. */
int sonde_ctx_parse_host(const __u8 *data, __u32 len, __u8 stale, struct sonde_parsed_ctx *out) {
    /* The kernel parses inside a buffer whose bytes after the captured ones are stale:
     * they are `stale` here, and tests parse with different values, so that a result
     * depending on a byte past len shows. */
    struct ctx_bytes buf;
    struct ctx_scan_state st;
    if (len > SONDE_MAX_CAPTURE)
        return -1;
    memset(&buf, stale, sizeof(buf));
    memcpy(buf.b, data, len);
    memset(out, 0, sizeof(*out));
    return sonde_parse_ctx(&buf, len, &st, out);
}
