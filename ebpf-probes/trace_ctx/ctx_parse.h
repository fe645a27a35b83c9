/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Trace context carried by an HTTP/1 request head, decoded from the captured prefix of
 * the syscall's bytes. Plain C: the same code runs in the kernel (included from
 * trace_ctx/decide.h) and on the host, where userspace-agent's unit tests call it through
 * host/ctx_parse_host.c. No BPF helper is used except bpf_loop, behind CTX_LOOP.
 *
 * Supported headers (names case-insensitive, at line starts, inside the header block):
 *   traceparent      W3C Trace Context, version 00 and later versions by the 00 layout
 *   b3               B3 single header
 *   X-B3-TraceId     B3 multi (with X-B3-SpanId, X-B3-Sampled, X-B3-Flags)
 *   uber-trace-id    Jaeger (':' or URL-encoded "%3A" separators)
 *   X-Amzn-Trace-Id  AWS X-Ray (Root, Parent, Sampled in any order)
 * Precedence: the first VALID one in that order wins; an invalid header is ignored as
 * if absent (W3C: "invalid -> new trace"), so a valid b3 still joins when a broken
 * traceparent sits beside it. Duplicate traceparent fields make traceparent invalid
 * (W3C); for the other formats the first field wins.
 *
 * Cost: one pass over the head, eight bytes per step, stopping at the blank line; each
 * complete line is classified by its first character (most lines match nothing after
 * one compare). Only the winning format's value is decoded. A value is used only if its
 * line ends inside the captured bytes: a value cut by the capture is not trusted.
 */
#pragma once

#ifdef __bpf__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#else
#include <linux/types.h>
#include <stdbool.h>
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#endif
#include "sonde_abi.h"
#include <common/swar.h>

/* A decoded context. format == SONDE_FMT_NONE: no valid header. */
struct sonde_parsed_ctx {
    __u8 trace_id[16];
    __u8 span_id[8]; /* the sender's span: the parent of ours */
    __u8 flags;      /* W3C trace-flags: bit 0 sampled */
    __u8 format;     /* enum sonde_ctx_format */
    __u8 _pad[6];
};

#define CTX_SAMPLED 0x01

#ifdef __clang__
#define CTX_UNROLL _Pragma("unroll")
#else
#define CTX_UNROLL _Pragma("GCC unroll 16")
#endif

/* Every read is d[p & CTX_MASK]: the mask proves to the verifier that the offset stays in
 * data[] (+ the spare half, for the 8-byte loads); callers check p < len first, so on
 * valid input the mask changes nothing. */
#define CTX_MASK (SONDE_MAX_CAPTURE - 1)
#define CTX_AT(d, p) ((d)[(p) & CTX_MASK])

#ifdef __bpf__
/* Verified once per callback instead of once per iteration (kernel 5.17+). */
#define CTX_LOOP(n, fn, ctx) bpf_loop((n), (fn), (ctx), 0)
/* x86 and arm64 allow misaligned map-value loads; clang would split a memcpy into bytes. */
#define CTX_LOAD64(p) (*(const __u64 *)(p))
#else
static inline long ctx_loop_host(__u32 n, long (*fn)(__u64, void *), void *ctx) {
    for (__u32 i = 0; i < n; i++)
        if (fn(i, ctx))
            return i + 1;
    return n;
}
#define CTX_LOOP(n, fn, ctx) ctx_loop_host((n), (fn), (ctx))
static inline __u64 ctx_load64_host(const __u8 *p) {
    __u64 w;
    __builtin_memcpy(&w, p, sizeof(w));
    return w;
}
#define CTX_LOAD64(p) ctx_load64_host(p)
#endif

/* Header fields the scan records, by their bit in ctx_scan.present/bad. */
enum ctx_field {
    CTX_F_TRACEPARENT,
    CTX_F_B3,
    CTX_F_B3_TRACEID,
    CTX_F_B3_SPANID,
    CTX_F_B3_SAMPLED,
    CTX_F_B3_FLAGS,
    CTX_F_UBER,
    CTX_F_XRAY,
    CTX_F_COUNT,
};

/* A header value: [start, end), surrounding whitespace trimmed. */
struct ctx_value {
    __u16 start;
    __u16 end;
};

