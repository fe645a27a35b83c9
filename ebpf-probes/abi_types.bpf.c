/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Forces every ABI type into the object's BTF, so a Rust test can compare layouts. */
#include "vmlinux.h"
#include "sonde_abi.h"

struct sonde_data_event *__sonde_abi_data_event __attribute__((unused));
struct sonde_sock_state_event *__sonde_abi_sock_state_event __attribute__((unused));
struct sonde_exec_event *__sonde_abi_exec_event __attribute__((unused));
struct sonde_proc_event *__sonde_abi_proc_event __attribute__((unused));
struct sonde_sock_info *__sonde_abi_sock_info __attribute__((unused));
enum sonde_event_kind __sonde_abi_event_kind __attribute__((unused));
