/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP state changes of sockets already seen carrying data: how userspace learns that a
 * connection closed (by either side) or was reset, without hooking close() or accept().
 * Each change carries the socket's folded egress (sonde_abi.h), so a response sent by
 * sendfile just before the close is complete when userspace sees the close.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/tcp_sock.h>
#include <maps/events.h>
#include <maps/sockets.h>

#define TCP_CLOSE 7

SEC("tracepoint/sock/inet_sock_set_state")
int sonde_tp_sock_state(struct trace_event_raw_inet_sock_set_state *ctx) {
    if (empty_probes)
        return 0;
    if (ctx->protocol != IPPROTO_TCP)
        return 0;
    __u64 sock_id = (__u64)ctx->skaddr;
    const struct sonde_sock_info *si = bpf_map_lookup_elem(&known_socks, &sock_id);
    if (!si)
        return 0;

    struct sonde_sock_state_event ev = {};
    ev.kind = SONDE_EV_SOCK_STATE;
    ev.old_state = ctx->oldstate;
    ev.new_state = ctx->newstate;
    ev.ts_ns = bpf_ktime_get_ns();
    ev.sock_id = sock_id;
    ev.folded_bytes = si->folded_bytes;
    ev.folded_ts_ns = si->folded_ts_ns;
    if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0))
        count_drop(SONDE_DROP_RINGBUF_FULL);
    if (ctx->newstate == TCP_CLOSE)
        bpf_map_delete_elem(&known_socks, &sock_id);
    return 0;
}
