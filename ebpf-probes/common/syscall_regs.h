/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The current task's syscall arguments, wherever a hook fires during the syscall. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* Syscall arguments as saved at syscall entry: still valid at sys_exit, which lets one
 * exit tracepoint per syscall do the work of an enter/exit pair. */
static __always_inline struct pt_regs *syscall_regs(void) {
    return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}
