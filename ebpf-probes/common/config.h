/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Settings fixed at load time (read-only globals: the verifier prunes what they turn off). */
#pragma once

#include "vmlinux.h"

/* Payload prefix copied per syscall, at most SONDE_MAX_CAPTURE. */
const volatile __u32 capture_bytes = 2048;
/* Report every exec on the host (needed to pick up processes matching --exe globs). */
const volatile bool watch_exec = false;
/* Benchmark floor: every program returns at once. */
const volatile bool empty_probes = false;
/* Injection is on: egress events report the socket's sent-byte count (re-enrolment). */
const volatile bool inject_enabled = false;
/* Below this many unread bytes, events do not wake userspace (it polls on a timer)... */
const volatile __u64 wakeup_bytes = 16 * 1024;
/* ...and then at most once per this many nanoseconds. The agent sets both
 * (--wakeup-bytes, --wakeup-gap-us); these are its defaults. */
const volatile __u64 wakeup_gap_ns = 50 * 1000;
/* Probes on TLS libraries may be attached: the socket hooks then skip ciphertext. */
const volatile bool tls_enabled = true;
