/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Process lifecycle (sched tracepoints): follow forks of traced processes in the kernel,
 * hand the forking thread's trace context to the child, report exec and exit.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include "common/config.h"
#include "maps/maps.h"

static __always_inline void emit_proc_event(__u8 kind, __u32 tgid)
{
    struct sonde_proc_event ev = {};
    ev.kind = kind;
    ev.tgid = tgid;
    ev.ts_ns = bpf_ktime_get_ns();
    if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0))
        count_drop(SONDE_DROP_RINGBUF_FULL);
}

SEC("tracepoint/sched/sched_process_fork")
int sonde_tp_sched_fork(struct trace_event_raw_sched_process_fork *ctx)
{
    if (empty_probes)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    __u32 *flags = bpf_map_lookup_elem(&traced_pids, &tgid);
    if (!flags)
        return 0;

    /* The child's id is a TGID when it is a process and a TID when it is a thread; the
     * extra entry of a thread is harmless and removed when the thread exits. */
    __u32 child = ctx->child_pid;
    __u32 value = *flags;
    bpf_map_update_elem(&traced_pids, &child, &value, BPF_ANY);

    __u32 tid = (__u32)pid_tgid;
    struct thread_ctx *tc = bpf_map_lookup_elem(&thread_ctxs, &tid);
    if (tc) {
        struct thread_ctx inherited = *tc;
        inherited.source = SONDE_PARENT_FORK;
        bpf_map_update_elem(&thread_ctxs, &child, &inherited, BPF_ANY);
    }
    return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int sonde_tp_sched_exec(struct trace_event_raw_sched_process_exec *ctx)
{
    if (empty_probes)
        return 0;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (watch_exec || bpf_map_lookup_elem(&traced_pids, &tgid))
        emit_proc_event(SONDE_EV_EXEC, tgid);
    return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int sonde_tp_sched_exit(void *ctx)
{
    if (empty_probes)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    __u32 tid = (__u32)pid_tgid;
    if (!bpf_map_lookup_elem(&traced_pids, &tgid))
        return 0;

    bpf_map_delete_elem(&thread_ctxs, &tid);
    if (tid != tgid) {
        bpf_map_delete_elem(&traced_pids, &tid);
        return 0;
    }
    /* The leader exiting ends the process as far as tracing goes; remaining threads
     * finish without new spans. */
    bpf_map_delete_elem(&traced_pids, &tgid);
    emit_proc_event(SONDE_EV_EXIT, tgid);
    return 0;
}