/* What the scan found so far. The kernel keeps it in map memory (struct scratch), not on
 * the stack: values loaded from a map are unknown to the verifier, so the bpf_loop
 * callback converges after one pass instead of being re-verified for every position. */
struct ctx_scan_state {
    __u32 len;
    __u32 pos;  /* next byte to scan */
    __u32 line; /* start of the line being scanned */
    __u16 present;
    __u16 bad;       /* duplicate traceparent, or a field continued by obs-fold */
    __u8 last;       /* field of the previous line (CTX_F_COUNT: none), for obs-fold */
    __u8 in_block;   /* past the request line */
    __u8 xray_found; /* CTX_XRAY_* bits */
    __u8 _pad[5];
    struct ctx_value v[CTX_F_COUNT];
    __u64 xray_thi, xray_tlo, xray_parent;
    /* Jaeger: the field being read (0..3, 4: malformed), its digits, separator bytes to
     * skip, and what was read. */
    __u8 jaeger_field, jaeger_digits, jaeger_skip, _pad3[5];
    __u64 jaeger_thi, jaeger_tlo, jaeger_span, jaeger_flags;
};

/* The bpf_loop context (must live on the stack): the bytes and the state. */
struct ctx_scan {
    const __u8 *d;
    struct ctx_scan_state *st;
};

/* Is [p, end) at least n bytes and does it start with name (lower-case letters match
 * either case; other characters match exactly)? */
static __always_inline bool ctx_name_is(const __u8 *d, __u32 p, __u32 end, const char *name,
                                        __u32 n) {
    if (p + n > end)
        return false;
    /* n is a constant at every call site: the loop unrolls into n compares. */
    CTX_UNROLL
    for (__u32 i = 0; i < n; i++) {
        __u8 c = CTX_AT(d, p + i);
        char e = name[i];
        if (e >= 'a' && e <= 'z')
            c |= 0x20;
        if (c != (__u8)e)
            return false;
    }
    return true;
}

static __always_inline bool ctx_is_ows(__u8 c) {
    return c == ' ' || c == '\t';
}

/* A flag (0x80) in every byte of w that is not optional whitespace (SP or HTAB). */
static __always_inline __u64 ctx_non_ows(__u64 w) {
    return ~(swar_eq(w, ' ') | swar_eq(w, '\t')) & SWAR_80;
}

/* Records the value of field f that starts at p (after the name and colon). */
static __always_inline void ctx_record(struct ctx_scan *s, enum ctx_field f, __u32 p, __u32 end) {
    struct ctx_scan_state *st = s->st;
    __u16 bit = 1 << f;
    if (st->present & bit) {
        if (f == CTX_F_TRACEPARENT)
            st->bad |= bit;
        return;
    }
    /* Optional whitespace; more than 8 blanks is not a value we decode. The byte before p
     * is the colon and the byte at end is CR or LF, so neither count runs past the line;
     * an all-blank value ends up empty. The word ending at end starts at end - 8; a line
     * that ends sooner (a 1-3 byte request line) has its first bytes shifted to the top,
     * with zeros, which are not blanks, below them. */
    __u64 last = end >= 8 ? CTX_LOAD64(&s->d[(end - 8) & CTX_MASK])
                          : CTX_LOAD64(&s->d[0]) << (8 * (8 - (end & 7)));
    end -= swar_after_last(ctx_non_ows(last));
    p += swar_first(ctx_non_ows(CTX_LOAD64(&s->d[p & CTX_MASK])));
    if (p > end)
        p = end;
    st->present |= bit;
    st->v[f].start = p;
    st->v[f].end = end;
}

