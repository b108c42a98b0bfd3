// Load generator and measuring client for tendd and the baselines (the SAME client measures both).
//   client sse   PORT TOKEN FOLLOWERS tendd|base [START_JSON]   SSE throughput (one JSON line out)
//   client lat   PORT TOKEN tendd|base FIFO COUNT [START_JSON]  one-line latency, ping-pong via FIFO
//   client raw   PORT                                          raw byte stream (GET /raw)
//   client rawt  PORT TOKEN START_JSON                         tendd's raw view: GET …/stdout/raw?follow=true,
//                                                               reconnecting at the next offset after a gap
//   client start PORT TOKEN CONC TOTAL JSON                     POST /api/v1/processes -> 201
//   client hold  PORT TOKEN K FOLLOW JSON                       start K processes (+K followers), print,
//                                                               hold everything until stdin closes
// tendd mode (also for the Tensorlake daemon, same API): the child is started with stdin_mode "pipe" and waits for stdin EOF; the clock starts
// when the client sends POST .../stdin/close. base mode: the relay spawns the child when all
// followers are connected; the clock starts before the last GET.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port;
static const char *token;

static int64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec; }
static void die(const char *m) { fprintf(stderr, "client: %s: %s\n", m, strerror(errno)); exit(1); }

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (void *)&a, sizeof a) < 0) die("connect");
    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}
static void send_all(int fd, const char *p, size_t n) {
    while (n) { ssize_t w = write(fd, p, n); if (w <= 0) die("write"); p += w; n -= w; }
}
static int fmt_req(char *b, size_t cap, const char *method, const char *path, const char *body) {
    if (body) return snprintf(b, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", method, path, token, strlen(body), body);
    return snprintf(b, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n", method, path, token);
}

// Blocking request/response with Content-Length (keep-alive); returns status, body in *out.
static int request(int fd, const char *method, const char *path, const char *body, char *out, int cap) {
    char req[8192]; int n = fmt_req(req, sizeof req, method, path, body);
    send_all(fd, req, n);
    static char buf[65536]; int got = 0;
    char *e;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof buf - got - 1);
        if (r <= 0) die("read response");
        got += r; buf[got] = 0;
        if ((e = memmem(buf, got, "\r\n\r\n", 4))) break;
    }
    int hlen = e - buf + 4, clen = 0;
    char *cl = strcasestr(buf, "Content-Length:");
    if (cl && cl < e) clen = atoi(cl + 15);
    while (got < hlen + clen) { ssize_t r = read(fd, buf + got, sizeof buf - got - 1); if (r <= 0) die("read body"); got += r; }
    if (out) { int m = clen < cap - 1 ? clen : cap - 1; memcpy(out, buf + hlen, m); out[m] = 0; }
    return atoi(buf + 9);
}

static int start_process(int fd, const char *json) {
    char body[4096];
    int st = request(fd, "POST", "/api/v1/processes", json, body, sizeof body);
    if (st != 201) { fprintf(stderr, "client: start got %d: %s\n", st, body); exit(1); }
    char *p = strstr(body, "\"pid\":");
    return p ? atoi(p + 6) : -1;
}

// ---- SSE follower: chunked decoding + event counting ----
enum { S_HEAD, S_SIZE, S_DATA, S_CRLF, S_TRAILER, S_DONE };
struct fol {
    int fd, state, last_nl, status;
    size_t remain, sizeval;
    char head[4096]; int headlen;
    char ev[512]; int evpos;
    uint64_t events, gaps, bytes, comments;
    int eof, raw;
    char trailer[512]; int tlen, tline;
    int64_t t_end;
};
static int64_t *lat; static int nlat, want_lat;
static int64_t read_time;

static void event_end(struct fol *f) {
    int n = f->evpos < (int)sizeof f->ev ? f->evpos : (int)sizeof f->ev;
    // tendd frames a line as "id:N\nevent:output\ndata:..."; the Tensorlake daemon as
    // "event: output\ndata: ..." (no id, a space after the colon): both count as a delivered line.
    if ((n >= 3 && !memcmp(f->ev, "id:", 3)) || (n >= 13 && !memcmp(f->ev, "event: output", 13))) {
        f->events++;
        if (want_lat) {
            char *p = memmem(f->ev, n, "\"line\":\"", 8);
            if (p) lat[nlat++] = read_time - atoll(p + 8);
        }
    } else if (n >= 9 && !memcmp(f->ev, "event:gap", 9)) f->gaps++;
    else if ((n >= 9 && !memcmp(f->ev, "event:eof", 9)) || (n >= 10 && !memcmp(f->ev, "event: eof", 10))) f->eof = 1;
    else f->comments++;
    f->evpos = 0;
}

