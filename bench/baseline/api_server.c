// Baseline API server: one thread, epoll, HTTP/1.1 keep-alive. Two routes, both minimal:
//   GET  /api/v1/info       -> 200, ~100 B of JSON (checks the bearer token like tendd)
//   POST /api/v1/processes  -> body {"command":"/abs/path","args":["..",..]}: 3 pipes (stdout and
//        stderr at 1 MiB, F_SETPIPE_SZ), clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) + exec, the pipes and
//        the pidfd registered with epoll, 201 with a ProcessInfo-sized JSON. Output is read and
//        discarded; the pidfd reaps with waitid(P_PIDFD). No PATH lookup, no env handling.
//   usage: api_server PORT TOKEN
#include "common.h"
#include <sys/resource.h>
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum kind { LISTENER, CONN, PIPE, PIDFD };
struct src { enum kind kind; int fd; int stdin_fd; char *in; int inlen; char *out; int outlen, outoff, outcap; };
static int ep, running, total;
static const char *token;
static int64_t started;
static char scratch[1 << 16];

static void add(struct src *s, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e);
}
static void drop(struct src *s) {
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    if (s->stdin_fd >= 0) close(s->stdin_fd);
    free(s->in); free(s->out); free(s);
}

static void out(struct src *c, const char *p, int n) {
    if (c->outlen + n > c->outcap) { c->outcap = (c->outlen + n) * 2; c->out = realloc(c->out, c->outcap); }
    memcpy(c->out + c->outlen, p, n); c->outlen += n;
}

