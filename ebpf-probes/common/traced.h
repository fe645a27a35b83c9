/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The traced-process check every hook makes first. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <maps/traced_pids.h>

/* The traced_pids entry of process (or thread) *id, NULL when it is not traced: one hash
 * lookup, so an untraced process leaves a hook at once. Writable: the fork hook hands the
 * value down. The key by address, as the map helpers take it: a hook that later updates or
 * deletes the same key reuses its stack slot. */
static __always_inline __u32 *traced(const __u32 *id) {
    return bpf_map_lookup_elem(&traced_pids, id);
}