static void payload(struct fol *f, const char *p, size_t m) {
    f->bytes += m;
    if (f->raw) return;   // raw bytes: only counted
    size_t pos = 0;
    while (pos < m) {
        const char *q = memchr(p + pos, '\n', m - pos);
        size_t end = q ? (size_t)(q - p) : m;
        if (end > pos) {
            if (f->evpos < (int)sizeof f->ev) { size_t k = end - pos; if (k > sizeof f->ev - f->evpos) k = sizeof f->ev - f->evpos; memcpy(f->ev + f->evpos, p + pos, k); }
            f->evpos += end - pos; f->last_nl = 0;
        }
        if (!q) break;
        if (f->last_nl) { event_end(f); f->last_nl = 0; }
        else { if (f->evpos < (int)sizeof f->ev) f->ev[f->evpos] = '\n'; f->evpos++; f->last_nl = 1; }
        pos = end + 1;
    }
}

// Feeds bytes read from the socket; returns 1 when the stream is complete.
static int feed(struct fol *f, const char *b, size_t n) {
    size_t i = 0;
    while (i < n) {
        switch (f->state) {
        case S_HEAD: {
            while (i < n && f->headlen < (int)sizeof f->head - 1) {
                f->head[f->headlen++] = b[i++];
                if (f->headlen >= 4 && !memcmp(f->head + f->headlen - 4, "\r\n\r\n", 4)) {
                    f->head[f->headlen] = 0; f->status = atoi(f->head + 9);
                    if (f->status != 200) { fprintf(stderr, "client: follow got %d\n", f->status); exit(1); }
                    f->state = S_SIZE; f->sizeval = 0; break;
                }
            }
            break;
        }
        case S_SIZE: {
            char c = b[i++];
            if (c == '\n') {
                if (f->sizeval == 0) f->state = S_TRAILER; else { f->remain = f->sizeval; f->state = S_DATA; }
                f->sizeval = 0;
            } else if (c != '\r') {
                int d = (c >= '0' && c <= '9') ? c - '0' : (c | 0x20) - 'a' + 10;
                f->sizeval = f->sizeval * 16 + d;
            }
            break;
        }
        case S_DATA: {
            size_t m = n - i < f->remain ? n - i : f->remain;
            payload(f, b + i, m);
            i += m; f->remain -= m;
            if (!f->remain) { f->state = S_CRLF; f->sizeval = 0; }
            break;
        }
        case S_CRLF:
            if (b[i++] == '\n') f->state = S_SIZE;
            break;
        case S_TRAILER: {   // trailer fields (kept for the raw view), up to an empty line
            char c = b[i++];
            if (c == '\r') break;
            if (c == '\n') {
                if (f->tline == 0) { f->trailer[f->tlen] = 0; f->state = S_DONE; return 1; }
                f->tline = 0;
            } else f->tline++;
            if (f->tlen < (int)sizeof f->trailer - 1) f->trailer[f->tlen++] = c;
            break;
        }
        default: return 1;
        }
    }
    return f->state == S_DONE;
}

static char rbuf[1 << 20];

// Runs followers until every one is done (stream end). Returns when all are complete.
static void run_followers(struct fol *fs, int nf, int ep, int (*on_event)(struct fol *)) {
    int active = nf;
    struct epoll_event evs[256];
    while (active) {
        int n = epoll_wait(ep, evs, 256, 30000);
        if (n == 0) { fprintf(stderr, "client: timeout with %d followers active\n", active); exit(1); }
        for (int k = 0; k < n; k++) {
            struct fol *f = evs[k].data.ptr;
            for (;;) {
                ssize_t r = read(f->fd, rbuf, sizeof rbuf);
                if (r < 0 && errno == EAGAIN) break;
                read_time = now_ns();
                if (r <= 0) { if (f->state != S_DONE) { f->state = S_DONE; f->t_end = read_time; active--; epoll_ctl(ep, EPOLL_CTL_DEL, f->fd, NULL); } break; }
                uint64_t before = f->events;
                if (feed(f, rbuf, r)) { f->t_end = read_time; active--; epoll_ctl(ep, EPOLL_CTL_DEL, f->fd, NULL); break; }
                if (on_event && f->events != before && on_event(f)) return;
                if (r < (ssize_t)sizeof rbuf) break;
            }
        }
    }
}

