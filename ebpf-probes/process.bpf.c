/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Process lifecycle (sched tracepoints): follow forks of traced processes in the kernel,
 * hand the forking thread's trace context to the child, report exec and exit.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/traced.h>
#include <maps/events.h>
#include <maps/exec_scratch.h>
#include <maps/go_procs.h>
#include <maps/thread_ctxs.h>
#include <trace_ctx/thread_ctx.h>

static __always_inline void emit_proc_event(__u8 kind, __u32 tgid) {
    struct sonde_proc_event ev = {};
    ev.kind = kind;
    ev.tgid = tgid;
    ev.ts_ns = bpf_ktime_get_ns();
    if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0))
        count_drop(SONDE_DROP_RINGBUF_FULL);
}

SEC("tracepoint/sched/sched_process_fork")
int sonde_tp_sched_fork(struct trace_event_raw_sched_process_fork *ctx) {
    if (empty_probes)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    __u32 *flags = traced(&tgid);
    if (!flags)
        return 0;

    /* The child's id is a TGID when it is a process and a TID when it is a thread; the
     * extra entry of a thread is harmless and removed when the thread exits. */
    __u32 child = ctx->child_pid;
    __u32 value = *flags;
    bpf_map_update_elem(&traced_pids, &child, &value, BPF_ANY);

    /* The forking thread's own context (a Go runtime's new thread is not the work of the
     * goroutine that happens to run: goroutine contexts are not handed down here). */
    __u64 tid = (__u32)pid_tgid;
    struct thread_ctx *tc = thread_ctx_of(tid);
    if (tc)
        inherit_ctx((__u64)child, tc, SONDE_PARENT_FORK);
    return 0;
}

/* Copies [start, end) of the new image's memory (argv or envp) into dst, at most max. */
static __always_inline __u16 copy_user_range(__u8 *dst, __u64 start, __u64 end, __u32 max) {
    if (end <= start)
        return 0;
    __u64 n = end - start;
    if (n > max)
        n = max;
    if (n > SONDE_EXEC_DATA_MAX)
        n = SONDE_EXEC_DATA_MAX;
    if (bpf_probe_read_user(dst, n, (const void *)start))
        return 0;
    return n;
}

SEC("tracepoint/sched/sched_process_exec")
int sonde_tp_sched_exec(struct trace_event_raw_sched_process_exec *ctx) {
    if (empty_probes)
        return 0;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    /* A new program: whether it runs Go is the agent's to find out again. */
    bpf_map_delete_elem(&go_procs, &tgid);
    bool is_traced = traced(&tgid) != NULL;
    if (!watch_exec && !is_traced)
        return 0;

    __u32 zero = 0;
    struct sonde_exec_event *ev = bpf_map_lookup_elem(&exec_scratch, &zero);
    if (!ev)
        return 0;
    ev->kind = SONDE_EV_EXEC;
    ev->traced = is_traced;
    ev->tgid = tgid;
    ev->ts_ns = bpf_ktime_get_ns();

    /* __data_loc: the low 16 bits are the string's offset from the record start. */
    __u32 loc = ctx->__data_loc_filename;
    long n =
        bpf_probe_read_kernel_str(ev->data, SONDE_EXEC_FILENAME_MAX, (void *)ctx + (loc & 0xffff));
    ev->filename_len = n > 0 ? n - 1 : 0;

    struct mm_struct *mm = BPF_CORE_READ(bpf_get_current_task_btf(), mm);
    ev->args_len = copy_user_range(&ev->data[SONDE_EXEC_FILENAME_MAX], BPF_CORE_READ(mm, arg_start),
                                   BPF_CORE_READ(mm, arg_end), SONDE_EXEC_ARGS_MAX);
    ev->env_len = copy_user_range(&ev->data[SONDE_EXEC_FILENAME_MAX + SONDE_EXEC_ARGS_MAX],
                                  BPF_CORE_READ(mm, env_start), BPF_CORE_READ(mm, env_end),
                                  SONDE_EXEC_ENV_MAX);
    if (bpf_ringbuf_output(&events, ev, sizeof(*ev), 0))
        count_drop(SONDE_DROP_RINGBUF_FULL);
    return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int sonde_tp_sched_exit(void *ctx) {
    if (empty_probes)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    __u32 tid = (__u32)pid_tgid;
    /* The fork hook cannot tell threads from processes, so a thread of a traced process
     * has its own entry: drop it whatever happened to the process's entry, or its id,
     * once reused by an unrelated process, would make that process traced. */
    if (tid != tgid)
        bpf_map_delete_elem(&traced_pids, &tid);
    if (!traced(&tgid))
        return 0;

    __u64 thread_key = tid;
    bpf_map_delete_elem(&thread_ctxs, &thread_key);
    /* Only the last thread ends the process: the leader may exit first (pthread_exit
     * from main, exec from another thread). signal->live was decremented before this
     * tracepoint fired. */
    struct task_struct *task = bpf_get_current_task_btf();
    if (task->signal->live.counter > 0)
        return 0;
    bpf_map_delete_elem(&traced_pids, &tgid);
    bpf_map_delete_elem(&go_procs, &tgid);
    emit_proc_event(SONDE_EV_EXIT, tgid);
    return 0;
}
