/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Trace-context decisions, made in the kernel at the moment a request crosses a socket,
 * so that an outgoing request can carry the right IDs synchronously (propagation): the
 * role of a data event (server request, client request, response, other egress) and the
 * IDs it carries. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/log.h>
#include <maps/data_scratch.h>
#include <maps/inject.h>
#include <maps/split_starts.h>
#include <maps/tcp_opt_ctxs.h>
#include <maps/thread_ctxs.h>
#include <protocols/http1.h>
#include <trace_ctx/ctx_parse.h>
#include <trace_ctx/exec_key.h>
#include <trace_ctx/ids.h>
#include <trace_ctx/thread_ctx.h>

/* The request carries a valid trace context header: the span joins that trace, as a
 * child of the header's span. */
static __always_inline bool follow_header(struct sonde_data_event *ev,
                                          const struct sonde_parsed_ctx *in) {
    if (in->format == SONDE_FMT_NONE)
        return false;
    __builtin_memcpy(ev->ctx.trace_id, in->trace_id, sizeof(ev->ctx.trace_id));
    __builtin_memcpy(ev->ctx.parent_span_id, in->span_id, sizeof(ev->ctx.parent_span_id));
    ev->parent_source = SONDE_PARENT_HEADER;
    ev->ctx_format = in->format;
    ev->trace_flags = in->flags;
    return true;
}

/* The context a peer's agent sent in a TCP option with this request (inject.bpf.c), taken
 * out whether or not it is used: it belongs to this request only. */
static __always_inline bool take_tcp_option(__u64 sk, __u64 now_ns, struct tcp_opt_ctx *out) {
    if (!tcp_opt_seen)
        return false;
    struct tcp_opt_ctx *opt = bpf_map_lookup_elem(&tcp_opt_ctxs, &sk);
    if (!opt)
        return false;
    *out = *opt;
    bpf_map_delete_elem(&tcp_opt_ctxs, &sk);
    /* Left by a connection whose reader is not traced, before this socket was reused. */
    if (now_ns - out->ts_ns < 5000000000ULL)
        return true;
    log_debug("TCP option context older than 5 s: ignored", LOG_HEX("sock", sk),
              LOG_NUM("age_ns", now_ns - out->ts_ns));
    return false;
}

/* No header: the span joins the trace the TCP option names, as a child of its span. */
static __always_inline void follow_tcp_option(struct sonde_data_event *ev,
                                              const struct tcp_opt_ctx *opt) {
    __builtin_memcpy(ev->ctx.trace_id, opt->trace_id, sizeof(ev->ctx.trace_id));
    __builtin_memcpy(ev->ctx.parent_span_id, opt->span_id, sizeof(ev->ctx.parent_span_id));
    ev->parent_source = SONDE_PARENT_TCP_OPTION;
}

static __always_inline void new_trace(struct sonde_data_event *ev) {
    random_bytes(ev->ctx.trace_id, 2);
    ev->ctx.trace_id[0] |= 1;
    __builtin_memset(ev->ctx.parent_span_id, 0, sizeof(ev->ctx.parent_span_id));
    ev->parent_source = SONDE_PARENT_NONE;
}

/* The source a server span's own execution context gives its children: exact for a
 * goroutine, the thread otherwise, and a guess for a thread seen serving two requests at
 * once. slot is key's entry, if it has one (its previous request's). */
static __always_inline __u8 own_ctx_source(__u64 key, const struct thread_ctx *slot, __u64 sock_id,
                                           __u8 *multiplexed) {
    if (is_goroutine_key(key))
        return SONDE_PARENT_GOROUTINE;
    *multiplexed = slot && (slot->multiplexed ||
                            (slot->sock_id && slot->sock_id != sock_id && !slot->inherited));
    return *multiplexed ? SONDE_PARENT_THREAD_LAST_READ : SONDE_PARENT_THREAD;
}

/* A request arrived on sock_id: start a server span, in the trace its header names if
 * any, and make it the context of the thread or goroutine (key) that read it. */
static __always_inline void on_server_request(struct sonde_data_event *ev,
                                              const struct sonde_parsed_ctx *in, __u64 key) {
    ev->ctx_role = SONDE_CTX_SERVER_REQUEST;
    new_span_id(ev->ctx.span_id);
    struct tcp_opt_ctx opt;
    bool has_opt = take_tcp_option(ev->sock_id, ev->ts_ns, &opt);
    if (!follow_header(ev, in)) {
        if (has_opt)
            follow_tcp_option(ev, &opt);
        else
            new_trace(ev);
    }

    /* In place when the context has an entry (its previous request's, usually cleared). */
    struct thread_ctx *slot = bpf_map_lookup_elem(&thread_ctxs, &key);
    struct thread_ctx tc = {};
    tc.ctx = ev->ctx;
    tc.sock_id = ev->sock_id;
    tc.owner = key;
    tc.source = own_ctx_source(key, slot, ev->sock_id, &tc.multiplexed);
    tc.trace_flags = ev->trace_flags;
    if (tc.multiplexed && !(slot && slot->multiplexed))
        count_drop(SONDE_DROP_MULTIPLEXED_THREAD);
    if (slot)
        *slot = tc;
    else
        bpf_map_update_elem(&thread_ctxs, &key, &tc, BPF_ANY);
}

/* The sk_msg program's note for this request: its outcome, and when it decided the client
 * span (inserted it, or kept it for the TCP option), that span; or, for TLS plaintext, the
 * span decided at the write call's entry (tls/request_ctx.h). True when decided: the
 * request then needs no header parsing (no context header of the application's own). */