static void respond(struct src *c, int status, const char *reason, const char *body, int blen) {
    char h[256];
    int n = snprintf(h, sizeof h, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", status, reason, blen);
    out(c, h, n); out(c, body, blen);
}

// Starts argv; returns the pid or -1.
static int start(char **argv) {
    int in[2], o[2], e[2];
    if (pipe2(in, O_CLOEXEC) < 0) return -1;
    if (pipe2(o, O_CLOEXEC) < 0) { close(in[0]); close(in[1]); return -1; }
    if (pipe2(e, O_CLOEXEC) < 0) { close(in[0]); close(in[1]); close(o[0]); close(o[1]); return -1; }
    fcntl(o[0], F_SETPIPE_SZ, 1 << 20); fcntl(e[0], F_SETPIPE_SZ, 1 << 20);
    fcntl(in[1], F_SETFL, O_NONBLOCK); fcntl(o[0], F_SETFL, O_NONBLOCK); fcntl(e[0], F_SETFL, O_NONBLOCK);
    struct spawn_plan plan = {argv, in[0], o[1], e[1]};
    int pidfd = -1;
    pid_t pid = spawn(&plan, &pidfd);
    close(in[0]); close(o[1]); close(e[1]);
    if (pid < 0) { close(in[1]); close(o[0]); close(e[0]); return -1; }
    struct src *s;
    s = calloc(1, sizeof *s); s->kind = PIPE; s->fd = o[0]; s->stdin_fd = -1; add(s, EPOLLIN);
    s = calloc(1, sizeof *s); s->kind = PIPE; s->fd = e[0]; s->stdin_fd = -1; add(s, EPOLLIN);
    s = calloc(1, sizeof *s); s->kind = PIDFD; s->fd = pidfd; s->stdin_fd = in[1]; add(s, EPOLLIN);
    running++; total++;
    return pid;
}

// Extracts the JSON string after `key` (no escapes supported) into dst; returns the end or NULL.
static const char *jstr(const char *p, const char *end, char *dst, int cap) {
    while (p < end && *p != '"') p++;
    if (p >= end) return NULL;
    p++;
    int n = 0;
    while (p < end && *p != '"' && n < cap - 1) dst[n++] = *p++;
    dst[n] = 0;
    return p < end ? p + 1 : NULL;
}

static void handle_request(struct src *c, const char *head, int hlen, const char *body, int blen) {
    // Authorization: Bearer <token>
    char want[1100]; int wl = snprintf(want, sizeof want, "Authorization: Bearer %s\r\n", token);
    if (!memmem(head, hlen, want, wl)) {
        static const char u[] = "{\"error\":\"unauthorized\",\"code\":\"UNAUTHORIZED\"}\n";
        respond(c, 401, "Unauthorized", u, sizeof u - 1); return;
    }
    if (!strncmp(head, "GET /api/v1/info ", 17)) {
        char b[256];
        int n = snprintf(b, sizeof b, "{\"version\":\"0.1.0\",\"uptime_secs\":%lld,\"running_processes\":%d,\"total_processes\":%d}\n",
                         (long long)(wall_ms() - started) / 1000, running, total);
        respond(c, 200, "OK", b, n); return;
    }
    if (!strncmp(head, "POST /api/v1/processes ", 23)) {
        static char cmd[4096], args[16][256];
        char *argv[18]; int argc = 0;
        const char *end = body + blen;
        const char *p = memmem(body, blen, "\"command\"", 9);
        if (!p || !jstr(p + 9, end, cmd, sizeof cmd)) { respond(c, 400, "Bad Request", "{}\n", 3); return; }
        argv[argc++] = cmd;
        const char *a = memmem(body, blen, "\"args\"", 6);
        if (a) {
            const char *close_ = memchr(a, ']', end - a);
            const char *q = memchr(a, '[', end - a);
            if (q && close_) {
                q++;
                while (argc < 17) {
                    const char *nq = memchr(q, '"', close_ - q);
                    if (!nq) break;
                    q = jstr(nq, close_, args[argc - 1], 256);
                    if (!q) break;
                    argv[argc] = args[argc - 1]; argc++;
                }
            }
        }
        argv[argc] = NULL;
        int pid = start(argv);
        if (pid < 0) { respond(c, 500, "Internal Server Error", "{\"code\":\"SPAWN_FAILED\"}\n", 24); return; }
        char b[512];
        int n = snprintf(b, sizeof b, "{\"pid\":%d,\"handle\":%d,\"status\":\"running\",\"exit_code\":null,\"signal\":null,"
                         "\"oom_killed\":false,\"stdin_writable\":true,\"command\":\"%s\",\"args\":[],\"started_at\":%lld,"
                         "\"ended_at\":null,\"managed\":null}\n", pid, total, cmd, (long long)wall_ms());
        respond(c, 201, "Created", b, n); return;
    }
    respond(c, 404, "Not Found", "{\"code\":\"NOT_FOUND\"}\n", 21);
}

static void flush(struct src *c) {
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w <= 0) break;
        c->outoff += w;
    }
    if (c->outoff == c->outlen) c->outoff = c->outlen = 0;
    struct epoll_event e = {.events = EPOLLIN | (c->outlen ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void conn_readable(struct src *c) {
    ssize_t r = read(c->fd, c->in + c->inlen, 65536 - c->inlen);
    if (r == 0 || (r < 0 && errno != EAGAIN)) { drop(c); return; }
    if (r > 0) c->inlen += r;
    int off = 0;
    for (;;) {   // every complete request in the buffer (pipelining)
        char *h = c->in + off; int avail = c->inlen - off;
        char *e = avail >= 4 ? memmem(h, avail, "\r\n\r\n", 4) : NULL;
        if (!e) break;
        int hlen = e - h + 4, clen = 0;
        char *cl = memmem(h, hlen, "Content-Length:", 15);
        if (cl) clen = atoi(cl + 15);
        if (hlen + clen > avail) break;
        handle_request(c, h, hlen, h + hlen, clen);
        off += hlen + clen;
    }
    if (off) { memmove(c->in, c->in + off, c->inlen - off); c->inlen -= off; }
    if (c->outlen) flush(c);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: api_server PORT TOKEN\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    // Like tendd: the daemon's own signals arrive through a signalfd-style mask (blocked).
    token = argv[2]; started = wall_ms();
    struct src l = {.kind = LISTENER, .fd = listen_on(atoi(argv[1]))};
    ep = epoll_create1(EPOLL_CLOEXEC);
    add(&l, EPOLLIN);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct src *s = evs[i].data.ptr;
            switch (s->kind) {
            case LISTENER: {
                int fd;
                while ((fd = accept4(l.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct src *c = calloc(1, sizeof *c);
                    c->kind = CONN; c->fd = fd; c->stdin_fd = -1; c->in = malloc(65536);
                    add(c, EPOLLIN);
                }
                break;
            }
            case CONN:
                if (evs[i].events & EPOLLOUT) flush(s);
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_readable(s);
                break;
            case PIPE: {
                ssize_t r;
                while ((r = read(s->fd, scratch, sizeof scratch)) > 0) {}
                if (r == 0) drop(s);
                break;
            }
            case PIDFD: {
                siginfo_t si;
                if (waitid(P_PIDFD, s->fd, &si, WEXITED | WNOHANG) == 0 && si.si_pid) { running--; drop(s); }
                break;
            }
            }
        }
    }
}