/* Which supported field the header line [p, end) is, recording its value. */
static __always_inline __u8 ctx_classify(struct ctx_scan *s, __u32 p, __u32 end) {
    const __u8 *d = s->d;
    switch (CTX_AT(d, p) | 0x20) {
    case 't':
        if (ctx_name_is(d, p, end, "traceparent:", 12)) {
            ctx_record(s, CTX_F_TRACEPARENT, p + 12, end);
            return CTX_F_TRACEPARENT;
        }
        break;
    case 'b':
        if (ctx_name_is(d, p, end, "b3:", 3)) {
            ctx_record(s, CTX_F_B3, p + 3, end);
            return CTX_F_B3;
        }
        break;
    case 'u':
        if (ctx_name_is(d, p, end, "uber-trace-id:", 14)) {
            ctx_record(s, CTX_F_UBER, p + 14, end);
            return CTX_F_UBER;
        }
        break;
    case 'x':
        if (ctx_name_is(d, p, end, "x-b3-", 5)) {
            __u32 q = p + 5;
            if (ctx_name_is(d, q, end, "traceid:", 8)) {
                ctx_record(s, CTX_F_B3_TRACEID, q + 8, end);
                return CTX_F_B3_TRACEID;
            }
            if (ctx_name_is(d, q, end, "spanid:", 7)) {
                ctx_record(s, CTX_F_B3_SPANID, q + 7, end);
                return CTX_F_B3_SPANID;
            }
            if (ctx_name_is(d, q, end, "sampled:", 8)) {
                ctx_record(s, CTX_F_B3_SAMPLED, q + 8, end);
                return CTX_F_B3_SAMPLED;
            }
            if (ctx_name_is(d, q, end, "flags:", 6)) {
                ctx_record(s, CTX_F_B3_FLAGS, q + 6, end);
                return CTX_F_B3_FLAGS;
            }
        } else if (ctx_name_is(d, p, end, "x-amzn-trace-id:", 16)) {
            ctx_record(s, CTX_F_XRAY, p + 16, end);
            return CTX_F_XRAY;
        }
        break;
    }
    return CTX_F_COUNT;
}

/* The complete line [st->line, nl). Returns 1 at the blank line that ends the head. */
static __always_inline long ctx_line(struct ctx_scan *s, __u32 nl) {
    struct ctx_scan_state *st = s->st;
    __u32 p = st->line;
    __u32 end = nl;
    if (end > p && CTX_AT(s->d, end - 1) == '\r')
        end--;
    if (end <= p)
        return 1;
    if (!st->in_block) {
        st->in_block = 1; /* the request line */
        return 0;
    }
    __u8 c = CTX_AT(s->d, p);
    if (ctx_is_ows(c)) {
        /* obs-fold: this line continues the previous field, whose value we cannot
         * trust as recorded (RFC 9112 5.2). */
        if (st->last < CTX_F_COUNT)
            st->bad |= 1 << st->last;
        return 0;
    }
    st->last = ctx_classify(s, p, end);
    return 0;
}

/* One step of the scan: skip eight bytes without a newline, or handle one line.
 * Every step consumes at least one byte, so len steps always suffice. */
static long ctx_scan_step(__u64 index, void *arg) {
    (void)index;
    struct ctx_scan *s = arg;
    struct ctx_scan_state *st = s->st;
    __u32 pos = st->pos;
    if (pos >= st->len)
        return 1;
    /* Bytes past len are stale memory (kernel) or padding (host): ignored below. */
    __u32 k = swar_first(swar_eq(CTX_LOAD64(&s->d[pos & CTX_MASK]), '\n'));
    if (k == 8) {
        st->pos = pos + 8;
        return 0;
    }
    __u32 nl = pos + k;
    if (nl >= st->len)
        return 1; /* the last line is cut by the capture */
    st->pos = nl + 1;
    long done = ctx_line(s, nl);
    st->line = nl + 1;
    return done;
}

/* The lower-case hex digits at the start of the 8 bytes w (first byte lowest): how many
 * (0..8) in *n, and their value, first digit most significant. Straight-line arithmetic
 * (common/swar.h): a loop with a branch per digit cost the verifier hundreds of thousands
 * of instructions inside the X-Ray callback. */
static __always_inline __u64 ctx_hex8(__u64 w, __u32 *n) {
    __u64 letter = swar_in(w, 'a', 'f');
    __u32 k = swar_first(~(swar_in(w, '0', '9') | letter) & SWAR_80);
    /* Nibble values ('a' is 0x61: low nibble 1, plus 9), first digit in the top byte,
     * then pairs, quads and octets of nibbles packed: 8 nibbles in the low 32 bits. */
    __u64 v = ((w & (0x0f * SWAR_01)) + 9 * (letter >> 7)) & (0x0f * SWAR_01);
    v = __builtin_bswap64(v);
    v = (v | (v >> 4)) & 0x00ff00ff00ff00ffULL;
    v = (v | (v >> 8)) & 0x0000ffff0000ffffULL;
    v = (v | (v >> 16)) & 0x00000000ffffffffULL;
    *n = k;
    return v >> (4 * (8 - k));
}

