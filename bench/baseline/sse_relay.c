// Baseline SSE relay: serves GET .../output/follow with chunked SSE; once FOLLOWERS clients are
// connected it spawns the child (argv), reads its stdout pipe (1 MiB, F_SETPIPE_SZ) with 256 KiB
// reads, splits lines, JSON-escapes them 16 bytes at a time, frames tendd's exact events
//   id:N\nevent:output\ndata:{"line":"...","timestamp":MS,"stream":"stdout"}\n\n
// (one clock read per read()), one HTTP chunk per read, and sends it to every follower. A follower
// whose queue is over 1 MiB pauses the pipe (the baseline may block its child; tendd never does).
// At EOF: event:eof, the last chunk, close. Then it waits for the next FOLLOWERS clients.
//   usage: sse_relay PORT FOLLOWERS CHILD [ARGS...]
#include "common.h"
#include <emmintrin.h>

#define READ_CAP (256 << 10)
#define MAX_LINE (64 << 10)
#define HIGH_WATER (1 << 20)
#define FRAME_FLUSH (256 << 10)   // bytes of events per HTTP chunk at most (tendd: 256 KiB budget)

struct client { int fd; char *q; size_t qlen, qcap, qoff; int done; char in[4096]; int inlen; int streaming; };
static struct client *clients[8192];
static int nclients, nstreaming, want, ep, pipefd = -1, pipe_paused;
static pid_t child;
static char **child_argv;
static uint64_t seq;
static char *rbuf, *frame;      // read buffer (carry + new bytes), frame buffer
static size_t carry;

static inline char *esc(char *o, const unsigned char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const __m128i lo = _mm_set1_epi8(0x20), q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    size_t i = 0;
    while (i < n) {
        if (i + 16 <= n) {
            __m128i v = _mm_loadu_si128((const void *)(s + i));
            // < 0x20 (signed compare also flags >= 0x80, copied as is below), '"', '\\'
            int m = _mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(v, lo), _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs))));
            _mm_storeu_si128((void *)o, v);
            if (!m) { o += 16; i += 16; continue; }
            int k = __builtin_ctz(m);
            o += k; i += k;
        }
        unsigned char c = s[i++];
        if (c >= 0x80) { *o++ = c; continue; }
        if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = c; continue; }
        if (c >= 0x20) { *o++ = c; continue; }
        switch (c) {
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        default: memcpy(o, "\\u00", 4); o[4] = hex[c >> 4]; o[5] = hex[c & 15]; o += 6;
        }
    }
    return o;
}

static inline char *event(char *o, const unsigned char *s, size_t n, const char *ts, int tslen) {
    memcpy(o, "id:", 3); o += 3;
    o += fmt_u64(o, ++seq);
    static const char mid[] = "\nevent:output\ndata:{\"line\":\"";
    memcpy(o, mid, sizeof mid - 1); o += sizeof mid - 1;
    o = esc(o, s, n);
    memcpy(o, "\",\"timestamp\":", 14); o += 14;
    memcpy(o, ts, tslen); o += tslen;
    static const char tail[] = ",\"stream\":\"stdout\"}\n\n";
    memcpy(o, tail, sizeof tail - 1); o += sizeof tail - 1;
    return o;
}

static void set_events(int fd, uint32_t ev, void *ptr) {
    struct epoll_event e = {.events = ev, .data.ptr = ptr};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

static void close_client(struct client *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->streaming) nstreaming--;
    for (int i = 0; i < nclients; i++) if (clients[i] == c) { clients[i] = clients[--nclients]; break; }
    free(c->q); free(c);
}

// Sends what can be sent now; queues the rest.
static void deliver(struct client *c, const char *p, size_t n) {
    if (c->qlen == c->qoff && n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) { p += w; n -= w; }
    }
    if (n) {
        if (c->qoff && c->qoff == c->qlen) c->qoff = c->qlen = 0;
        if (c->qlen + n > c->qcap) { c->qcap = (c->qlen + n) * 2; c->q = realloc(c->q, c->qcap); }
        memcpy(c->q + c->qlen, p, n); c->qlen += n;
        set_events(c->fd, EPOLLOUT, c);
    }
}

static void broadcast(const char *p, size_t n) {
    for (int i = 0; i < nclients; i++) if (clients[i]->streaming) deliver(clients[i], p, n);
    int over = 0;
    for (int i = 0; i < nclients; i++) if (clients[i]->qlen - clients[i]->qoff > HIGH_WATER) over = 1;
    if (over && !pipe_paused) { pipe_paused = 1; set_events(pipefd, 0, NULL); }
}

// Frames `len` payload bytes already placed at frame+10 as one chunk and broadcasts it.
static void send_chunk(size_t len) {
    if (!len) return;
    static const char hex[] = "0123456789abcdef";
    char h[16]; int hl = 0; size_t v = len;
    do { h[hl++] = hex[v & 15]; v >>= 4; } while (v);
    char *start = frame + 10 - hl - 2;
    for (int i = 0; i < hl; i++) start[i] = h[hl - 1 - i];
    start[hl] = '\r'; start[hl + 1] = '\n';
    frame[10 + len] = '\r'; frame[10 + len + 1] = '\n';
    broadcast(start, len + hl + 4);
}