static struct fol *open_followers(int nf, const char *path, int send_last, int ep) {
    struct fol *fs = calloc(nf, sizeof *fs);
    char req[4096]; int rl = fmt_req(req, sizeof req, "GET", path, NULL);
    for (int i = 0; i < nf; i++) {
        fs[i].fd = dial();
        if (i < nf - 1 || send_last) send_all(fs[i].fd, req, rl);
    }
    // Wait for every sent request's response head (so the stream is registered).
    for (int i = 0; i < nf; i++) {
        if (!(i < nf - 1 || send_last)) continue;
        while (fs[i].state == S_HEAD) {
            ssize_t r = read(fs[i].fd, rbuf, 1);
            if (r <= 0) die("follow head");
            feed(&fs[i], rbuf, 1);
        }
    }
    for (int i = 0; i < nf; i++) {
        fcntl(fs[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &fs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fs[i].fd, &e);
    }
    return fs;
}

static int cmp64(const void *a, const void *b) { int64_t x = *(int64_t *)a, y = *(int64_t *)b; return x < y ? -1 : x > y; }
static int64_t pct(int64_t *v, int n, double p) { if (!n) return 0; int i = (int)(p * (n - 1) + 0.5); return v[i]; }

static int sse(int argc, char **argv) {
    int nf = atoi(argv[4]);
    int tendd = !strcmp(argv[5], "tendd");
    int ep = epoll_create1(0);
    int ctl = -1, pid = 1;
    char path[256];
    if (tendd) { ctl = dial(); pid = start_process(ctl, argv[6]); }
    snprintf(path, sizeof path, "/api/v1/processes/%d/output/follow", pid);
    struct fol *fs = open_followers(nf, path, tendd, ep);
    int64_t t0 = now_ns();
    if (tendd) {
        char p2[128]; snprintf(p2, sizeof p2, "/api/v1/processes/%d/stdin/close", pid);
        int st = request(ctl, "POST", p2, "", NULL, 0);
        if (st != 204) { fprintf(stderr, "client: stdin/close got %d\n", st); return 1; }
    } else {
        char req[4096]; int rl = fmt_req(req, sizeof req, "GET", path, NULL);
        send_all(fs[nf - 1].fd, req, rl);
    }
    run_followers(fs, nf, ep, NULL);
    uint64_t ev = 0, by = 0, gaps = 0, mn = UINT64_MAX; int64_t tend = 0; int eofs = 0;
    for (int i = 0; i < nf; i++) {
        ev += fs[i].events; by += fs[i].bytes; gaps += fs[i].gaps; eofs += fs[i].eof;
        if (fs[i].events < mn) mn = fs[i].events;
        if (fs[i].t_end > tend) tend = fs[i].t_end;
    }
    double secs = (tend - t0) / 1e9;
    printf("{\"lines\":%llu,\"bytes\":%llu,\"secs\":%.6f,\"gaps\":%llu,\"eofs\":%d,\"min_lines\":%llu,\"pid\":%d}\n",
           (unsigned long long)ev, (unsigned long long)by, secs, (unsigned long long)gaps, eofs, (unsigned long long)mn, pid);
    return 0;
}

// tendd's raw view: follow stdout from offset 0; after a gap trailer reconnect at X-Tend-Next-Offset and
// count the bytes skipped (the new response's X-Tend-Offset minus the offset asked for) as lost.
static int raw_tendd(int argc, char **argv) {
    (void)argc;
    int ctl = dial(), pid = start_process(ctl, argv[4]);
    int ep = epoll_create1(0);
    char path[256];
    snprintf(path, sizeof path, "/api/v1/processes/%d/stdout/raw?follow=true", pid);
    struct fol *f = open_followers(1, path, 1, ep);
    f->raw = 1;
    int64_t t0 = now_ns();
    char p2[128]; snprintf(p2, sizeof p2, "/api/v1/processes/%d/stdin/close", pid);
    if (request(ctl, "POST", p2, "", NULL, 0) != 204) { fprintf(stderr, "client: stdin/close failed\n"); return 1; }
    uint64_t bytes = 0, lost = 0, gaps = 0;
    for (;;) {
        run_followers(f, 1, ep, NULL);
        bytes += f->bytes;
        char *end = strcasestr(f->trailer, "X-Tend-End:"), *next = strcasestr(f->trailer, "X-Tend-Next-Offset:");
        if (!end || !next) { fprintf(stderr, "client: raw stream ended without trailers\n"); return 1; }
        end += 11; while (*end == ' ') end++;
        if (!strncmp(end, "eof", 3)) break;
        gaps++;
        unsigned long long at = strtoull(next + 19, NULL, 10);
        close(f->fd); free(f);
        snprintf(path, sizeof path, "/api/v1/processes/%d/stdout/raw?follow=true&offset=%llu", pid, at);
        f = open_followers(1, path, 1, ep);
        f->raw = 1;
        char *o = strcasestr(f->head, "X-Tend-Offset:");
        if (o) lost += strtoull(o + 14, NULL, 10) - at;
    }
    int64_t tend = f->t_end;
    printf("{\"bytes\":%llu,\"secs\":%.6f,\"lost\":%llu,\"gaps\":%llu,\"pid\":%d}\n", (unsigned long long)bytes,
           (tend - t0) / 1e9, (unsigned long long)lost, (unsigned long long)gaps, pid);
    return 0;
}

static int fifo_fd;
static long lat_count;
static int ping(struct fol *f) {
    (void)f;
    if (nlat >= lat_count) return 1;
    if (write(fifo_fd, "x", 1) != 1) die("fifo");
    return 0;
}

static int latency(int argc, char **argv) {
    int tendd = !strcmp(argv[4], "tendd");
    const char *fifo = argv[5];
    lat_count = atol(argv[6]);
    lat = calloc(lat_count + 16, sizeof *lat); want_lat = 1;
    int ep = epoll_create1(0), pid = 1, ctl = -1;
    if (tendd) { ctl = dial(); pid = start_process(ctl, argv[7]); }
    char path[256]; snprintf(path, sizeof path, "/api/v1/processes/%d/output/follow", pid);
    struct fol *fs = open_followers(1, path, 1, ep);
    fifo_fd = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fifo_fd < 0) die("open fifo");
    ping(fs);
    run_followers(fs, 1, ep, ping);
    close(fifo_fd);   // the pinger exits at EOF
    qsort(lat, nlat, sizeof *lat, cmp64);
    printf("{\"samples\":%d,\"p50_us\":%.2f,\"p99_us\":%.2f,\"min_us\":%.2f,\"max_us\":%.2f}\n", nlat,
           pct(lat, nlat, 0.5) / 1e3, pct(lat, nlat, 0.99) / 1e3, lat[0] / 1e3, lat[nlat - 1] / 1e3);
    if (ctl >= 0) close(ctl);
    return 0;
}

