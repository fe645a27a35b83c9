/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Probe diagnostics as aya-log records, read in userspace by aya-log's own EbpfLogger
 * (aya-log has no C side: aya issue 798). The format is aya-log-common 0.2.0's, as
 * aya-log 0.3.0 parses it (aya commit 302985c: aya-log-common/src/lib.rs Header, Field;
 * aya-log/src/lib.rs log_buf, try_read), every number native-endian:
 *
 *   u16 size                 of the whole record, this field included
 *   6 header fields          u8 RecordFieldKind, u16 length, value: Target (str), Level (u8),
 *                            Module (str), File (str), Line (u32), NumArgs (u32)
 *   NumArgs arguments        u8 ArgumentKind, u16 length, value
 *
 * A call is a message (a string literal) and up to LOG_MAX_FIELDS key=value fields:
 *
 *   log_debug("payload unreadable", LOG_NUM("tgid", tgid), LOG_HEX("sock", sk));
 *
 * -> "payload unreadable tgid=42 sock=1f". Each field is three arguments, as aya-log-ebpf
 * writes a "{}" parameter: Str " key=", DisplayHint, the value. Values are scalars: the
 * verifier refuses a kernel pointer cast to an integer (its bytes would be pointer
 * arithmetic).
 *
 * Only well-formed records can be built: every tag comes from the C type of its value
 * (LOG_NUM on a type it does not know, a key that is not a string literal, or a fifth
 * field does not compile), every length is a sizeof() or a bounded string read, and the
 * record's largest size is a compile-time constant, reserved, filled and submitted whole.
 * This matters: aya-log unwraps its parse (EbpfLogger::flush panics on a malformed
 * record) and reads the Level and DisplayHint bytes as Rust enums, so only the enum
 * values below are ever written. Strings read from the kernel have every byte outside
 * printable ASCII replaced by '?' (aya-log drops a piece that is not UTF-8).
 *
 * Cost: AYA_LOG_LEVEL is set at load time (sonde --probe-log, off by default) and frozen,
 * so a disabled call is one load and one compare, and the verifier skips its body. Keep
 * calls out of loops and bpf_loop callbacks: an enabled call is about two instructions
 * per byte of its record.
 *
 * Plain C: also built for the host (host/log_host.c), where unit tests decode records of
 * every shape with aya-log itself. The includer there provides the LOG_* platform hooks.
 */
#pragma once

#ifdef __bpf__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <maps/aya_logs.h>
#else
#include <linux/types.h>
#include <stdbool.h>
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#endif
#include <common/swar.h>

/* aya_log_common::Level; AYA_LOG_LEVEL lets through the levels up to its value. */
enum sonde_log_level {
    SONDE_LOG_OFF = 0,
    SONDE_LOG_ERROR = 1,
    SONDE_LOG_WARN = 2,
    SONDE_LOG_INFO = 3,
    SONDE_LOG_DEBUG = 4,
    SONDE_LOG_TRACE = 5,
};

#ifdef __bpf__
/* The name aya-log gives its level global (aya_log::LEVEL); set by the loader. */
const volatile __u8 AYA_LOG_LEVEL = SONDE_LOG_OFF;
#define LOG_LEVEL_NOW AYA_LOG_LEVEL
#define LOG_RESERVE(size) ((__u8 *)bpf_ringbuf_reserve(&AYA_LOGS, (size), 0))
#define LOG_SUBMIT(rec) bpf_ringbuf_submit((rec), 0)
#define LOG_READ_STR(dst, size, src) bpf_probe_read_kernel_str((dst), (size), (src))
#endif

/* aya_log_common::RecordFieldKind */
enum {
    LOG_FIELD_TARGET = 0,
    LOG_FIELD_LEVEL = 1,
    LOG_FIELD_MODULE = 2,
    LOG_FIELD_FILE = 3,
    LOG_FIELD_LINE = 4,
    LOG_FIELD_NUM_ARGS = 5,
};

/* aya_log_common::ArgumentKind (the ones written here) */
enum {
    LOG_ARG_DISPLAY_HINT = 0,
    LOG_ARG_I8 = 1,
    LOG_ARG_I16 = 2,
    LOG_ARG_I32 = 3,
    LOG_ARG_I64 = 4,
    LOG_ARG_U8 = 6,
    LOG_ARG_U16 = 7,
    LOG_ARG_U32 = 8,
    LOG_ARG_U64 = 9,
    LOG_ARG_IPV4 = 13,
    LOG_ARG_IPV6 = 14,
    LOG_ARG_STR = 20,
    LOG_ARG_UNSUPPORTED = 0xff, /* never written: LOG_NUM refuses to compile */
};

