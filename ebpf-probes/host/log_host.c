/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Host build of the probes' aya-log record builder (common/log.h), built by
 * userspace-agent/build.rs into a static library that its unit tests call
 * (attach/probe_log/tests.rs): each shape below is one call site of the header, and the
 * record it builds goes to a buffer the tests decode with aya-log. */
#include <errno.h>
#include <string.h>
#include <linux/types.h>

#define HOST_RECORD_MAX 4096

static __u8 host_level;
static __u8 host_record[HOST_RECORD_MAX];
static __u32 host_reserved;
static int host_submitted;

static __u8 *host_reserve(__u32 size) {
    if (size > sizeof(host_record))
        return NULL;
    /* Slack past the record's own size must not matter: make it visible garbage. */
    memset(host_record, 0xa5, sizeof(host_record));
    host_reserved = size;
    return host_record;
}

static void host_submit(__u8 *rec) {
    host_submitted = rec == host_record;
}

/* bpf_probe_read_kernel_str: at most size - 1 bytes and a NUL, the count with the NUL;
 * on a fault (here: NULL) a negative errno and a zeroed buffer. */
static long host_read_str(void *dst, __u32 size, const char *src) {
    if (!src) {
        memset(dst, 0, size);
        return -EFAULT;
    }
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    ((char *)dst)[n] = 0;
    return (long)n + 1;
}

#define LOG_LEVEL_NOW host_level
#define LOG_RESERVE(size) host_reserve(size)
#define LOG_SUBMIT(rec) host_submit(rec)
#define LOG_READ_STR(dst, size, src) host_read_str((dst), (size), (src))
#include <common/log.h>

/* The values a shape logs (the tests fill it; layout mirrored in Rust). */
struct sonde_log_host_args {
    __u64 u64;
    __s64 i64;
    __u32 u32;
    __s32 i32;
    __u16 u16;
    __s16 i16;
    __u8 u8;
    __s8 i8;
    _Bool flag;
    __u8 ip4[4];
    __u8 ip6[16];
    __u8 _pad[3];
    const char *str;
};

enum {
    SHAPE_MESSAGE_ONLY,
    SHAPE_UNSIGNED,
    SHAPE_SIGNED,
    SHAPE_HEX,
    SHAPE_STRINGS,
    SHAPE_IPS,
    SHAPE_LARGEST,
    SHAPE_DEBUG_ONLY,
    SHAPE_COUNT,
};

#define LONGEST_MESSAGE                                                                            \
    "a message as long as a literal may be: one hundred and twenty bytes, which the compiler "     \
    "counts at build time............"

static void build(__u32 shape, const struct sonde_log_host_args *a) {
    switch (shape) {
    case SHAPE_MESSAGE_ONLY:
        log_info("message only");
        break;
    case SHAPE_UNSIGNED:
        log_debug("unsigned", LOG_NUM("u8", a->u8), LOG_NUM("u16", a->u16), LOG_NUM("u32", a->u32),
                  LOG_NUM("u64", a->u64));
        break;
    case SHAPE_SIGNED:
        log_warn("signed", LOG_NUM("i8", a->i8), LOG_NUM("i16", a->i16), LOG_NUM("i32", a->i32),
                 LOG_NUM("i64", a->i64));
        break;
    case SHAPE_HEX:
        log_trace("hex", LOG_HEX("x32", a->u32), LOG_HEX("x64", a->u64), LOG_HEX("xi64", a->i64),
                  LOG_NUM("flag", a->flag));
        break;
    case SHAPE_STRINGS:
        log_error("strings", LOG_STR("s16", a->str, 16), LOG_NUM("after", a->u32),
                  LOG_STR("s1", a->str, 1), LOG_STR("max", a->str, LOG_STR_MAX));
        break;
    case SHAPE_IPS:
        log_info("addresses", LOG_IP4("v4", a->ip4), LOG_IP6("v6", a->ip6));
        break;
    case SHAPE_LARGEST: {
        _Static_assert(sizeof(LONGEST_MESSAGE) - 1 == LOG_LIT_MAX, "longest message");
        log_trace(LONGEST_MESSAGE, LOG_STR("first", a->str, LOG_STR_MAX),
                  LOG_STR("second", a->str, LOG_STR_MAX), LOG_STR("third", a->str, LOG_STR_MAX),
                  LOG_STR("fourth", a->str, LOG_STR_MAX));
        break;
    }
    case SHAPE_DEBUG_ONLY:
        log_debug("debug only", LOG_NUM("u64", a->u64));
        break;
    }
}

/* Builds shape at level: returns the reserved size with the record copied to out, 0 when
 * the level let nothing through, -1 on a bad call. */
int sonde_log_host_build(__u32 shape, __u8 level, const struct sonde_log_host_args *args, __u8 *out,
                         __u32 cap) {
    if (shape >= SHAPE_COUNT || !args || !out)
        return -1;
    host_level = level;
    host_reserved = 0;
    host_submitted = 0;
    build(shape, args);
    if (!host_submitted)
        return 0;
    if (host_reserved > cap)
        return -1;
    memcpy(out, host_record, host_reserved);
    return (int)host_reserved;
}

/* How many shapes there are, and the largest record any of them can make. */
__u32 sonde_log_host_shapes(void) {
    return SHAPE_COUNT;
}