/* Up to max (<= 32) lower-case hex digits at [p, end) into *hi:*lo, right-aligned (fewer
 * digits mean leading zeros). Returns how many were read; stops at the first other byte. */
static __always_inline __u32 ctx_hex(const __u8 *d, __u32 p, __u32 end, __u32 max, __u64 *hi,
                                     __u64 *lo) {
    __u32 want = end > p ? end - p : 0;
    if (want > max)
        want = max;
    __u64 h = 0, l = 0;
    __u32 n = 0;
    CTX_UNROLL
    for (__u32 w = 0; w < 4; w++) {
        __u32 k;
        __u64 v = ctx_hex8(CTX_LOAD64(&d[(p + 8 * w) & CTX_MASK]), &k);
        if (k > want - n) {
            /* Digits past the ones wanted are not read: keep the first want - n. */
            v >>= 4 * (k - (want - n));
            k = want - n;
        }
        /* (h:l) << 4k, k <= 8: the bits l shifts out go to h (two shifts keep every
         * shift count below 64). */
        __u32 bits = 4 * k;
        h = (h << bits) | ((l >> 32) >> (32 - bits));
        l = (l << bits) | v;
        n += k;
        if (k < 8 || n >= want)
            break;
    }
    *hi = h;
    *lo = l;
    return n;
}

static __always_inline void ctx_put_be64(__u8 *dst, __u64 v) {
    CTX_UNROLL
    for (int i = 0; i < 8; i++)
        dst[i] = v >> (56 - 8 * i);
}

/* Fills out with a non-zero trace and span ID; false if either is zero. */
static __always_inline bool ctx_emit(struct sonde_parsed_ctx *out, __u64 thi, __u64 tlo, __u64 span,
                                     bool sampled, __u8 format) {
    if ((thi | tlo) == 0 || span == 0)
        return false;
    ctx_put_be64(out->trace_id, thi);
    ctx_put_be64(out->trace_id + 8, tlo);
    ctx_put_be64(out->span_id, span);
    out->flags = sampled ? CTX_SAMPLED : 0;
    out->format = format;
    return true;
}

/* traceparent: version "-" trace-id(32) "-" parent-id(16) "-" trace-flags(2), lower-case
 * hex. Version ff is invalid; 00 is exactly 55 characters; a later version may be
 * longer, with a '-' after the flags, and is read by the 00 layout. */
static __always_inline bool ctx_w3c(const __u8 *d, struct ctx_value v,
                                    struct sonde_parsed_ctx *out) {
    __u32 p = v.start, end = v.end;
    if (end < p + 55)
        return false;
    __u64 hi, version, span, flags;
    if (ctx_hex(d, p, p + 2, 2, &hi, &version) != 2 || version == 0xff)
        return false;
    if (version == 0 && end != p + 55)
        return false;
    if (end > p + 55 && CTX_AT(d, p + 55) != '-')
        return false;
    if (CTX_AT(d, p + 2) != '-' || CTX_AT(d, p + 35) != '-' || CTX_AT(d, p + 52) != '-')
        return false;
    __u64 thi, tlo;
    if (ctx_hex(d, p + 3, p + 35, 32, &thi, &tlo) != 32 ||
        ctx_hex(d, p + 36, p + 52, 16, &hi, &span) != 16 ||
        ctx_hex(d, p + 53, p + 55, 2, &hi, &flags) != 2)
        return false;
    return ctx_emit(out, thi, tlo, span, flags & CTX_SAMPLED, SONDE_FMT_W3C);
}

/* The sampling state of B3 single: '1' accept, 'd' debug (sampled), '0' deny. */
static __always_inline int ctx_b3_sampling(__u8 c) {
    if (c == '1' || c == 'd')
        return 1;
    if (c == '0')
        return 0;
    return -1;
}

/* b3: {trace-id(16|32)}-{span-id(16)}[-{sampling}[-{parent-span-id(16)}]]. A lone
 * sampling decision ("0", "1", "d") carries no IDs. */