/* aya_log_common::DisplayHint (the ones written here) */
enum {
    LOG_HINT_DEFAULT = 1,
    LOG_HINT_LOWER_HEX = 2,
    LOG_HINT_IP = 4,
};

/* Records carry this target (and module): `sonde --probe-log` lifts it in the agent's log. */
#define LOG_TARGET "sonde::probe"
#ifdef __FILE_NAME__
#define LOG_FILE __FILE_NAME__
#else
#define LOG_FILE __FILE__
#endif

#define LOG_MAX_FIELDS 4
/* Longest string value (LOG_STR's max), and longest literal: clang expands a copy of a
 * literal into one store per byte, and refuses past 128. */
#define LOG_STR_MAX 64
#define LOG_LIT_MAX 120
/* Largest record: well under the ring's 128 KiB and aya-log-ebpf's own 8 KiB cap. */
#define LOG_RECORD_MAX 1024

_Static_assert(sizeof(long) == 8 && sizeof(long long) == 8, "64-bit longs");

/* ===== writing fields ===== */

static __always_inline void log_put16(__u8 *p, __u16 v) {
    __builtin_memcpy(p, &v, sizeof(v));
}

static __always_inline __u32 log_tag(__u8 *r, __u32 o, __u8 kind, __u16 len) {
    r[o] = kind;
    log_put16(r + o + 1, len);
    return o + 3;
}

/* A string literal (n: its length, a constant after inlining). */
static __always_inline __u32 log_lit(__u8 *r, __u32 o, __u8 kind, const char *s, __u16 n) {
    o = log_tag(r, o, kind, n);
    __builtin_memcpy(r + o, s, n);
    return o + n;
}

static __always_inline __u32 log_u32_field(__u8 *r, __u32 o, __u8 kind, __u32 v) {
    o = log_tag(r, o, kind, sizeof(v));
    __builtin_memcpy(r + o, &v, sizeof(v));
    return o + sizeof(v);
}

static __always_inline __u32 log_hint(__u8 *r, __u32 o, __u8 hint) {
    o = log_tag(r, o, LOG_ARG_DISPLAY_HINT, 1);
    r[o] = hint;
    return o + 1;
}

/* The six header fields, after the size (written last, once the length is known). */
static __always_inline __u32 log_header(__u8 *r, __u8 level, const char *file, __u16 file_len,
                                        __u32 line, __u32 num_args) {
    __u32 o = 2;
    o = log_lit(r, o, LOG_FIELD_TARGET, LOG_TARGET, sizeof(LOG_TARGET) - 1);
    o = log_tag(r, o, LOG_FIELD_LEVEL, 1);
    r[o++] = level;
    o = log_lit(r, o, LOG_FIELD_MODULE, LOG_TARGET, sizeof(LOG_TARGET) - 1);
    o = log_lit(r, o, LOG_FIELD_FILE, file, file_len);
    o = log_u32_field(r, o, LOG_FIELD_LINE, line);
    return log_u32_field(r, o, LOG_FIELD_NUM_ARGS, num_args);
}

#define LOG_HEADER_SIZE(file)                                                                      \
    (2 + 3 + (sizeof(LOG_TARGET) - 1) + 3 + 1 + 3 + (sizeof(LOG_TARGET) - 1) + 3 +                 \
     (sizeof(file) - 1) + 3 + 4 + 3 + 4)

/* A kernel string of at most max bytes, with every byte outside printable ASCII made '?'.
 * Read into an aligned buffer first: eight bytes per step, no branch per byte (swar.h).
 * Up to max bytes land at r + o (the rest of them is overwritten by the next field or lies
 * past the record's size); the field says how many count. */
#define LOG_STR_BUF(max) ((((max) + 1) + 7) / 8)
#ifdef __clang__
#define LOG_UNROLL _Pragma("unroll")
#else
#define LOG_UNROLL _Pragma("GCC unroll 16")
#endif
static __always_inline void log_sanitize(__u64 *w, __u32 words) {
    LOG_UNROLL
    for (__u32 i = 0; i < LOG_STR_BUF(LOG_STR_MAX); i++) {
        if (i >= words)
            break;
        __u64 bad = (w[i] & SWAR_80) | swar_in(w[i], 0x00, 0x1f) | swar_eq(w[i], 0x7f);
        __u64 mask = (bad >> 7) * 0xff;
        w[i] = (w[i] & ~mask) | (mask & ('?' * SWAR_01));
    }
}

