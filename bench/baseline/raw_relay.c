// Baseline raw relay: for each connection (one at a time), answers the request head with a plain
// HTTP/1.1 200 (Connection: close), spawns the child with its stdout on a 1 MiB pipe, and relays
// with read(2) of up to 1 MiB + write(2) until EOF. The read/write kernel path, nothing else.
//   usage: raw_relay PORT CHILD [ARGS...]
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: raw_relay PORT CHILD [ARGS...]\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(atoi(argv[1]));
    fcntl(lfd, F_SETFL, 0);   // blocking accept
    char *buf = malloc(1 << 20), head[8192];
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        int got;
        if (read_head(c, head, sizeof head, &got) < 0) { close(c); continue; }
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
        (void)!write(c, h, sizeof h - 1);
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) die("pipe");
        fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        struct spawn_plan plan = {argv + 2, devnull, p[1], devnull};
        int pidfd = -1;
        pid_t pid = spawn(&plan, &pidfd);
        close(p[1]); close(devnull); close(pidfd);
        ssize_t n;
        while ((n = read(p[0], buf, 1 << 20)) > 0) {
            ssize_t off = 0;
            while (off < n) { ssize_t w = write(c, buf + off, n - off); if (w <= 0) break; off += w; }
            if (off < n) break;
        }
        close(p[0]); close(c);
        waitpid(pid, NULL, 0);
    }
}
