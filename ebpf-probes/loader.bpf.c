/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The dynamic loader: a uprobe on ld.so's _dl_debug_state, the function the loader calls
 * for debuggers each time it changes a process's list of loaded libraries (before and
 * after dlopen maps one, after dlclose). A traced process's call wakes the agent at once
 * (SONDE_EV_LIBS), so a TLS library it just loaded is probed before its first TLS call:
 * Python loads libssl on `import ssl` and may call it a few milliseconds later.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde_abi.h"
#include <common/config.h>
#include <common/traced.h>
#include <maps/events.h>

SEC("uprobe")
int sonde_uprobe_dl_debug_state(struct pt_regs *ctx) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tgid = pid_tgid >> 32;
    if (empty_probes || !traced(&tgid))
        return 0;
    struct sonde_proc_event ev = {};
    ev.kind = SONDE_EV_LIBS;
    ev.tgid = tgid;
    ev.ts_ns = bpf_ktime_get_ns();
    if (bpf_ringbuf_output(&events, &ev, sizeof(ev), BPF_RB_FORCE_WAKEUP))
        count_drop(SONDE_DROP_RINGBUF_FULL);
    return 0;
}