static __always_inline bool ctx_b3(const __u8 *d, struct ctx_value v,
                                   struct sonde_parsed_ctx *out) {
    __u32 p = v.start, end = v.end;
    __u64 thi, tlo, hi, span, parent;
    __u32 n = ctx_hex(d, p, end, 32, &thi, &tlo);
    if (n != 16 && n != 32)
        return false;
    p += n;
    if (p >= end || CTX_AT(d, p) != '-')
        return false;
    if (ctx_hex(d, p + 1, end, 16, &hi, &span) != 16)
        return false;
    p += 17;
    bool sampled = true; /* no decision yet: we record, so sampled */
    if (p < end) {
        if (p + 2 > end || CTX_AT(d, p) != '-')
            return false;
        int s = ctx_b3_sampling(CTX_AT(d, p + 1));
        if (s < 0)
            return false;
        sampled = s;
        p += 2;
        if (p < end) {
            if (CTX_AT(d, p) != '-' || ctx_hex(d, p + 1, end, 16, &hi, &parent) != 16 ||
                p + 17 != end)
                return false;
        }
    }
    return ctx_emit(out, thi, tlo, span, sampled, SONDE_FMT_B3);
}

/* Is the value exactly the given text? (n <= 8) */
static __always_inline bool ctx_value_is(const __u8 *d, struct ctx_value v, const char *text,
                                         __u32 n) {
    return v.end == v.start + n && ctx_name_is(d, v.start, v.end, text, n);
}

/* X-B3-TraceId (16|32 hex) + X-B3-SpanId (16 hex); X-B3-Sampled "1"/"0" (or the legacy
 * "true"/"false"); X-B3-Flags "1" is debug, which implies sampled. */
static __always_inline bool ctx_b3_multi(const __u8 *d, const struct ctx_scan_state *s,
                                         struct sonde_parsed_ctx *out) {
    struct ctx_value t = s->v[CTX_F_B3_TRACEID], sp = s->v[CTX_F_B3_SPANID];
    __u64 thi, tlo, hi, span;
    __u32 n = ctx_hex(d, t.start, t.end, 32, &thi, &tlo);
    if ((n != 16 && n != 32) || t.start + n != t.end)
        return false;
    if (ctx_hex(d, sp.start, sp.end, 16, &hi, &span) != 16 || sp.start + 16 != sp.end)
        return false;
    bool sampled = true;
    if (s->present & (1 << CTX_F_B3_SAMPLED)) {
        struct ctx_value v = s->v[CTX_F_B3_SAMPLED];
        if (ctx_value_is(d, v, "0", 1) || ctx_value_is(d, v, "false", 5))
            sampled = false;
        else if (!ctx_value_is(d, v, "1", 1) && !ctx_value_is(d, v, "true", 4))
            return false;
    }
    if (s->present & (1 << CTX_F_B3_FLAGS)) {
        if (!ctx_value_is(d, s->v[CTX_F_B3_FLAGS], "1", 1))
            return false;
        sampled = true;
    }
    return ctx_emit(out, thi, tlo, span, sampled, SONDE_FMT_B3_MULTI);
}

#define CTX_JAEGER_BAD 4

/* The value of a hex digit, 16 if c is not one (either case). */
static __always_inline __u8 ctx_hex_any(__u8 c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return 16;
}

/* One byte of an uber-trace-id value. Fields have variable length, so this is a state
 * machine over the bytes (in map memory: verified once, not once per digit count). */
