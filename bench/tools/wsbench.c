// The measuring client (and a byte source) for the interactive benchmarks; prints one JSON line.
//   wsbench source PORT BYTES                    server: each connection gets BYTES bytes, then EOF
//   wsbench pty-lat PORT TOKEN COUNT             tendd: POST /api/v1/pty {cat}, WebSocket, READY, then COUNT
//                                                keystrokes: send 1 byte, wait for its echo; p50/p99 in µs
//   wsbench tcp-lat PORT COUNT                   baseline: the same over a raw TCP pty relay
//   wsbench tunnel-down PORT TOKEN TARGET        tendd: tunnel to 127.0.0.1:TARGET, read binary frames to the close
//   wsbench tcp-down PORT                        baseline: read a relayed TCP stream to EOF
#include "../baseline/common.h"
#include <poll.h>
#include <sys/uio.h>

static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (void *)&a, sizeof a) < 0) die("connect");
    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) { ssize_t w = write(fd, c, n); if (w < 0) { if (errno == EINTR) continue; die("write"); } c += w; n -= w; }
}

static unsigned char rbuf[1 << 20]; static size_t rstart, rend;

// Reads an HTTP response head; returns the status; the body (Content-Length) is read into body, or, without
// a body buffer, the bytes after the head are kept for ws_recv (frames sent right after a 101).
static int read_response(int fd, char *body, size_t cap) {
    char buf[8192]; size_t got = 0; char *end = NULL;
    while (!end) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0) die("read head");
        got += n; buf[got] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    int status = atoi(buf + 9);
    size_t head = end + 4 - buf, have = got - head;
    char *cl = strcasestr(buf, "content-length:");
    size_t len = cl ? (size_t)atol(cl + 15) : 0;
    if (!body) { memcpy(rbuf, buf + head, have); rstart = 0; rend = have; }
    if (body && cap) {
        size_t k = have < cap - 1 ? have : cap - 1;
        memcpy(body, buf + head, k);
        while (k < len && k < cap - 1) { ssize_t n = read(fd, body + k, cap - 1 - k); if (n <= 0) break; k += n; }
        body[k] = 0;
    }
    return status;
}

static void ws_handshake(int fd, const char *path, const char *token, const char *extra) {
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n",
                     path, token, extra);
    write_all(fd, req, n);
    if (read_response(fd, NULL, 0) != 101) { fprintf(stderr, "no 101 for %s\n", path); exit(1); }
}

// One masked client frame (mask 0: the XOR is the identity, which the server must still accept).
static void ws_send(int fd, int opcode, const void *p, size_t n) {
    unsigned char h[14]; size_t k = 0;
    h[k++] = 0x80 | opcode;
    if (n < 126) h[k++] = 0x80 | n;
    else if (n < 65536) { h[k++] = 0x80 | 126; h[k++] = n >> 8; h[k++] = n & 255; }
    else { h[k++] = 0x80 | 127; for (int s = 56; s >= 0; s -= 8) h[k++] = (n >> s) & 255; }
    memset(h + k, 0, 4); k += 4;
    struct iovec v[2] = {{h, k}, {(void *)p, n}};
    if (writev(fd, v, 2) < 0) die("writev");
}

