// FIONREAD on a sockhash-enrolled TCP socket: sk_msg only, and sk_msg + a stream verdict
// program that passes everything. Usage: ./fionread [verdict]
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int verdict = argc > 1;
    struct bpf_object *obj = bpf_object__open_file("prog.o", NULL);
    if (!obj || bpf_object__load(obj)) { perror("load"); return 1; }
    int map = bpf_object__find_map_fd_by_name(obj, "socks");
    int msg = bpf_program__fd(bpf_object__find_program_by_name(obj, "msg_pass"));
    int vrd = bpf_program__fd(bpf_object__find_program_by_name(obj, "verdict_pass"));
    if (bpf_prog_attach(msg, map, BPF_SK_MSG_VERDICT, 0)) { perror("attach msg"); return 1; }
    if (verdict && bpf_prog_attach(vrd, map, BPF_SK_SKB_STREAM_VERDICT, 0)) { perror("attach verdict"); return 1; }
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (void *)&a, sizeof a); listen(l, 1);
    socklen_t al = sizeof a; getsockname(l, (void *)&a, &al);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a)) { perror("connect"); return 1; }
    int s = accept(l, NULL, NULL);
    __u64 key = 1; __u64 fd = c;
    if (bpf_map_update_elem(map, &key, &fd, BPF_ANY)) { perror("enrol"); return 1; }
    for (int round = 0; round < 3; round++) {
        char req[] = "GET / HTTP/1.1\r\n\r\n";
        write(c, req, sizeof req - 1);
        char buf[200000]; int got = read(s, buf, sizeof buf);
        int n = 100000; memset(buf, 'x', n);
        int sent = 0; while (sent < n) { int w = write(s, buf + sent, n - sent); if (w <= 0) break; sent += w; }
        usleep(50000);
        int inq = -1; ioctl(c, FIONREAD, &inq);
        int r = 0, total = 0; while (total < n && (r = recv(c, buf, sizeof buf, MSG_DONTWAIT)) > 0) total += r;
        int inq_after = -1; ioctl(c, FIONREAD, &inq_after);
        printf("%s round %d: server got %d, sent %d; client FIONREAD %d, recv %d, FIONREAD after %d\n",
               verdict ? "sk_msg+verdict" : "sk_msg only", round, got, sent, inq, total, inq_after);
    }
    return 0;
}