static long ctx_jaeger_step(__u64 i, void *arg) {
    struct ctx_scan *s = arg;
    struct ctx_scan_state *st = s->st;
    const __u8 *d = s->d;
    __u32 p = st->v[CTX_F_UBER].start + (__u32)i, end = st->v[CTX_F_UBER].end;
    if (p >= end)
        return 1;
    if (st->jaeger_skip) {
        st->jaeger_skip--;
        return 0;
    }
    __u8 c = CTX_AT(d, p), field = st->jaeger_field;
    bool sep = c == ':';
    if (c == '%') {
        /* The URL-encoded separator "%3A". */
        if (p + 3 > end || CTX_AT(d, p + 1) != '3' || (CTX_AT(d, p + 2) | 0x20) != 'a')
            goto bad;
        st->jaeger_skip = 2;
        sep = true;
    }
    if (sep) {
        if (st->jaeger_digits == 0 || field >= 3)
            goto bad;
        st->jaeger_field = field + 1;
        st->jaeger_digits = 0;
        return 0;
    }
    __u8 v = ctx_hex_any(c);
    __u8 n = st->jaeger_digits + 1;
    /* Most digits per field: trace 32, span 16, parent 16, flags 2. */
    if (v > 15 || n > (field == 0 ? 32 : field == 3 ? 2 : 16))
        goto bad;
    st->jaeger_digits = n;
    if (field == 0) {
        st->jaeger_thi = (st->jaeger_thi << 4) | (st->jaeger_tlo >> 60);
        st->jaeger_tlo = (st->jaeger_tlo << 4) | v;
    } else if (field == 1) {
        st->jaeger_span = (st->jaeger_span << 4) | v;
    } else if (field == 3) {
        st->jaeger_flags = (st->jaeger_flags << 4) | v;
    }
    return 0;
bad:
    st->jaeger_field = CTX_JAEGER_BAD;
    return 1;
}

/* uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}, hex of up to 32/16/16/2
 * digits with leading zeros omitted (either case, as Jaeger clients accept), ':' or
 * "%3A" between. Flags bit 0 is sampled, bit 1 debug (which implies sampled). */
static __always_inline bool ctx_jaeger(const __u8 *d, struct ctx_scan_state *st,
                                       struct sonde_parsed_ctx *out) {
    struct ctx_scan s = {.d = d, .st = st};
    st->jaeger_field = 0;
    st->jaeger_digits = 0;
    st->jaeger_skip = 0;
    st->jaeger_thi = st->jaeger_tlo = st->jaeger_span = st->jaeger_flags = 0;
    CTX_LOOP(SONDE_MAX_CAPTURE, ctx_jaeger_step, &s);
    if (st->jaeger_field != 3 || st->jaeger_digits == 0)
        return false;
    return ctx_emit(out, st->jaeger_thi, st->jaeger_tlo, st->jaeger_span, st->jaeger_flags & 3,
                    SONDE_FMT_JAEGER);
}

/* X-Ray fields found (in ctx_scan_state.xray_*; the first of each wins). */
#define CTX_XRAY_ROOT 1
#define CTX_XRAY_PARENT 2
#define CTX_XRAY_UNSAMPLED 4

/* Does the field value ending at p end there (end of value, ';' or whitespace)? */
static __always_inline bool ctx_xray_field_end(const __u8 *d, __u32 p, __u32 end) {
    if (p >= end)
        return true;
    __u8 c = CTX_AT(d, p);
    return c == ';' || ctx_is_ows(c);
}

/* Looks at offset i of the value: at a field start, reads Root=, Parent= or Sampled=. */
static long ctx_xray_step(__u64 i, void *arg) {
    struct ctx_scan *s = arg;
    struct ctx_scan_state *st = s->st;
    const __u8 *d = s->d;
    struct ctx_value v = st->v[CTX_F_XRAY];
    __u32 p = v.start + (__u32)i, end = v.end;
    if (p >= end)
        return 1;
    if (p > v.start) {
        __u8 prev = CTX_AT(d, p - 1);
        if (prev != ';' && !ctx_is_ows(prev))
            return 0;
    }
    __u64 hi, lo;
    switch (CTX_AT(d, p)) {
    case 'R':
        /* Root=1-{8 hex epoch}-{24 hex}: 128 bits in all. */
        if ((st->xray_found & CTX_XRAY_ROOT) || !ctx_name_is(d, p, end, "Root=1-", 7) ||
            p + 40 > end || CTX_AT(d, p + 15) != '-' || !ctx_xray_field_end(d, p + 40, end))
            return 0;
        if (ctx_hex(d, p + 7, p + 15, 8, &hi, &lo) != 8)
            return 0;
        st->xray_thi = lo << 32;
        if (ctx_hex(d, p + 16, p + 40, 24, &hi, &lo) != 24)
            return 0;
        st->xray_thi |= hi;
        st->xray_tlo = lo;
        st->xray_found |= CTX_XRAY_ROOT;
        break;
    case 'P':
        if ((st->xray_found & CTX_XRAY_PARENT) || !ctx_name_is(d, p, end, "Parent=", 7) ||
            !ctx_xray_field_end(d, p + 23, end) || ctx_hex(d, p + 7, p + 23, 16, &hi, &lo) != 16)
            return 0;
        st->xray_parent = lo;
        st->xray_found |= CTX_XRAY_PARENT;
        break;
    case 'S':
        /* '?': the sender asks us to decide; we record, so sampled. */
        if (ctx_name_is(d, p, end, "Sampled=", 8) && p + 8 < end &&
            ctx_xray_field_end(d, p + 9, end) && CTX_AT(d, p + 8) == '0')
            st->xray_found |= CTX_XRAY_UNSAMPLED;
        break;
    }
    return 0;
}

