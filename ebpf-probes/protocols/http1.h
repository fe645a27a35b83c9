/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Where an HTTP/1 message starts: all the kernel needs to know of HTTP (userspace parses
 * it, protocols/http1.rs). */
#pragma once

#include "vmlinux.h"

static __always_inline bool has_prefix(const __u8 *d, __u32 len, const char *p, __u32 plen) {
    if (len < plen)
        return false;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if (i >= plen)
            break;
        if (d[i] != (__u8)p[i])
            return false;
    }
    return true;
}

/* Does the buffer start with an HTTP/1 request line ("GET /...")? */
static __always_inline bool looks_like_http_request(const __u8 *d, __u32 len) {
    if (len < 8)
        return false;
    switch (d[0]) {
    case 'G':
        return has_prefix(d, len, "GET ", 4);
    case 'P':
        return has_prefix(d, len, "POST ", 5) || has_prefix(d, len, "PUT ", 4) ||
               has_prefix(d, len, "PATCH ", 6);
    case 'H':
        return has_prefix(d, len, "HEAD ", 5);
    case 'D':
        return has_prefix(d, len, "DELETE ", 7);
    case 'O':
        return has_prefix(d, len, "OPTIONS ", 8);
    case 'C':
        return has_prefix(d, len, "CONNECT ", 8);
    case 'T':
        return has_prefix(d, len, "TRACE ", 6);
    }
    return false;
}

/* Does the buffer start with an HTTP/1 status line ("HTTP/1.1 200")? */
static __always_inline bool looks_like_http_response(const __u8 *d, __u32 len) {
    return len >= 12 && has_prefix(d, len, "HTTP/1.", 7);
}
