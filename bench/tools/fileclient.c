// Measuring client for the files benchmark (the same client measures tendd and the baseline).
//   fileclient get PORT TOKEN PATH        download, discard, {"bytes":N,"secs":S}
//   fileclient put PORT TOKEN PATH SRC    upload SRC with a Content-Length (sendfile), {"bytes":N,"secs":S,"status":C}
//   fileclient lat PORT TOKEN N           N sequential GET /api/v1/health on one keep-alive connection:
//                                         {"p50_us":…,"p99_us":…,"max_us":…}
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *m) { perror(m); exit(1); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (void *)&a, sizeof a) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n) { ssize_t w = write(fd, p, n); if (w <= 0) die("write"); p += w; n -= w; }
}

// Reads a response head into buf; returns head length; *got total bytes read; *status, *clen.
static int read_resp_head(int fd, char *buf, int cap, int *got, int *status, long long *clen) {
    int n = 0;
    for (;;) {
        char *e = n >= 4 ? memmem(buf, n, "\r\n\r\n", 4) : NULL;
        if (e) {
            *got = n;
            *status = atoi(buf + 9);
            char save = e[2]; e[2] = 0;
            char *cl = strcasestr(buf, "content-length:");
            *clen = cl ? atoll(cl + 15) : 0;
            e[2] = save;
            return (int)(e - buf) + 4;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r <= 0) die("read head");
        n += r;
    }
}

int cmp_double(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: fileclient get|put|lat PORT TOKEN ...\n"); return 2; }
    int port = atoi(argv[2]);
    const char *tok = argv[3];
    static char buf[1 << 20], req[8192];
    int got, status; long long clen;
    if (!strcmp(argv[1], "get")) {
        int fd = dial(port);
        int rcv = 4 << 20; setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
        double t0 = now();
        int n = snprintf(req, sizeof req, "GET /api/v1/files?path=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", argv[4], tok);
        send_all(fd, req, n);
        int hl = read_resp_head(fd, buf, sizeof buf, &got, &status, &clen);
        if (status != 200) { fprintf(stderr, "status %d\n", status); return 1; }
        long long have = got - hl;
        while (have < clen) { ssize_t r = read(fd, buf, sizeof buf); if (r <= 0) die("read body"); have += r; }
        printf("{\"bytes\":%lld,\"secs\":%.6f}\n", have, now() - t0);
    } else if (!strcmp(argv[1], "put")) {
        if (argc < 6) return 2;
        int src = open(argv[5], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (src < 0 || fstat(src, &st) < 0) die("src");
        int fd = dial(port);
        int snd = 4 << 20; setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
        double t0 = now();
        int n = snprintf(req, sizeof req, "PUT /api/v1/files?path=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %lld\r\n\r\n",
                         argv[4], tok, (long long)st.st_size);
        send_all(fd, req, n);
        off_t off = 0;
        while (off < st.st_size) { ssize_t w = sendfile(fd, src, &off, st.st_size - off); if (w <= 0) die("sendfile"); }
        read_resp_head(fd, buf, sizeof buf, &got, &status, &clen);
        double secs = now() - t0;
        printf("{\"bytes\":%lld,\"secs\":%.6f,\"status\":%d}\n", (long long)st.st_size, secs, status);
        return status == 204 ? 0 : 1;
    } else if (!strcmp(argv[1], "lat")) {
        int count = atoi(argv[4]);
        double *lat = calloc(count, sizeof *lat);
        int fd = dial(port);
        int n = snprintf(req, sizeof req, "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", tok);
        for (int i = 0; i < count; i++) {
            double t0 = now();
            send_all(fd, req, n);
            int hl = read_resp_head(fd, buf, sizeof buf, &got, &status, &clen);
            long long have = got - hl;
            while (have < clen) { ssize_t r = read(fd, buf, sizeof buf); if (r <= 0) die("read"); have += r; }
            lat[i] = (now() - t0) * 1e6;
            if (status != 200) { fprintf(stderr, "status %d\n", status); return 1; }
        }
        qsort(lat, count, sizeof *lat, cmp_double);
        printf("{\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n", lat[count / 2], lat[(int)(count * 0.99)], lat[count - 1]);
    } else return 2;
    return 0;
}
