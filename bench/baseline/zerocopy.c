// Zero-copy experiment for the raw byte view: the same relay as raw_relay.c (child stdout on a 1 MiB
// pipe -> one TCP client, served to `client raw`), with the copy strategy chosen by MODE:
//   rw        read(2) into a 1 MiB buffer + write(2)                     (2 copies; = raw_relay)
//   splice    splice(2) pipe -> socket                                    (pages moved, no user copy)
//   tee       tee(2) pipe -> pipe2, splice(2) pipe2 -> socket, read(2) pipe -> buffer: what a daemon
//             needs to send zero-copy AND keep the bytes (journal)
//   ring      read(2) into a memfd ring (64 MiB; ZC_RING=bytes) (mmap) + send(2) from the ring: tendd's path
//   sendfile  read(2) into the same memfd ring + sendfile(2) from the memfd: the ring's replay path
//   usage: zerocopy MODE PORT CHILD [ARGS...]
#include "common.h"
#include <sys/sendfile.h>

static size_t RING = 64u << 20;   // ZC_RING=bytes overrides
#define CHUNK (1u << 20)

static int send_all(int c, const char *p, size_t n) {
    while (n) { ssize_t w = write(c, p, n); if (w <= 0) return -1; p += w; n -= w; }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: zerocopy rw|splice|tee|ring|sendfile PORT CHILD [ARGS...]\n"); return 2; }
    const char *mode = argv[1];
    if (getenv("ZC_RING")) RING = strtoull(getenv("ZC_RING"), NULL, 10);
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(atoi(argv[2]));
    fcntl(lfd, F_SETFL, 0);
    char *buf = malloc(CHUNK), head[8192];
    int mfd = memfd_create("zc-ring", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, RING) < 0) die("memfd");
    char *ring = mmap(NULL, RING, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (ring == MAP_FAILED) die("mmap");
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        int got;
        if (read_head(c, head, sizeof head, &got) < 0) { close(c); continue; }
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
        (void)!write(c, h, sizeof h - 1);
        int p[2], q[2];
        if (pipe2(p, O_CLOEXEC) < 0 || pipe2(q, O_CLOEXEC) < 0) die("pipe");
        fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
        fcntl(q[0], F_SETPIPE_SZ, 1 << 20);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        struct spawn_plan plan = {argv + 3, devnull, p[1], devnull};
        int pidfd = -1;
        pid_t pid = spawn(&plan, &pidfd);
        close(p[1]); close(devnull); close(pidfd);
        uint64_t pos = 0;   // ring position (ring/sendfile modes)
        for (;;) {
            ssize_t n;
            if (!strcmp(mode, "rw")) {
                n = read(p[0], buf, CHUNK);
                if (n <= 0 || send_all(c, buf, n) < 0) break;
            } else if (!strcmp(mode, "splice")) {
                n = splice(p[0], NULL, c, NULL, CHUNK, SPLICE_F_MOVE | SPLICE_F_MORE);
                if (n <= 0) break;
            } else if (!strcmp(mode, "tee")) {
                n = tee(p[0], q[1], CHUNK, 0);
                if (n <= 0) break;
                for (ssize_t left = n; left > 0;) {
                    ssize_t s = splice(q[0], NULL, c, NULL, left, SPLICE_F_MOVE | SPLICE_F_MORE);
                    if (s <= 0) goto done;
                    left -= s;
                }
                for (ssize_t left = n; left > 0;) {   // consume the same bytes for the journal
                    ssize_t r = read(p[0], buf, left);
                    if (r <= 0) goto done;
                    left -= r;
                }
            } else {   // ring, sendfile
                size_t at = pos % RING, room = RING - at < CHUNK ? RING - at : CHUNK;
                n = read(p[0], ring + at, room);
                if (n <= 0) break;
                if (!strcmp(mode, "ring")) {
                    if (send_all(c, ring + at, n) < 0) break;
                } else {
                    off_t off = at;
                    for (ssize_t left = n; left > 0;) {
                        ssize_t s = sendfile(c, mfd, &off, left);
                        if (s <= 0) goto done;
                        left -= s;
                    }
                }
                pos += n;
            }
        }
    done:
        close(p[0]); close(q[0]); close(q[1]); close(c);
        waitpid(pid, NULL, 0);
    }
}
