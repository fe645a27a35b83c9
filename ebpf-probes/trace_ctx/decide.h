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
#include <maps/tcp_opt_ctxs.h>
#include <maps/thread_ctxs.h>
#include <protocols/http1.h>
#include <trace_ctx/ctx_parse.h>
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

/* A request arrived on sock_id: start a server span, in the trace its header names if
 * any, and make it this thread's context. */
static __always_inline void on_server_request(struct sonde_data_event *ev,
                                              const struct sonde_parsed_ctx *in, __u32 tid) {
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

    struct thread_ctx tc = {};
    tc.ctx = ev->ctx;
    tc.sock_id = ev->sock_id;
    tc.owner_tid = tid;
    tc.source = SONDE_PARENT_THREAD;
    tc.trace_flags = ev->trace_flags;
    /* In place when the thread has an entry (its previous request's, usually cleared). */
    struct thread_ctx *slot = bpf_map_lookup_elem(&thread_ctxs, &tid);
    if (slot)
        *slot = tc;
    else
        bpf_map_update_elem(&thread_ctxs, &tid, &tc, BPF_ANY);
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
 * parent; else the thread's server span does. */
static __always_inline void on_client_request(struct sonde_data_event *ev,
                                              const struct sonde_parsed_ctx *in, __u32 tid) {
    ev->ctx_role = SONDE_CTX_CLIENT_REQUEST;
    new_span_id(ev->ctx.span_id);
    if (follow_header(ev, in))
        return;
    struct thread_ctx c = {};
    client_ctx_for(&c, tid, ev->sock_id);
    ev->ctx = c.ctx;
    ev->parent_source = c.source;
    ev->trace_flags = c.trace_flags;
}

/* The thread started answering on the socket its request came from: it is done with
 * that request, so later calls it makes must not become that request's children.
 * Interim 1xx responses (100 Continue, 103 Early Hints) come before the handler's work. */
static __always_inline void on_server_response(struct sonde_data_event *ev, __u32 tid) {
    /* "HTTP/1.x NNN": looks_like_http_response() guaranteed at least 12 bytes. */
    if (ev->data[9] == '1')
        return;
    struct thread_ctx *tc = thread_ctx_of(tid);
    if (tc && tc->sock_id == ev->sock_id)
        tc->sock_id = 0;
}

/* Other bytes sent while the thread serves a request (a database or cache call): name that
 * request as their parent, so userspace can parent the call's span without parsing the
 * protocol here. Bytes on the server socket itself belong to the request, not a call. */
static __always_inline void on_other_egress(struct sonde_data_event *ev, __u32 tid) {
    struct thread_ctx *tc = thread_ctx_of(tid);
    if (!tc || tc->sock_id == ev->sock_id || !inherited_ctx_live(tc))
        return;
    ev->ctx_role = SONDE_CTX_IN_SPAN;
    ev->parent_source = tc->source;
    ev->trace_flags = tc->trace_flags;
    __builtin_memcpy(ev->ctx.trace_id, tc->ctx.trace_id, sizeof(ev->ctx.trace_id));
    __builtin_memset(ev->ctx.span_id, 0, sizeof(ev->ctx.span_id));
    __builtin_memcpy(ev->ctx.parent_span_id, tc->ctx.span_id, sizeof(ev->ctx.parent_span_id));
}

static __always_inline void decide_trace_ctx(struct scratch *s, __u32 tid) {
    struct sonde_data_event *ev = &s->ev;
    __u32 n = ev->captured_len;
    if (looks_like_http_request(ev->data, n)) {
        bool ingress = ev->direction == SONDE_DIR_INGRESS;
        if (!ingress && client_from_note(ev, tid))
            return;
        /* Parsed once here, not in each branch: the parser is most of the verifier's
         * work for these programs. */
        struct sonde_parsed_ctx in = {};
        /* data[] is followed by the spare half of struct scratch: room for ctx_bytes. */
        sonde_parse_ctx((const struct ctx_bytes *)ev->data, n, &s->ctx_scan, &in);
        if (ingress)
            on_server_request(ev, &in, tid);
        else
            on_client_request(ev, &in, tid);
    } else if (ev->direction == SONDE_DIR_EGRESS) {
        if (looks_like_http_response(ev->data, n))
            on_server_response(ev, tid);
        else
            on_other_egress(ev, tid);
    }
}
