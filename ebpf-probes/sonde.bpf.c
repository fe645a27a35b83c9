/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The probe object the agent loads: one compilation unit made of one file per hook
 * family, so every family shares one set of maps. Program (SEC) and map names are what
 * userspace-agent/src/attach/ finds them by.
 *
 * Layout (includes are rooted here: <common/...>, <maps/...>):
 *   *.bpf.c        hook families: thin entry points over the handlers below
 *   include/       sonde_abi.h, the kernel <-> agent contract; vmlinux.h (generated)
 *   common/        helpers with no feature of their own: load-time settings, the
 *                  traced-process check, saved syscall registers, TCP socket reading,
 *                  SWAR byte tricks, aya-log records
 *   maps/          one header per map or concern: what it tracks, key/value, why its type
 *   protocols/     what the kernel must recognise of a protocol (HTTP/1 message starts)
 *   socket_data/   the one handler for socket data, and its parts (syscall shapes,
 *                  payload capture, socket lookup, submission to the ring)
 *   trace_ctx/     trace-context decisions, IDs, thread contexts, the header parser
 *   inject/        what the sk_msg program inserts (the traceparent line)
 *   tls/           TLS libraries: the socket hooks' side (skip ciphertext, find the
 *                  connection) and the plaintext a library call reports
 *   host/          host builds for userspace-agent's build.rs and unit tests
 *   tests/         BPF objects only userspace-agent's tests load (log_test.bpf.c)
 */
#include "syscalls.bpf.c"
#include "socket_layer.bpf.c"
#include "process.bpf.c"
#include "sockstate.bpf.c"
#include "inject.bpf.c"
#include "tls_openssl.bpf.c"
#include "tls_go.bpf.c"
#include "go_runtime.bpf.c"
#include "tls_gnutls.bpf.c"
#include "loader.bpf.c"
#include "abi_types.bpf.c"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
