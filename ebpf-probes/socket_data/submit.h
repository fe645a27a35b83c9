/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* A finished data event onto the ring buffer, waking userspace only when it is worth it. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/log.h>
#include <maps/data_scratch.h>
#include <maps/events.h>

static __always_inline void submit_data(struct scratch *s) {
    __u64 size = SONDE_DATA_HDR_SIZE + s->ev.captured_len;
    if (size > sizeof(s->ev))
        size = sizeof(s->ev);
    /* Past wakeup_bytes of unread data a record wakes userspace, at most once per
     * wakeup_gap_ns: each wakeup is an interrupt on the traced thread's CPU, and a busy
     * server would otherwise raise one per record while the agent drains. The threshold
     * is small on purpose: whatever it batches, the agent works through in one go on some
     * CPU, and a long burst stalls the application it displaces (docs/benchmarks.md).
     * Waking only when the threshold is crossed was measured: the agent then lags behind
     * a busy proxy, misses keep-alive re-enrolments and adds milliseconds to its p99. */
    __u64 flags = BPF_RB_NO_WAKEUP;
    if (s->ev.ts_ns - last_wakeup_ns >= wakeup_gap_ns &&
        bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes) {
        flags = BPF_RB_FORCE_WAKEUP;
        last_wakeup_ns = s->ev.ts_ns;
    }
    if (bpf_ringbuf_output(&events, &s->ev, size, flags)) {
        count_drop(SONDE_DROP_RINGBUF_FULL);
        log_debug("ring buffer full: data record dropped", LOG_NUM("tgid", s->ev.tgid),
                  LOG_NUM("bytes", s->ev.total_len));
    }
}