static int raw(void) {
    int fd = dial();
    char req[256]; int rl = snprintf(req, sizeof req, "GET /raw HTTP/1.1\r\nHost: x\r\n\r\n");
    int64_t t0 = now_ns();
    send_all(fd, req, rl);
    uint64_t total = 0; ssize_t r; int inhead = 1; char last4[4] = {0};
    while ((r = read(fd, rbuf, sizeof rbuf)) > 0) {
        ssize_t i = 0;
        while (inhead && i < r) {   // skip the response head
            memmove(last4, last4 + 1, 3); last4[3] = rbuf[i++];
            if (!memcmp(last4, "\r\n\r\n", 4)) inhead = 0;
        }
        total += r - i;
    }
    double secs = (now_ns() - t0) / 1e9;
    printf("{\"bytes\":%llu,\"secs\":%.6f}\n", (unsigned long long)total, secs);
    return 0;
}

// ---- start: CONC keep-alive connections, each one request at a time ----
struct sc { int fd; char buf[8192]; int got; int64_t t; };
static int starts(int argc, char **argv) {
    int conc = atoi(argv[4]), total = atoi(argv[5]);
    const char *json = argv[6];
    char req[4096]; int rl = fmt_req(req, sizeof req, "POST", "/api/v1/processes", json);
    int64_t *l = calloc(total, sizeof *l); int nl = 0, sent = 0, errs = 0;
    int ep = epoll_create1(0);
    struct sc *cs = calloc(conc, sizeof *cs);
    int64_t t0 = now_ns();
    for (int i = 0; i < conc && sent < total; i++) {
        cs[i].fd = dial();
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &e);
        cs[i].t = now_ns(); send_all(cs[i].fd, req, rl); sent++;
    }
    struct epoll_event evs[64];
    while (nl + errs < total) {
        int n = epoll_wait(ep, evs, 64, 30000);
        if (n == 0) { fprintf(stderr, "client: start timeout\n"); return 1; }
        for (int k = 0; k < n; k++) {
            struct sc *c = evs[k].data.ptr;
            ssize_t r = read(c->fd, c->buf + c->got, sizeof c->buf - c->got - 1);
            if (r <= 0) die("start read");
            c->got += r; c->buf[c->got] = 0;
            char *e = strstr(c->buf, "\r\n\r\n");
            if (!e) continue;
            char *cl = strcasestr(c->buf, "Content-Length:");
            int need = (e - c->buf) + 4 + (cl ? atoi(cl + 15) : 0);
            if (c->got < need) continue;
            int st = atoi(c->buf + 9);
            if (st == 201) l[nl++] = now_ns() - c->t; else { errs++; if (errs < 4) fprintf(stderr, "client: start got %d\n", st); }
            memmove(c->buf, c->buf + need, c->got - need); c->got -= need;
            if (sent < total) { c->t = now_ns(); send_all(c->fd, req, rl); sent++; }
        }
    }
    double secs = (now_ns() - t0) / 1e9;
    qsort(l, nl, sizeof *l, cmp64);
    printf("{\"starts\":%d,\"errors\":%d,\"secs\":%.6f,\"per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
           nl, errs, secs, nl / secs, pct(l, nl, 0.5) / 1e3, pct(l, nl, 0.99) / 1e3);
    return 0;
}

