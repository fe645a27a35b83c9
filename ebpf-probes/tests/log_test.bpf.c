/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Test object for common/log.h, built by userspace-agent/build.rs and loaded by the root
 * tests of attach/probe_log.rs, which attach both programs as uprobes on functions of the
 * test binary itself:
 *   sonde_test_log_emit   a record built in the kernel by the header, from the probed
 *                         function's arguments
 *   sonde_test_log_relay  copies a record the host build of the header made (a user
 *                         buffer) into AYA_LOGS unchanged, so aya-log's own reader
 *                         decodes host-built records of every shape
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <common/log.h>

struct relay_buf {
    __u8 b[4096];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct relay_buf);
} relay_scratch SEC(".maps");

SEC("uprobe")
int sonde_test_log_emit(struct pt_regs *ctx) {
    __u64 a = PT_REGS_PARM1(ctx);
    __s32 b = PT_REGS_PARM2(ctx);
    __u64 c = PT_REGS_PARM3(ctx);
    log_info("probe log test", LOG_NUM("a", a), LOG_NUM("b", b), LOG_HEX("c", c),
             LOG_STR("comm", bpf_get_current_task_btf()->comm, 16));
    log_debug("probe log test at debug", LOG_NUM("a", a));
    return 0;
}

SEC("uprobe")
int sonde_test_log_relay(struct pt_regs *ctx) {
    const void *src = (const void *)PT_REGS_PARM1(ctx);
    __u64 len = PT_REGS_PARM2(ctx);
    __u32 zero = 0;
    struct relay_buf *buf = bpf_map_lookup_elem(&relay_scratch, &zero);
    if (!buf || len == 0 || len > sizeof(buf->b))
        return 0;
    if (bpf_probe_read_user(buf->b, len, src))
        return 0;
    bpf_ringbuf_output(&AYA_LOGS, buf->b, len, 0);
    return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
