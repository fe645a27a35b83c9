/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Outgoing context propagation without writing user memory: a sock_ops program enrols
 * the TCP client sockets of traced processes in a sockhash, and an sk_msg program on that
 * sockhash inserts a `traceparent` line into each HTTP/1 request they send.
 *
 * The FIONREAD hazard: while a socket sits in a sockhash without a verdict program, the
 * kernel answers FIONREAD/SIOCINQ from the (empty) psock queue, so an application that
 * sizes its reads with FIONREAD (nginx upstreams, Java's available()) sees 0 bytes and
 * stalls. So a socket is enrolled only while no response can be waiting: sock_ops removes
 * it from the sockhash as soon as a data segment is transmitted (before the peer can
 * answer), and the agent re-enrols it from userspace once the response has been read
 * completely and nothing new was written (attach/inject/reenrol.rs). Responses are never
 * queued on an enrolled socket, so FIONREAD stays right.
 *
 * Safety: the message is changed only when it provably starts an HTTP/1 request whose whole
 * header block is in this message and carries no trace context header yet; every other
 * message passes through untouched, and every refusal is counted.
 *
 * Where no header can go (oversized heads, TLS, database protocols), a TCP header option on
 * the request's first data segment carries the context to a peer that runs Sonde too.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/log.h>
#include <common/swar.h>
#include <common/traced.h>
#include <inject/traceparent.h>
#include <maps/inject.h>
#include <maps/tcp_opt_ctxs.h>
#include <protocols/http1.h>
#include <trace_ctx/exec_key.h>
#include <trace_ctx/thread_ctx.h>

#define SK_PASS 1
#define SOL_TCP 6

/* sock_ops return value: the callback was handled (the kernel ignores it for these ops). */
#define SOCKOPS_OK 1

/* ----- sock_ops: enrolment of client sockets ----- */

/* inject_marks values. Userspace re-enrols only ARMED sockets: their transmit callback
 * will take them out again before a response can arrive. */
#define MARK_CONNECTING 1 /* connect()ed by a traced process */
#define MARK_ARMED 2      /* enrolled, with the transmit callback switched on */

static __always_inline void enrol(struct bpf_sock_ops *skops, __u8 *mark) {
    __u64 cookie = bpf_get_socket_cookie(skops);
    long err = bpf_sock_hash_update(skops, &inject_socks, &cookie, BPF_NOEXIST);
    if (err != 0) {
        *mark = 0;
        count_inject(SONDE_INJ_ENROL_FAILED);
        log_debug("injection: enrolling a client socket failed", LOG_NUM("cookie", cookie),
                  LOG_NUM("err", err));
        return;
    }
    /* A callback on every transmitted segment: the first one with data leaves the
     * sockhash (see the file comment). Without it the socket must not stay in. */
    if (bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
                                             BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG) != 0) {
        bpf_map_delete_elem(&inject_socks, &cookie);
        *mark = 0;
        count_inject(SONDE_INJ_ENROL_FAILED);
        return;
    }
    *mark = MARK_ARMED;
    count_inject(SONDE_INJ_ENROLLED);
}

/* ----- arming sockets opened before the agent attached ----- */

/* sock_ops never saw these connect, so they have no transmit callback and must not be
 * enrolled as they are. Userspace names them (arm_requests) once their first exchange
 * completes and runs this iterator over the host's TCP sockets: under the socket lock it
 * switches the callback on (TCP_BPF_SOCK_OPS_CB_FLAGS, Linux 6.13+; older kernels refuse
 * it and the socket stays out) and marks the socket ARMED, after which the agent's usual
 * re-enrolment applies. */