/* ===== the fields a call can carry: (kind, key, value, extra) ===== */

/* An integer of any fixed-width type (bool, char types excluded but signed/unsigned char,
 * short, int, long, long long), in decimal. */
#define LOG_NUM(key, v) (NUM, key, v, LOG_HINT_DEFAULT)
/* The same in lower-case hex (no 0x). */
#define LOG_HEX(key, v) (NUM, key, v, LOG_HINT_LOWER_HEX)
/* A NUL-terminated string in kernel (or BPF) memory, at most max bytes of it (max: a
 * constant up to LOG_STR_MAX). */
#define LOG_STR(key, s, max) (STR, key, s, max)
/* An address as __u8[4] / __u8[16] in network order (struct sonde_sock_info's). */
#define LOG_IP4(key, a) (IP4, key, a, 4)
#define LOG_IP6(key, a) (IP6, key, a, 16)

#define LOG_KIND_OF(v)                                                                             \
    _Generic((v),                                                                                  \
        _Bool: LOG_ARG_U8,                                                                         \
        unsigned char: LOG_ARG_U8,                                                                 \
        signed char: LOG_ARG_I8,                                                                   \
        unsigned short: LOG_ARG_U16,                                                               \
        short: LOG_ARG_I16,                                                                        \
        unsigned int: LOG_ARG_U32,                                                                 \
        int: LOG_ARG_I32,                                                                          \
        unsigned long: LOG_ARG_U64,                                                                \
        long: LOG_ARG_I64,                                                                         \
        unsigned long long: LOG_ARG_U64,                                                           \
        long long: LOG_ARG_I64,                                                                    \
        default: LOG_ARG_UNSUPPORTED)

/* " key=": the key must be a string literal. */
#define LOG_KEY(key) " " key "="
#define LOG_KEY_SIZE(key) (3 + sizeof(LOG_KEY(key)) - 1)
#define LOG_HINT_SIZE 4

#define LOG_SIZE_NUM(key, v, x) (LOG_KEY_SIZE(key) + LOG_HINT_SIZE + 3 + sizeof(v))
#define LOG_SIZE_STR(key, s, max) (LOG_KEY_SIZE(key) + LOG_HINT_SIZE + 3 + (max))
#define LOG_SIZE_IP4(key, a, n) (LOG_KEY_SIZE(key) + LOG_HINT_SIZE + 3 + (n))
#define LOG_SIZE_IP6(key, a, n) (LOG_KEY_SIZE(key) + LOG_HINT_SIZE + 3 + (n))

#define LOG_WRITE_KEY(key)                                                                         \
    _Static_assert(sizeof(LOG_KEY(key)) - 1 <= LOG_LIT_MAX, "log key too long");                   \
    _o = log_lit(_r, _o, LOG_ARG_STR, LOG_KEY(key), sizeof(LOG_KEY(key)) - 1);

#define LOG_WRITE_NUM(key, v, hint)                                                                \
    {                                                                                              \
        _Static_assert(LOG_KIND_OF(v) != LOG_ARG_UNSUPPORTED,                                      \
                       "LOG_NUM/LOG_HEX take fixed-width integers (cast it)");                     \
        __typeof__(v) _v = (v);                                                                    \
        LOG_WRITE_KEY(key)                                                                         \
        _o = log_hint(_r, _o, hint);                                                               \
        _o = log_tag(_r, _o, LOG_KIND_OF(_v), sizeof(_v));                                         \
        __builtin_memcpy(_r + _o, &_v, sizeof(_v));                                                \
        _o += sizeof(_v);                                                                          \
    }

#define LOG_WRITE_STR(key, s, max)                                                                 \
    {                                                                                              \
        _Static_assert((max) > 0 && (max) <= LOG_STR_MAX, "LOG_STR max: 1 to LOG_STR_MAX");        \
        /* Zeroed: no stale stack byte reaches the record's slack. */                              \
        __u64 _w[LOG_STR_BUF(max)] = {};                                                           \
        long _n = LOG_READ_STR(_w, (max) + 1, (s));                                                \
        /* Bytes copied with the NUL; none on a fault. */                                          \
        _n = _n > 0 ? _n - 1 : 0;                                                                  \
        if (_n > (max))                                                                            \
            _n = (max);                                                                            \
        log_sanitize(_w, LOG_STR_BUF(max));                                                        \
        LOG_WRITE_KEY(key)                                                                         \
        _o = log_hint(_r, _o, LOG_HINT_DEFAULT);                                                   \
        _o = log_tag(_r, _o, LOG_ARG_STR, _n);                                                     \
        __builtin_memcpy(_r + _o, _w, (max));                                                      \
        _o += _n;                                                                                  \
    }

