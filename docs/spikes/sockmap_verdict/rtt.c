// Round trips (18-byte request, 1 KiB or 64 KiB response) on a TCP socket: not enrolled,
// enrolled with sk_msg only, enrolled with sk_msg + a passing stream verdict program.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    int mode = atoi(argv[1]); int size = atoi(argv[2]); int n = 20000;
    struct bpf_object *obj = bpf_object__open_file("prog.o", NULL);
    bpf_object__load(obj);
    int map = bpf_object__find_map_fd_by_name(obj, "socks");
    if (mode >= 1) bpf_prog_attach(bpf_program__fd(bpf_object__find_program_by_name(obj, "msg_pass")), map, BPF_SK_MSG_VERDICT, 0);
    if (mode >= 2) bpf_prog_attach(bpf_program__fd(bpf_object__find_program_by_name(obj, "verdict_pass")), map, BPF_SK_SKB_STREAM_VERDICT, 0);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (void *)&a, sizeof a); listen(l, 1); socklen_t al = sizeof a; getsockname(l, (void *)&a, &al);
    int c = socket(AF_INET, SOCK_STREAM, 0); connect(c, (void *)&a, sizeof a); int s = accept(l, NULL, NULL);
    if (mode >= 1) { __u64 key = 1, fd = c; bpf_map_update_elem(map, &key, &fd, BPF_ANY); }
    if (fork() == 0) { char b[65536 + 64]; char *resp = malloc(size); memset(resp, 'x', size);
        for (;;) { if (read(s, b, 64) <= 0) exit(0); int sent = 0; while (sent < size) sent += write(s, resp + sent, size - sent); } }
    char *buf = malloc(size); double t0 = now();
    for (int i = 0; i < n; i++) { write(c, "GET / HTTP/1.1\r\n\r\n", 18); int got = 0; while (got < size) { int r = read(c, buf, size - got); if (r <= 0) { printf("read %d\n", r); return 1; } got += r; } }
    double dt = now() - t0;
    printf("mode %d (%s), %d-byte responses: %.1f us per round trip\n", mode, mode == 0 ? "not enrolled" : mode == 1 ? "sk_msg" : "sk_msg+verdict", size, dt / n * 1e6);
    close(c); return 0;
}
