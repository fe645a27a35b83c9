// Microbenchmark for `cargo xtask bench`: HTTP-shaped write/read pairs on one loopback
// TCP connection inside one process (client write, server read, server write, client
// read: 4 data syscalls per "request"). Prints its pid, waits until GO_FILE exists (so
// the agent can attach first), then prints "<ns> ns per request".
//
// usage: syscall_loop ITERATIONS GO_FILE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void one_request(int c, int s, char *buf, size_t len)
{
    static const char req[] = "GET /index.html HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n";
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    if (write(c, req, sizeof req - 1) < 0 || read(s, buf, len) < 0 ||
        write(s, resp, sizeof resp - 1) < 0 || read(c, buf, len) < 0) {
        perror("syscall_loop");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ITERATIONS GO_FILE\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) {
        perror("listen");
        return 1;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (void *)&a, sizeof a)) {
        perror("connect");
        return 1;
    }
    int s = accept(l, 0, 0);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    printf("%d\n", getpid());
    fflush(stdout);
    while (access(argv[2], F_OK))
        usleep(10000);

    char buf[4096];
    for (int i = 0; i < 2000; i++)
        one_request(c, s, buf, sizeof buf);
    double t0 = now_ns();
    for (int i = 0; i < n; i++)
        one_request(c, s, buf, sizeof buf);
    printf("%.0f ns per request\n", (now_ns() - t0) / n);
    return 0;
}
