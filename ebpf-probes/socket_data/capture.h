/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Bounded copies of syscall payloads into the scratch event: a prefix of up to
 * capture_bytes, plus the last SONDE_TAIL_BYTES so userspace can see message ends
 * (a chunked terminator) that fall beyond the prefix. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <common/config.h>
#include <common/log.h>
#include <maps/data_scratch.h>
#include <maps/events.h>

static __always_inline __u32 capture_limit(void) {
    __u32 cap = capture_bytes;
    return cap > SONDE_MAX_CAPTURE ? SONDE_MAX_CAPTURE : cap;
}

/* One contiguous user buffer of len bytes (read/write/recvfrom/sendto). */
static __always_inline void capture_buf(struct scratch *s, const __u8 *buf, __u64 len) {
    struct sonde_data_event *ev = &s->ev;
    __u64 n = len < capture_limit() ? len : capture_limit();
    if (n > SONDE_MAX_CAPTURE)
        n = SONDE_MAX_CAPTURE;
    if (bpf_probe_read_user(ev->data, n, buf)) {
        count_drop(SONDE_DROP_READ_FAULT);
        log_debug("payload unreadable: buffer", LOG_NUM("tgid", ev->tgid),
                  LOG_NUM("syscall", ev->syscall), LOG_NUM("bytes", len));
        n = 0;
    }
    ev->captured_len = n;

    __u64 rest = len - n;
    if (rest == 0)
        return;
    __u64 tl = rest < SONDE_TAIL_BYTES ? rest : SONDE_TAIL_BYTES;
    if (tl > SONDE_TAIL_BYTES)
        tl = SONDE_TAIL_BYTES;
    if (bpf_probe_read_user(ev->tail, tl, buf + len - tl) == 0)
        ev->tail_len = tl;
}

/* The first len bytes spread over an iovec array (readv/writev/recvmsg/sendmsg).
 * Walks at most SONDE_MAX_IOV entries; the tail is taken from the last entry that
 * holds data, when the walk reached the end of the data. A global function: the verifier
 * checks its loop once, on its own, instead of once for every path of every hook that
 * reaches it (inlined, it was most of the 1M-instruction budget on some kernels). */
__attribute__((noinline)) int capture_iov(struct scratch *s, __u64 iov_addr, __u64 iovcnt,
                                          __u64 len) {
    /* A user address: global functions take pointers to kernel memory only. */
    const struct iovec *iov = (const struct iovec *)iov_addr;
    if (!s)
        return 0;
    struct sonde_data_event *ev = &s->ev;
    __u32 cap = capture_limit();
    __u64 consumed = 0;
    __u32 captured = 0;
    const __u8 *last_base = NULL;
    __u64 last_take = 0;

    for (int i = 0; i < SONDE_MAX_IOV; i++) {
        if (i >= iovcnt || consumed >= len)
            break;
        struct iovec v;
        if (bpf_probe_read_user(&v, sizeof(v), &iov[i])) {
            count_drop(SONDE_DROP_READ_FAULT);
            break;
        }
        __u64 take = v.iov_len < len - consumed ? v.iov_len : len - consumed;
        if (take == 0)
            continue;
        if (captured < cap) {
            __u64 n = take < cap - captured ? take : cap - captured;
            __u32 off = captured & (SONDE_MAX_CAPTURE - 1);
            if (n > SONDE_MAX_CAPTURE)
                n = SONDE_MAX_CAPTURE;
            /* off < MAX and n <= MAX: within data[] plus the spare half. */
            if (bpf_probe_read_user(&ev->data[off], n, v.iov_base) == 0)
                captured += n;
            else
                count_drop(SONDE_DROP_READ_FAULT);
        }
        consumed += take;
        last_base = v.iov_base;
        last_take = take;
    }
    ev->captured_len = captured > cap ? cap : captured;

    if (consumed != len || len <= captured || !last_base)
        return 0;
    __u64 tl = len - captured;
    if (tl > last_take)
        tl = last_take;
    if (tl > SONDE_TAIL_BYTES)
        tl = SONDE_TAIL_BYTES;
    if (bpf_probe_read_user(ev->tail, tl, last_base + last_take - tl) == 0)
        ev->tail_len = tl;
    return 0;
}