SEC("iter/tcp")
int sonde_iter_arm(struct bpf_iter__tcp *ctx) {
    struct sock_common *skc = ctx->sk_common;
    if (!skc)
        return 0;
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
    if (!tp)
        return 0;
    __u64 cookie = bpf_get_socket_cookie(tp);
    if (!bpf_map_lookup_elem(&arm_requests, &cookie))
        return 0;
    bpf_map_delete_elem(&arm_requests, &cookie);
    int flags = tp->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG;
    if (bpf_setsockopt(tp, SOL_TCP, TCP_BPF_SOCK_OPS_CB_FLAGS, &flags, sizeof(flags)) != 0)
        return 0;
    __u8 *mark = bpf_sk_storage_get(&inject_marks, tp, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (mark) {
        *mark = MARK_ARMED;
        count_inject(SONDE_INJ_ARMED_LATE);
    }
    return 0;
}

/* ----- the TCP header option: context for what headers cannot carry ----- */

/* Experimental option kind (RFC 6994) with our magic: 4 bytes + trace ID + span ID, which
 * is exactly what a data segment with timestamps has left (40 - 12). */
#define TCP_OPT_KIND 254
#define TCP_OPT_MAGIC_HI 0x53 /* "SN" */
#define TCP_OPT_MAGIC_LO 0x4e
#define TCP_OPT_LEN 28

struct tcp_opt {
    __u8 kind;
    __u8 len;
    __u8 magic[2];
    __u8 trace_id[16];
    __u8 span_id[8];
};

/* The note the sk_msg program left for the segment being sent, when this thread is
 * sending on this socket, no header carries the context, and the option has not gone. */
static __always_inline struct inject_note *note_for_option(struct bpf_sock_ops *skops) {
    /* bpf_get_current_pid_tgid() is not offered to sock_ops before Linux 6.x; the task is. */
    __u32 tid = bpf_get_current_task_btf()->pid;
    struct inject_note *note = bpf_map_lookup_elem(&inject_notes, &tid);
    if (!note || note->opt_sent || note->kind == NOTE_NO_CTX || note->status == SONDE_INJECT_DONE ||
        note->sk != (__u64)skops->sk)
        return NULL;
    return note;
}

static __always_inline void reserve_option(struct bpf_sock_ops *skops) {
    __u64 sk = (__u64)skops->sk;
    if (bpf_map_lookup_elem(&tcp_opt_out, &sk) || note_for_option(skops))
        bpf_reserve_hdr_opt(skops, TCP_OPT_LEN, 0);
}

/* The socket's own context to send (a TLS request's, tls/request_ctx.h) first, else the
 * sending thread's note. */
static __always_inline void write_option(struct bpf_sock_ops *skops) {
    __u64 sk = (__u64)skops->sk;
    struct tcp_opt opt = {
        .kind = TCP_OPT_KIND, .len = TCP_OPT_LEN, .magic = {TCP_OPT_MAGIC_HI, TCP_OPT_MAGIC_LO}};
    struct tcp_opt_ctx *out = bpf_map_lookup_elem(&tcp_opt_out, &sk);
    struct inject_note *note = NULL;
    if (out) {
        __builtin_memcpy(opt.trace_id, out->trace_id, sizeof(opt.trace_id));
        __builtin_memcpy(opt.span_id, out->span_id, sizeof(opt.span_id));
    } else {
        note = note_for_option(skops);
        if (!note)
            return;
        __builtin_memcpy(opt.trace_id, note->ctx.trace_id, sizeof(opt.trace_id));
        __builtin_memcpy(opt.span_id, note->ctx.span_id, sizeof(opt.span_id));
    }
    if (bpf_store_hdr_opt(skops, &opt, sizeof(opt), 0) != 0)
        return;
    if (note)
        note->opt_sent = 1;
    else
        bpf_map_delete_elem(&tcp_opt_out, &sk);
    count_inject(SONDE_INJ_TCP_OPT_SENT);
}

/* A segment with an option the kernel does not know arrived: ours carries the sender's
 * context; keep it for the probe that reads the request (trace_ctx/decide.h). */
static __always_inline void read_option(struct bpf_sock_ops *skops) {
    struct tcp_opt opt = {
        .kind = TCP_OPT_KIND, .len = 4, .magic = {TCP_OPT_MAGIC_HI, TCP_OPT_MAGIC_LO}};
    if (bpf_load_hdr_opt(skops, &opt, sizeof(opt), 0) != TCP_OPT_LEN)
        return;
    struct tcp_opt_ctx ctx = {};
    __builtin_memcpy(ctx.trace_id, opt.trace_id, sizeof(ctx.trace_id));
    __builtin_memcpy(ctx.span_id, opt.span_id, sizeof(ctx.span_id));
    ctx.ts_ns = bpf_ktime_get_ns();
    __u64 sk = (__u64)skops->sk;
    bpf_map_update_elem(&tcp_opt_ctxs, &sk, &ctx, BPF_ANY);
    tcp_opt_seen = true;
    count_inject(SONDE_INJ_TCP_OPT_RECV);
}

/* The flag stays set: the agent may re-enrol the socket for its next request (only
 * sockets that have this callback, see attach/reenrol.rs), and must rely on it again. */
static __always_inline void leave_on_data(struct bpf_sock_ops *skops) {
    if (skops->skb_len == 0)
        return; /* a bare ACK: no request has left yet */
    __u64 cookie = bpf_get_socket_cookie(skops);
    bpf_map_delete_elem(&inject_socks, &cookie);
    reserve_option(skops);
}

SEC("sockops")
int sonde_sockops(struct bpf_sock_ops *skops) {
    if (empty_probes)
        return SOCKOPS_OK;
    struct bpf_sock *sk = skops->sk;
    if (!sk)
        return SOCKOPS_OK;
    switch (skops->op) {
    case BPF_SOCK_OPS_TCP_CONNECT_CB: {
        /* connect() runs in the caller's context: remember traced callers' sockets. */
        __u32 tgid = bpf_get_current_task_btf()->tgid;
        if (!traced(&tgid))
            break;
        __u8 *mark = bpf_sk_storage_get(&inject_marks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
        if (mark)
            *mark = MARK_CONNECTING;
        break;
    }
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: {
        /* Softirq context (the SYN-ACK): only the mark says whose socket this is. */
        __u8 *mark = bpf_sk_storage_get(&inject_marks, sk, 0, 0);
        if (mark && *mark == MARK_CONNECTING)
            enrol(skops, mark);
        break;
    }
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: {
        /* A context kept for this address came with an earlier socket there, whose
         * reader this agent does not trace (options are read on every accepted socket,
         * another agent's too): it must not parent this connection's first request. */
        if (tcp_opt_seen) {
            __u64 addr = (__u64)sk;
            bpf_map_delete_elem(&tcp_opt_ctxs, &addr);
        }
        /* Any accepted connection may come from a peer's agent: parse unknown options
         * (only segments that carry one pay for the callback). */
        bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
                                             BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG);
        break;
    }
    case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
        leave_on_data(skops);
        break;
    case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
        write_option(skops);
        break;
    case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
        read_option(skops);
        break;
    }
    return SOCKOPS_OK;
}

/* ----- sk_msg: the insertion ----- */

/* Longest request head (request line + headers) the program examines: a power of two
 * (indexes are masked with it) and at most half the scratch buffer (reads run ahead). */
#define HEAD_SCAN_MAX 2048
#define HEAD_MASK (HEAD_SCAN_MAX - 1)
/* Largest edited message made contiguous again after the insertion (an order-3 page). */
#define LINEARIZE_MAX (32 * 1024)
_Static_assert(2 * HEAD_SCAN_MAX <= sizeof(((struct inject_scratch *)0)->head), "scratch size");

/* Longest request line examined. */
#define REQUEST_LINE_MAX 512

struct line_walk {
    const __u8 *d;
    __u32 len;
    __u32 end; /* just past the request line's CRLF; 0: none */
};

/* bpf_loop body: looks for the request line's end in 8 bytes, without a branch per byte
 * (common/swar.h). */
static long walk_line_word(__u64 idx, void *arg) {
    struct line_walk *w = arg;
    __u32 at = (__u32)idx * 8;
    if (at >= w->len)
        return 1;
    /* Masked, so within the scratch buffer (twice HEAD_SCAN_MAX); bytes past len are
     * stale, and a line end found there fails the length check below. */
    __u64 word = *(const __u64 *)(w->d + (at & HEAD_MASK));
    __u32 k = swar_first(swar_eq(word, '\r') | swar_eq(word, '\n'));
    if (k == 8)
        return 0;
    __u32 i = at + k;
    /* A bare LF is not something we will edit. */
    if (i + 2 <= w->len && w->d[i & HEAD_MASK] == '\r' && w->d[(i + 1) & HEAD_MASK] == '\n')
        w->end = i + 2;
    return 1;
}

/* Offset just past the request line's CRLF, or 0 if it is not in the first bytes. */
static __always_inline __u32 request_line_end(const __u8 *d, __u32 len) {
    struct line_walk w = {.d = d, .len = len, .end = 0};
    bpf_loop(REQUEST_LINE_MAX / 8, walk_line_word, &w, 0);
    return w.end;
}

static __always_inline __u8 lower(__u8 c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Does the header line at `at` name a trace context header we must not shadow?
 * (traceparent, b3, X-B3-*, uber-trace-id.) Reads up to 16 bytes ahead: in bounds by the
 * scratch buffer's size; bytes past len are stale but only ever make a refusal. */
static __always_inline bool is_ctx_header(const __u8 *d, __u32 at) {
    const __u8 *h = d + (at & HEAD_MASK);
    switch (lower(h[0])) {
    case 't':
        return lower(h[1]) == 'r' && lower(h[5]) == 'p' && lower(h[10]) == 't' && h[11] == ':';
    case 'b':
        return h[1] == '3' && h[2] == ':';
    case 'x':
        return h[1] == '-' && lower(h[2]) == 'b' && h[3] == '3' && h[4] == '-';
    case 'u':
        return lower(h[1]) == 'b' && h[4] == '-' && lower(h[5]) == 't' && h[13] == ':';
    }
    return false;
}

enum head_scan {
    HEAD_INCOMPLETE, /* no blank line within the examined bytes */
    HEAD_HAS_CTX,    /* a trace context header is already there */
    HEAD_CLEAN,      /* complete, and no trace context header */
};

struct head_walk {
    const __u8 *d;
    __u32 len;
    __u32 from;
    enum head_scan result;
};

/* bpf_loop body: examines 8 bytes of the header block for line starts. */
static long walk_head_word(__u64 idx, void *arg) {
    struct head_walk *w = arg;
    __u32 base = w->from + (__u32)idx * 8;
    for (int k = 0; k < 8; k++) {
        __u32 at = base + k;
        if (at + 3 > w->len || at >= HEAD_SCAN_MAX)
            return 1; /* ran out: incomplete */
        /* Without the barrier clang drops the mask (the check proved it redundant) and
         * adds base and k to the pointer one by one; 6.1's verifier cannot bound that sum
         * ("unbounded memory access"), 6.18's can. */
        barrier_var(at);
        const __u8 *p = w->d + (at & HEAD_MASK);
        if (p[0] != '\n')
            continue;
        if (p[1] == '\r') {
            w->result = p[2] == '\n' ? HEAD_CLEAN : HEAD_INCOMPLETE;
            return 1;
        }
        if (is_ctx_header(w->d, at + 1)) {
            w->result = HEAD_HAS_CTX;
            return 1;
        }
    }
    return 0;
}

/* Walk the header lines from `from` (just past the request line) to the blank line. */
static __always_inline enum head_scan scan_head(const __u8 *d, __u32 len, __u32 from) {
    if (from + 2 > len || from >= HEAD_SCAN_MAX)
        return HEAD_INCOMPLETE;
    /* Keeps the mask, which the check above makes look redundant to clang (see
     * walk_head_word). */
    barrier_var(from);
    const __u8 *h = d + (from & HEAD_MASK);
    if (h[0] == '\r')
        return h[1] == '\n' ? HEAD_CLEAN : HEAD_INCOMPLETE;
    if (is_ctx_header(d, from))
        return HEAD_HAS_CTX;
    struct head_walk w = {.d = d, .len = len, .from = from, .result = HEAD_INCOMPLETE};
    bpf_loop(HEAD_SCAN_MAX / 8, walk_head_word, &w, 0);
    return w.result;
}

/* Hands the outcome (and the client span, when there is one) to the exit probe of the
 * same syscall, and to the TCP option written for the segment. */
static __always_inline void remember(__u32 tid, __u64 sk, const struct thread_ctx *client,
                                     __u8 status) {
    struct inject_note note = {};
    note.sk = sk;
    note.status = status;
    if (client) {
        note.kind = NOTE_CLIENT;
        note.ctx = client->ctx;
        note.source = client->source;
        note.trace_flags = client->trace_flags;
    }
    bpf_map_update_elem(&inject_notes, &tid, &note, BPF_ANY);
}

/* Not an HTTP request (TLS, a database protocol): no header can be inserted, but the TCP
 * option can name the server span the sender (thread or goroutine) is serving. */
static __always_inline void remember_caller(__u32 tid, __u64 pid_tgid, __u64 sk) {
    struct thread_ctx *tc = live_ctx_of(current_exec_key(pid_tgid));
    if (!tc || tc->sock_id == sk)
        return;
    struct inject_note note = {};
    note.sk = sk;
    note.kind = NOTE_CALLER;
    __builtin_memcpy(note.ctx.trace_id, tc->ctx.trace_id, sizeof(note.ctx.trace_id));
    __builtin_memcpy(note.ctx.span_id, tc->ctx.span_id, sizeof(note.ctx.span_id));
    bpf_map_update_elem(&inject_notes, &tid, &note, BPF_ANY);
}

SEC("sk_msg")
int sonde_sk_msg(struct sk_msg_md *msg) {
    if (empty_probes)
        return SK_PASS;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)pid_tgid;
    __u32 tgid = pid_tgid >> 32;
    if (!traced(&tgid))
        return SK_PASS; /* a socket handed to an untraced process */
    __u64 sk = (__u64)msg->sk;

    __u32 size = msg->size;
    __u32 len = size < HEAD_SCAN_MAX ? size : HEAD_SCAN_MAX;
    if (len < 16 || bpf_msg_pull_data(msg, 0, len, 0) != 0)
        return SK_PASS;
    const __u8 *pkt = msg->data;
    if (pkt + 16 > (const __u8 *)msg->data_end || !looks_like_http_request(pkt, 16)) {
        remember_caller(tid, pid_tgid, sk);
        return SK_PASS; /* not the start of a request: never touched */
    }
    /* The client span's IDs: inserted in the header, or carried by the TCP option when
     * the header cannot be. */
    struct thread_ctx client = {};
    client_ctx_for(&client, current_exec_key(pid_tgid), sk);

    /* Examine a copy: plain memory with masked indexes keeps the verifier's work small. */
    __u32 zero = 0;
    struct inject_scratch *scratch = bpf_map_lookup_elem(&inject_scratch_map, &zero);
    if (!scratch)
        return SK_PASS;
    const __u8 *d = scratch->head;
    if (len > (__u32)((const __u8 *)msg->data_end - pkt) ||
        bpf_probe_read_kernel(scratch->head, len & (2 * HEAD_SCAN_MAX - 1), pkt) != 0) {
        count_inject(SONDE_INJ_FAILED);
        remember(tid, sk, &client, SONDE_INJECT_FAILED);
        return SK_PASS;
    }

    /* "METHOD target HTTP/1.x\r\n", then a complete header block without a context header. */
    __u32 line_end = request_line_end(d, len);
    bool line_ok = line_end >= 16 && line_end <= REQUEST_LINE_MAX &&
                   has_prefix(d + ((line_end - 11) & HEAD_MASK), 8, " HTTP/1.", 8);
    enum head_scan head = line_ok ? scan_head(d, len, line_end) : HEAD_INCOMPLETE;
    if (head == HEAD_HAS_CTX) {
        count_inject(SONDE_INJ_APP_HEADER);
        log_debug("injection skipped: the request carries its own trace context header",
                  LOG_NUM("tgid", tgid));
        remember(tid, sk, NULL, SONDE_INJECT_APP_HEADER);
        return SK_PASS;
    }
    if (head != HEAD_CLEAN) {
        count_inject(SONDE_INJ_SKIPPED);
        log_debug("injection skipped: no complete HTTP/1 request head in the first bytes",
                  LOG_NUM("tgid", tgid), LOG_NUM("size", size), LOG_NUM("line_end", line_end));
        remember(tid, sk, &client, SONDE_INJECT_SKIPPED);
        return SK_PASS;
    }

    char line[INJECT_LINE_LEN];
    format_traceparent(line, &client.ctx, client.trace_flags);

    if (bpf_msg_push_data(msg, line_end, INJECT_LINE_LEN, 0) != 0) {
        count_inject(SONDE_INJ_FAILED);
        log_debug("injection failed: no room to insert the header", LOG_NUM("tgid", tgid),
                  LOG_NUM("size", size));
        remember(tid, sk, &client, SONDE_INJECT_FAILED);
        return SK_PASS;
    }
    /* The pushed bytes are uninitialised: fill them, or take them out again. */
    if (bpf_msg_pull_data(msg, line_end, line_end + INJECT_LINE_LEN, 0) == 0) {
        __u8 *p = msg->data;
        if (p + INJECT_LINE_LEN <= (__u8 *)msg->data_end) {
            __builtin_memcpy(p, line, INJECT_LINE_LEN);
            /* The insertion split the message into scatterlist elements, and tcp_bpf
             * sends each with its own tcp_sendmsg: the request line alone would leave
             * first and Nagle would hold the rest until the peer's delayed ACK (40 ms).
             * One element again sends it as the application wrote it. On failure the
             * bytes are still right, only possibly later. */
            __u32 total = msg->size;
            if (total <= LINEARIZE_MAX)
                bpf_msg_pull_data(msg, 0, total, 0);
            count_inject(SONDE_INJ_DONE);
            remember(tid, sk, &client, SONDE_INJECT_DONE);
            return SK_PASS;
        }
    }
    bpf_msg_pop_data(msg, line_end, INJECT_LINE_LEN, 0);
    count_inject(SONDE_INJ_FAILED);
    remember(tid, sk, &client, SONDE_INJECT_FAILED);
    return SK_PASS;
}