static int hold(int argc, char **argv) {
    int k = atoi(argv[4]), follow = atoi(argv[5]);
    const char *json = argv[6];
    int ctl = dial();
    int *pids = calloc(k, sizeof *pids);
    int64_t t0 = now_ns();
    for (int i = 0; i < k; i++) pids[i] = start_process(ctl, json);
    double start_secs = (now_ns() - t0) / 1e9;
    int64_t t1 = now_ns();
    if (follow) {
        char path[256], req[4096];
        for (int i = 0; i < k; i++) {
            snprintf(path, sizeof path, "/api/v1/processes/%d/output/follow", pids[i]);
            int rl = fmt_req(req, sizeof req, "GET", path, NULL);
            int fd = dial();
            send_all(fd, req, rl);
            char h[4096]; int got = 0;
            while (!(got >= 4 && memmem(h, got, "\r\n\r\n", 4))) { ssize_t r = read(fd, h + got, sizeof h - got); if (r <= 0) die("hold follow"); got += r; }
            if (atoi(h + 9) != 200) { fprintf(stderr, "client: hold follow got %d\n", atoi(h + 9)); return 1; }
        }
    }
    double follow_secs = (now_ns() - t1) / 1e9;
    printf("{\"held\":%d,\"start_secs\":%.4f,\"follow_secs\":%.4f,\"pids\":[", k, start_secs, follow_secs);
    for (int i = 0; i < k; i++) printf("%s%d", i ? "," : "", pids[i]);
    printf("]}\n"); fflush(stdout);
    char c; while (read(0, &c, 1) > 0) {}
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: see the top of client.c\n"); return 2; }
    port = atoi(argv[2]);
    token = argc > 3 ? argv[3] : "";
    if (!strcmp(argv[1], "sse") && argc >= 6) return sse(argc, argv);
    if (!strcmp(argv[1], "lat") && argc >= 7) return latency(argc, argv);
    if (!strcmp(argv[1], "raw")) return raw();
    if (!strcmp(argv[1], "rawt")) return raw_tendd(argc, argv);
    if (!strcmp(argv[1], "start") && argc >= 7) return starts(argc, argv);
    if (!strcmp(argv[1], "hold") && argc >= 7) return hold(argc, argv);
    fprintf(stderr, "client: bad arguments\n");
    return 2;
}