static __always_inline bool client_from_note(struct sonde_data_event *ev, __u32 tid) {
    struct inject_note *note = bpf_map_lookup_elem(&inject_notes, &tid);
    if (!note)
        return false;
    bool mine = note->sk == ev->sock_id;
    bool decided = mine && note->kind == NOTE_CLIENT;
    if (mine)
        ev->inject_status = note->status;
    if (decided) {
        ev->ctx_role = SONDE_CTX_CLIENT_REQUEST;
        ev->ctx = note->ctx;
        ev->parent_source = note->source;
        ev->trace_flags = note->trace_flags;
    }
    bpf_map_delete_elem(&inject_notes, &tid);
    return decided;
}

/* A request left on sock_id (sk_msg did not decide it): a client span. If the application
 * sent its own context header (an instrumented or forwarding app), that header names its
 * parent; else the sender's server span does. */
static __always_inline void on_client_request(struct sonde_data_event *ev,
                                              const struct sonde_parsed_ctx *in, __u64 key) {
    ev->ctx_role = SONDE_CTX_CLIENT_REQUEST;
    new_span_id(ev->ctx.span_id);
    if (follow_header(ev, in))
        return;
    struct thread_ctx c = {};
    client_ctx_for(&c, key, ev->sock_id);
    ev->ctx = c.ctx;
    ev->parent_source = c.source;
    ev->trace_flags = c.trace_flags;
}

/* The thread or goroutine started answering on the socket its request came from: it is
 * done with that request, so later calls it makes must not become that request's
 * children. Interim 1xx responses (100 Continue, 103 Early Hints) come before the
 * handler's work. */
static __always_inline void on_server_response(struct sonde_data_event *ev, __u64 key) {
    /* "HTTP/1.x NNN": looks_like_http_response() guaranteed at least 12 bytes. */
    if (ev->data[9] == '1')
        return;
    struct thread_ctx *tc = thread_ctx_of(key);
    if (tc && tc->sock_id == ev->sock_id)
        tc->sock_id = 0;
}

/* Other bytes sent while the sender serves a request (a database or cache call): name that
 * request as their parent, so userspace can parent the call's span without parsing the
 * protocol here. Bytes on the server socket itself belong to the request, not a call. */
static __always_inline void on_other_egress(struct sonde_data_event *ev, __u64 key) {
    struct thread_ctx *tc = live_ctx_of(key);
    if (!tc || tc->sock_id == ev->sock_id)
        return;
    ev->ctx_role = SONDE_CTX_IN_SPAN;
    ev->parent_source = tc->source;
    ev->trace_flags = tc->trace_flags;
    __builtin_memcpy(ev->ctx.trace_id, tc->ctx.trace_id, sizeof(ev->ctx.trace_id));
    __builtin_memset(ev->ctx.span_id, 0, sizeof(ev->ctx.span_id));
    __builtin_memcpy(ev->ctx.parent_span_id, tc->ctx.span_id, sizeof(ev->ctx.parent_span_id));
}

/* Whether an ingress read that does not start with a request line continues one whose
 * first byte was read alone on the same socket (maps/split_starts.h); a lone byte that
 * may start a method is kept for the next read. */
static __always_inline bool continues_split_request(const struct sonde_data_event *ev, __u32 n) {
    __u64 sk = ev->sock_id;
    if (n == 1) {
        __u8 first = ev->data[0];
        if (first == 'G' || first == 'P' || first == 'H' || first == 'D' || first == 'O' ||
            first == 'C' || first == 'T') {
            bpf_map_update_elem(&split_starts, &sk, &first, BPF_ANY);
            __sync_fetch_and_add(&split_starts_pending, 1);
        }
        return false;
    }
    if (!split_starts_pending)
        return false;
    __u8 *first = bpf_map_lookup_elem(&split_starts, &sk);
    if (!first)
        return false;
    __u8 joined[16] = {*first};
    bpf_map_delete_elem(&split_starts, &sk);
    __sync_fetch_and_add(&split_starts_pending, -1);
    __u32 have = n < sizeof(joined) - 1 ? n : sizeof(joined) - 1;
#pragma unroll
    for (int i = 0; i < (int)sizeof(joined) - 1; i++)
        if (i < have)
            joined[i + 1] = ev->data[i];
    return looks_like_http_request(joined, have + 1);
}

/* The decision for the data event in s, made by the current task (pid_tgid). */
static __always_inline void decide_trace_ctx(struct scratch *s, __u64 pid_tgid) {
    struct sonde_data_event *ev = &s->ev;
    __u32 n = ev->captured_len;
    __u32 tid = (__u32)pid_tgid;
    bool request = looks_like_http_request(ev->data, n);
    if (!request && ev->direction == SONDE_DIR_INGRESS)
        request = continues_split_request(ev, n);
    if (request) {
        bool ingress = ev->direction == SONDE_DIR_INGRESS;
        if (!ingress && client_from_note(ev, tid))
            return;
        /* Parsed once here, not in each branch: the parser is most of the verifier's
         * work for these programs. */
        struct sonde_parsed_ctx in = {};
        /* data[] is followed by the spare half of struct scratch: room for ctx_bytes. */
        sonde_parse_ctx((const struct ctx_bytes *)ev->data, n, &s->ctx_scan, &in);
        __u64 key = current_exec_key(pid_tgid);
        if (ingress)
            on_server_request(ev, &in, key);
        else
            on_client_request(ev, &in, key);
    } else if (ev->direction == SONDE_DIR_EGRESS) {
        __u64 key = current_exec_key(pid_tgid);
        if (looks_like_http_response(ev->data, n))
            on_server_response(ev, key);
        else
            on_other_egress(ev, key);
    }
}