static void start_child(void) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) die("pipe");
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct spawn_plan plan = {child_argv, devnull, p[1], devnull};
    int pidfd = -1;
    child = spawn(&plan, &pidfd);
    if (child < 0) die("clone");
    close(pidfd); close(p[1]); close(devnull);
    pipefd = p[0]; carry = 0; seq = 0; pipe_paused = 0;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, pipefd, &e);
}

static void pipe_readable(void) {
    for (int rounds = 0; rounds < 8 && !pipe_paused; rounds++) {
        ssize_t n = read(pipefd, rbuf + carry, READ_CAP);
        if (n < 0) return;
        char *o = frame + 10;
        if (n == 0) {   // EOF: last partial line, eof event, last chunk
            char ts[24]; int tl = fmt_u64(ts, wall_ms());
            if (carry) o = event(o, (unsigned char *)rbuf, carry, ts, tl);
            static const char eof[] = "event:eof\ndata:{}\n\n";
            memcpy(o, eof, sizeof eof - 1); o += sizeof eof - 1;
            send_chunk(o - frame - 10);
            broadcast("0\r\n\r\n", 5);
            epoll_ctl(ep, EPOLL_CTL_DEL, pipefd, NULL);
            close(pipefd); pipefd = -1;
            waitpid(child, NULL, 0);
            for (int i = nclients - 1; i >= 0; i--) {
                struct client *c = clients[i];
                if (!c->streaming) continue;
                c->done = 1;
                if (c->qlen == c->qoff) close_client(c);
            }
            return;
        }
        char ts[24]; int tl = fmt_u64(ts, wall_ms());
        size_t total = carry + n, start = 0;
        const unsigned char *b = (unsigned char *)rbuf;
        for (;;) {
            const unsigned char *nl = memchr(b + start, '\n', total - start);
            if (!nl) break;
            size_t end = nl - b;
            o = event(o, b + start, end - start, ts, tl);
            start = end + 1;
            if (o - frame > FRAME_FLUSH) { send_chunk(o - frame - 10); o = frame + 10; }
        }
        carry = total - start;
        if (carry >= MAX_LINE) { o = event(o, b + start, carry, ts, tl); carry = 0; start = total; }
        if (carry) memmove(rbuf, rbuf + start, carry);
        send_chunk(o - frame - 10);
        if ((size_t)n < READ_CAP) return;
    }
}

static void client_event(struct client *c, uint32_t ev) {
    if (c->streaming) {
        if (ev & (EPOLLERR | EPOLLHUP)) { close_client(c); return; }
        if (ev & EPOLLOUT) {
            while (c->qoff < c->qlen) {
                ssize_t w = send(c->fd, c->q + c->qoff, c->qlen - c->qoff, MSG_NOSIGNAL);
                if (w <= 0) break;
                c->qoff += w;
            }
            if (c->qoff == c->qlen) {
                c->qoff = c->qlen = 0;
                if (c->done) { close_client(c); return; }
                set_events(c->fd, 0, c);
            }
            if (pipe_paused) {
                int over = 0;
                for (int i = 0; i < nclients; i++) if (clients[i]->qlen - clients[i]->qoff > HIGH_WATER / 2) over = 1;
                if (!over) { pipe_paused = 0; set_events(pipefd, EPOLLIN, NULL); }
            }
        }
        return;
    }
    ssize_t r = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
    if (r <= 0) { if (r == 0 || errno != EAGAIN) close_client(c); return; }
    c->inlen += r;
    if (!memmem(c->in, c->inlen, "\r\n\r\n", 4)) return;
    if (!memmem(c->in, c->inlen, "/output/follow", 14) || !memmem(c->in, c->inlen, "Authorization: Bearer ", 22)) {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)!write(c->fd, nf, sizeof nf - 1); close_client(c); return;
    }
    static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                            "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n";
    (void)!write(c->fd, h, sizeof h - 1);
    c->streaming = 1; nstreaming++;
    set_events(c->fd, 0, c);
    if (nstreaming == want && pipefd < 0) start_child();
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: sse_relay PORT FOLLOWERS CHILD [ARGS...]\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    want = atoi(argv[2]);
    child_argv = argv + 3;
    rbuf = malloc(MAX_LINE + READ_CAP);
    frame = malloc(FRAME_FLUSH + 6 * MAX_LINE + 4096);
    int lfd = listen_on(atoi(argv[1]));
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &lfd) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct client *c = calloc(1, sizeof *c); c->fd = fd;
                    clients[nclients++] = c;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
            } else if (p == NULL) {
                if (pipefd >= 0) pipe_readable();
            } else {
                client_event(p, evs[i].events);
            }
        }
    }
}
