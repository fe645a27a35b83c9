/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The probe object the agent loads: one compilation unit made of one file per hook
 * family, so every family shares the maps in maps/maps.h.
 */
#include "syscalls.bpf.c"
#include "socket_layer.bpf.c"
#include "process.bpf.c"
#include "sockstate.bpf.c"
#include "inject.bpf.c"
#include "abi_types.bpf.c"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