// A buffered reader of server frames (rbuf above).
static int fill(int fd) {
    if (rstart == rend) rstart = rend = 0;
    if (rend == sizeof rbuf) { memmove(rbuf, rbuf + rstart, rend - rstart); rend -= rstart; rstart = 0; }
    ssize_t n = read(fd, rbuf + rend, sizeof rbuf - rend);
    if (n <= 0) return 0;
    rend += n; return 1;
}
// Next frame: returns its opcode, payload pointer/length valid until the next call; -1 at EOF.
static int ws_recv(int fd, unsigned char **p, size_t *n) {
    for (;;) {
        size_t have = rend - rstart;
        if (have >= 2) {
            unsigned char *h = rbuf + rstart; size_t len = h[1] & 127, k = 2;
            if (len == 126) { if (have < 4) goto more; len = (size_t)h[2] << 8 | h[3]; k = 4; }
            else if (len == 127) { if (have < 10) goto more; len = 0; for (int i = 2; i < 10; i++) len = len << 8 | h[i]; k = 10; }
            if (len > sizeof rbuf - 16) { fprintf(stderr, "frame too big\n"); exit(1); }
            if (have >= k + len) { *p = h + k; *n = len; rstart += k + len; return h[0] & 15; }
            if (rstart > 0 && rend == sizeof rbuf) { memmove(rbuf, rbuf + rstart, have); rend = have; rstart = 0; }
        }
    more:
        if (!fill(fd)) return -1;
    }
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

static void report_lat(const char *who, double *us, int count) {
    qsort(us, count, sizeof *us, cmp);
    printf("{\"who\":\"%s\",\"count\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", who, count, us[count / 2], us[count * 99 / 100]);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "see the comment at the top\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    const char *mode = argv[1];
    if (!strcmp(mode, "source")) {
        int ls = listen_on(atoi(argv[2]));
        int fl = fcntl(ls, F_GETFL); fcntl(ls, F_SETFL, fl & ~O_NONBLOCK);
        long long total = atoll(argv[3]);
        static char block[256 << 10];
        memset(block, 'x', sizeof block);
        for (;;) {
            int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
            if (c < 0) continue;
            for (long long left = total; left > 0;) {
                ssize_t w = write(c, block, left < (long long)sizeof block ? (size_t)left : sizeof block);
                if (w <= 0) break;
                left -= w;
            }
            close(c);
        }
    }
    if (!strcmp(mode, "pty-lat") || !strcmp(mode, "tcp-lat")) {
        int tendd = !strcmp(mode, "pty-lat");
        int count = atoi(argv[tendd ? 4 : 3]);
        int fd;
        if (tendd) {
            int h = dial(atoi(argv[2]));
            char req[512], body[512];
            const char *js = "{\"command\":\"cat\"}";
            int n = snprintf(req, sizeof req, "POST /api/v1/pty HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", argv[3], strlen(js), js);
            write_all(h, req, n);
            if (read_response(h, body, sizeof body) != 201) { fprintf(stderr, "create failed: %s\n", body); return 1; }
            char id[64] = {0}, tok[128] = {0};
            sscanf(strstr(body, "\"session_id\":\"") + 14, "%63[^\"]", id);
            sscanf(strstr(body, "\"token\":\"") + 9, "%127[^\"]", tok);
            close(h);
            fd = dial(atoi(argv[2]));
            char path[256], extra[256];
            snprintf(path, sizeof path, "/api/v1/pty/%s/ws", id);
            snprintf(extra, sizeof extra, "X-PTY-Token: %s\r\n", tok);
            ws_handshake(fd, path, argv[3], extra);
            unsigned char ready = 2;
            ws_send(fd, 2, &ready, 1);
        } else {
            fd = dial(atoi(argv[2]));
        }
        double *us = calloc(count, sizeof *us);
        for (int i = 0; i < count; i++) {
            unsigned char key[2] = {0, (unsigned char)('a' + i % 26)};
            double t0 = now_s();
            if (tendd) ws_send(fd, 2, key, 2); else write_all(fd, key + 1, 1);
            for (int seen = 0; !seen;) {
                if (tendd) {
                    unsigned char *p; size_t n;
                    int op = ws_recv(fd, &p, &n);
                    if (op < 0) die("eof");
                    if (op == 2 && n >= 1 && p[0] == 0) for (size_t j = 1; j < n; j++) if (p[j] == key[1]) seen = 1;
                } else {
                    char b[256]; ssize_t n = read(fd, b, sizeof b);
                    if (n <= 0) die("eof");
                    for (ssize_t j = 0; j < n; j++) if ((unsigned char)b[j] == key[1]) seen = 1;
                }
            }
            us[i] = (now_s() - t0) * 1e6;
        }
        report_lat(tendd ? "tendd" : "base", us, count);
        return 0;
    }
    if (!strcmp(mode, "tunnel-down") || !strcmp(mode, "tcp-down")) {
        int tendd = !strcmp(mode, "tunnel-down");
        int fd = dial(atoi(argv[2]));
        double t0 = now_s();
        long long bytes = 0;
        if (tendd) {
            char path[128];
            snprintf(path, sizeof path, "/api/v1/tunnels/tcp?port=%s", argv[4]);
            ws_handshake(fd, path, argv[3], "");
            for (;;) {
                unsigned char *p; size_t n;
                int op = ws_recv(fd, &p, &n);
                if (op < 0 || op == 8) break;
                if (op == 2) bytes += n;
            }
        } else {
            static char b[256 << 10];
            for (;;) { ssize_t n = read(fd, b, sizeof b); if (n <= 0) break; bytes += n; }
        }
        double secs = now_s() - t0;
        printf("{\"bytes\":%lld,\"secs\":%.6f}\n", bytes, secs);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