/* X-Amzn-Trace-Id: Root=1-{8}-{24};Parent={16};Sampled={0|1|?}, fields in any order,
 * others (Self=, Lineage=) ignored. Without Parent there is no span to join. */
static __always_inline bool ctx_xray(const __u8 *d, struct ctx_scan_state *st,
                                     struct sonde_parsed_ctx *out) {
    struct ctx_scan s = {.d = d, .st = st};
    st->xray_found = 0;
    CTX_LOOP(SONDE_MAX_CAPTURE, ctx_xray_step, &s);
    __u8 found = st->xray_found;
    if (!(found & CTX_XRAY_ROOT) || !(found & CTX_XRAY_PARENT))
        return false;
    return ctx_emit(out, st->xray_thi, st->xray_tlo, st->xray_parent, !(found & CTX_XRAY_UNSAMPLED),
                    SONDE_FMT_XRAY);
}

static __always_inline bool ctx_usable(const struct ctx_scan_state *st, enum ctx_field f) {
    return (st->present & ~st->bad) & (1 << f);
}

/* The bytes the parser may read: a head of at most SONDE_MAX_CAPTURE bytes and room for
 * the 8-byte loads that pass its end (reads are masked; bytes past len are ignored). */
struct ctx_bytes {
    __u8 b[SONDE_MAX_CAPTURE + 8];
};

#ifdef __bpf__
/* A global function: the verifier checks it once, on its own, instead of once for every
 * path that reaches a call (the probes reach it through many capture paths). */
#define CTX_ENTRY __attribute__((noinline))
#else
#define CTX_ENTRY static inline
#endif

/* Finds and decodes the trace context of the request head bytes->b[0, len). Returns 1
 * and fills out when a supported header is valid, else 0 (out->format NONE). st is
 * scratch memory: map memory in the kernel (see struct ctx_scan_state). */
CTX_ENTRY int sonde_parse_ctx(const struct ctx_bytes *bytes, __u32 len, struct ctx_scan_state *st,
                              struct sonde_parsed_ctx *out) {
    if (!bytes || !st || !out)
        return 0;
    const __u8 *d = bytes->b;
    __builtin_memset(st, 0, sizeof(*st));
    st->len = len > SONDE_MAX_CAPTURE ? SONDE_MAX_CAPTURE : len;
    st->last = CTX_F_COUNT;
    out->format = SONDE_FMT_NONE;
    struct ctx_scan s = {.d = d, .st = st};
    CTX_LOOP(SONDE_MAX_CAPTURE, ctx_scan_step, &s);
    if (!st->present)
        return 0;
    if (ctx_usable(st, CTX_F_TRACEPARENT) && ctx_w3c(d, st->v[CTX_F_TRACEPARENT], out))
        return 1;
    if (ctx_usable(st, CTX_F_B3) && ctx_b3(d, st->v[CTX_F_B3], out))
        return 1;
    if (ctx_usable(st, CTX_F_B3_TRACEID) && ctx_usable(st, CTX_F_B3_SPANID) &&
        ctx_b3_multi(d, st, out))
        return 1;
    if (ctx_usable(st, CTX_F_UBER) && ctx_jaeger(d, st, out))
        return 1;
    if (ctx_usable(st, CTX_F_XRAY) && ctx_xray(d, st, out))
        return 1;
    return 0;
}
