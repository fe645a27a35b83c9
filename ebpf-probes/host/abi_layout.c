/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Host program run by userspace-agent/build.rs: prints the layout of every ABI struct as
 * Rust constants, which abi.rs checks against its mirrors at compile time. */
#include <linux/types.h>
#include <stddef.h>
#include <stdio.h>
#include "sonde_abi.h"

#define FIELD(t, f) printf("    (\"%s\", %zu),\n", #f, offsetof(struct t, f))

int main(void) {
    printf("pub const DATA_EVENT_SIZE: usize = %zu;\n", sizeof(struct sonde_data_event));
    printf("pub const DATA_HDR_SIZE: usize = %zu;\n", SONDE_DATA_HDR_SIZE);
    printf("pub const SOCK_STATE_EVENT_SIZE: usize = %zu;\n",
           sizeof(struct sonde_sock_state_event));
    printf("pub const EXEC_EVENT_SIZE: usize = %zu;\n", sizeof(struct sonde_exec_event));
    printf("pub const EXEC_FILENAME_MAX: usize = %d;\n", SONDE_EXEC_FILENAME_MAX);
    printf("pub const EXEC_ARGS_MAX: usize = %d;\n", SONDE_EXEC_ARGS_MAX);
    printf("pub const EXEC_ENV_MAX: usize = %d;\n", SONDE_EXEC_ENV_MAX);
    printf("pub const PROC_EVENT_SIZE: usize = %zu;\n", sizeof(struct sonde_proc_event));
    printf("pub const MAX_CAPTURE: usize = %d;\n", SONDE_MAX_CAPTURE);
    printf("pub const TAIL_BYTES: usize = %d;\n", SONDE_TAIL_BYTES);
    printf("pub const DATA_EVENT_OFFSETS: &[(&str, usize)] = &[\n");
    FIELD(sonde_data_event, kind);
    FIELD(sonde_data_event, direction);
    FIELD(sonde_data_event, syscall);
    FIELD(sonde_data_event, family);
    FIELD(sonde_data_event, ctx_role);
    FIELD(sonde_data_event, parent_source);
    FIELD(sonde_data_event, tail_len);
    FIELD(sonde_data_event, tgid);
    FIELD(sonde_data_event, tid);
    FIELD(sonde_data_event, ts_ns);
    FIELD(sonde_data_event, sock_id);
    FIELD(sonde_data_event, total_len);
    FIELD(sonde_data_event, captured_len);
    FIELD(sonde_data_event, local_port);
    FIELD(sonde_data_event, remote_port);
    FIELD(sonde_data_event, local_addr);
    FIELD(sonde_data_event, remote_addr);
    FIELD(sonde_data_event, ctx_format);
    FIELD(sonde_data_event, inject_status);
    FIELD(sonde_data_event, trace_flags);
    FIELD(sonde_data_event, source);
    FIELD(sonde_data_event, fd);
    FIELD(sonde_data_event, sent_bytes);
    FIELD(sonde_data_event, folded_bytes);
    FIELD(sonde_data_event, folded_ts_ns);
    FIELD(sonde_data_event, ctx);
    FIELD(sonde_data_event, tail);
    FIELD(sonde_data_event, data);
    printf("];\n");
    printf("pub const SOCK_STATE_EVENT_OFFSETS: &[(&str, usize)] = &[\n");
    FIELD(sonde_sock_state_event, kind);
    FIELD(sonde_sock_state_event, old_state);
    FIELD(sonde_sock_state_event, new_state);
    FIELD(sonde_sock_state_event, ts_ns);
    FIELD(sonde_sock_state_event, sock_id);
    FIELD(sonde_sock_state_event, folded_bytes);
    FIELD(sonde_sock_state_event, folded_ts_ns);
    printf("];\n");
    printf("pub const SOCK_INFO_SIZE: usize = %zu;\n", sizeof(struct sonde_sock_info));
    printf("pub const SOCK_INFO_OFFSETS: &[(&str, usize)] = &[\n");
    FIELD(sonde_sock_info, sk);
    FIELD(sonde_sock_info, family);
    FIELD(sonde_sock_info, tls);
    FIELD(sonde_sock_info, local_port);
    FIELD(sonde_sock_info, remote_port);
    FIELD(sonde_sock_info, local_addr);
    FIELD(sonde_sock_info, remote_addr);
    FIELD(sonde_sock_info, folded_bytes);
    FIELD(sonde_sock_info, folded_ts_ns);
    printf("];\n");
    printf("pub const GO_TLS_OFFSETS_SIZE: usize = %zu;\n", sizeof(struct go_tls_offsets));
    printf("pub const GO_TLS_OFFSETS_OFFSETS: &[(&str, usize)] = &[\n");
    FIELD(go_tls_offsets, tls_conn_conn);
    FIELD(go_tls_offsets, net_conn_fd);
    FIELD(go_tls_offsets, net_fd_pfd);
    FIELD(go_tls_offsets, poll_fd_sysfd);
    FIELD(go_tls_offsets, tcp_conn_type_hash);
    printf("];\n");
    printf("pub const EXEC_EVENT_OFFSETS: &[(&str, usize)] = &[\n");
    FIELD(sonde_exec_event, kind);
    FIELD(sonde_exec_event, traced);
    FIELD(sonde_exec_event, tgid);
    FIELD(sonde_exec_event, ts_ns);
    FIELD(sonde_exec_event, filename_len);
    FIELD(sonde_exec_event, args_len);
    FIELD(sonde_exec_event, env_len);
    FIELD(sonde_exec_event, data);
    printf("];\n");
    printf("pub const PROC_EVENT_OFFSETS: &[(&str, usize)] = &[\n");
    FIELD(sonde_proc_event, kind);
    FIELD(sonde_proc_event, tgid);
    FIELD(sonde_proc_event, ts_ns);
    printf("];\n");
    printf("pub const ENUMS: &[(&str, u32)] = &[\n");
#define ENUM(e) printf("    (\"%s\", %d),\n", #e, e)
    ENUM(SONDE_EV_DATA);
    ENUM(SONDE_EV_SOCK_STATE);
    ENUM(SONDE_EV_EXEC);
    ENUM(SONDE_EV_EXIT);
    ENUM(SONDE_EV_LIBS);
    ENUM(SONDE_DIR_INGRESS);
    ENUM(SONDE_DIR_EGRESS);
    ENUM(SONDE_CTX_NONE);
    ENUM(SONDE_CTX_SERVER_REQUEST);
    ENUM(SONDE_CTX_CLIENT_REQUEST);
    ENUM(SONDE_CTX_IN_SPAN);
    ENUM(SONDE_PARENT_NONE);
    ENUM(SONDE_PARENT_THREAD);
    ENUM(SONDE_PARENT_FORK);
    ENUM(SONDE_PARENT_HEADER);
    ENUM(SONDE_PARENT_TCP_OPTION);
    ENUM(SONDE_INJ_TCP_OPT_SENT);
    ENUM(SONDE_INJ_TCP_OPT_RECV);
    ENUM(SONDE_INJ_ARMED_LATE);
    ENUM(SONDE_FMT_NONE);
    ENUM(SONDE_FMT_W3C);
    ENUM(SONDE_FMT_B3);
    ENUM(SONDE_FMT_B3_MULTI);
    ENUM(SONDE_FMT_JAEGER);
    ENUM(SONDE_FMT_XRAY);
    ENUM(SONDE_INJ_ENROLLED);
    ENUM(SONDE_INJ_ENROL_FAILED);
    ENUM(SONDE_INJ_DONE);
    ENUM(SONDE_INJ_APP_HEADER);
    ENUM(SONDE_INJ_SKIPPED);
    ENUM(SONDE_INJ_FAILED);
    ENUM(SONDE_INJ_MAX);
    ENUM(SONDE_INJECT_NONE);
    ENUM(SONDE_INJECT_DONE);
    ENUM(SONDE_INJECT_APP_HEADER);
    ENUM(SONDE_INJECT_SKIPPED);
    ENUM(SONDE_INJECT_FAILED);
    ENUM(SONDE_DROP_RINGBUF_FULL);
    ENUM(SONDE_DROP_READ_FAULT);
    ENUM(SONDE_DROP_UNDECODED);
    ENUM(SONDE_DROP_TLS_CIPHERTEXT);
    ENUM(SONDE_DROP_TLS_UNMAPPED);
    ENUM(SONDE_SRC_SOCKET);
    ENUM(SONDE_SRC_OPENSSL);
    ENUM(SONDE_SRC_GO);
    ENUM(SONDE_SRC_GNUTLS);
    ENUM(SONDE_DROP_MAX);
    printf("];\n");
    return 0;
}