#define LOG_WRITE_IP(key, a, n, kind)                                                              \
    {                                                                                              \
        _Static_assert(_Generic(&(a), __u8(*)[n]: 1, const __u8(*)[n]: 1, default: 0),             \
                       "LOG_IP4/6 take __u8[4]/[16]");                                             \
        LOG_WRITE_KEY(key)                                                                         \
        _o = log_hint(_r, _o, LOG_HINT_IP);                                                        \
        _o = log_tag(_r, _o, kind, n);                                                             \
        __builtin_memcpy(_r + _o, (a), n);                                                         \
        _o += n;                                                                                   \
    }
#define LOG_WRITE_IP4(key, a, n) LOG_WRITE_IP(key, a, n, LOG_ARG_IPV4)
#define LOG_WRITE_IP6(key, a, n) LOG_WRITE_IP(key, a, n, LOG_ARG_IPV6)

/* ===== applying a step to each field ===== */

#define LOG_CAT(a, b) LOG_CAT_(a, b)
#define LOG_CAT_(a, b) a##b
#define LOG_CALL(m, args) m args
#define LOG_PLUS_SIZE(kind, key, v, x) +LOG_SIZE_##kind(key, v, x)
#define LOG_WRITE(kind, key, v, x) LOG_WRITE_##kind(key, v, x)
/* How many fields (0 to LOG_MAX_FIELDS; more expands to something that does not compile). */
#define LOG_NFIELDS(...) LOG_NFIELDS_(_, ##__VA_ARGS__, 4, 3, 2, 1, 0)
#define LOG_NFIELDS_(_, a, b, c, d, n, ...) n
#define LOG_EACH(m, ...) LOG_CAT(LOG_EACH_, LOG_NFIELDS(__VA_ARGS__))(m, ##__VA_ARGS__)
#define LOG_EACH_0(m)
#define LOG_EACH_1(m, a) LOG_CALL(m, a)
#define LOG_EACH_2(m, a, b) LOG_CALL(m, a) LOG_CALL(m, b)
#define LOG_EACH_3(m, a, b, c) LOG_CALL(m, a) LOG_CALL(m, b) LOG_CALL(m, c)
#define LOG_EACH_4(m, a, b, c, d) LOG_CALL(m, a) LOG_CALL(m, b) LOG_CALL(m, c) LOG_CALL(m, d)

/* ===== the calls ===== */

/* One record at level (a constant), when the level lets it through. */
#define sonde_log(level, msg, ...)                                                                 \
    do {                                                                                           \
        _Static_assert((level) >= SONDE_LOG_ERROR && (level) <= SONDE_LOG_TRACE, "log level");     \
        _Static_assert(sizeof(msg) - 1 <= LOG_LIT_MAX, "log message too long");                    \
        if (__builtin_expect(LOG_LEVEL_NOW >= (level), 0)) {                                       \
            enum {                                                                                 \
                _size = LOG_HEADER_SIZE(LOG_FILE) + 3 + sizeof(msg) - 1 +                          \
                        (0 LOG_EACH(LOG_PLUS_SIZE, ##__VA_ARGS__)),                                \
            };                                                                                     \
            _Static_assert(_size <= LOG_RECORD_MAX, "log record too large");                       \
            __u8 *_r = LOG_RESERVE(_size);                                                         \
            if (_r) {                                                                              \
                __u32 _o = log_header(_r, (level), LOG_FILE, sizeof(LOG_FILE) - 1, __LINE__,       \
                                      1 + 3 * LOG_NFIELDS(__VA_ARGS__));                           \
                _o = log_lit(_r, _o, LOG_ARG_STR, msg, sizeof(msg) - 1);                           \
                LOG_EACH(LOG_WRITE, ##__VA_ARGS__)                                                 \
                log_put16(_r, _o);                                                                 \
                LOG_SUBMIT(_r);                                                                    \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define log_error(msg, ...) sonde_log(SONDE_LOG_ERROR, msg, ##__VA_ARGS__)
#define log_warn(msg, ...) sonde_log(SONDE_LOG_WARN, msg, ##__VA_ARGS__)
#define log_info(msg, ...) sonde_log(SONDE_LOG_INFO, msg, ##__VA_ARGS__)
#define log_debug(msg, ...) sonde_log(SONDE_LOG_DEBUG, msg, ##__VA_ARGS__)
#define log_trace(msg, ...) sonde_log(SONDE_LOG_TRACE, msg, ##__VA_ARGS__)
