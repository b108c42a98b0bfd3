// Baseline for the files API: one blocking connection at a time, the kernel's fastest paths and
// nothing else. GET /…?path=P: sendfile(2) from the file (page cache) to the socket with a
// Content-Length. PUT /…?path=P with a Content-Length: splice(2) socket → pipe → a temporary file
// beside P, fsync, rename (the same durability as tendd). GET /api/v1/health: a tiny JSON answer.
// The path is taken raw from the query (no percent-decoding: the benchmark uses plain paths).
//   usage: file_server PORT
#include "common.h"
#include <sys/sendfile.h>
#include <sys/stat.h>

static void reply(int c, const char *s) { (void)!write(c, s, strlen(s)); }

static int query_path(const char *head, char *out, int cap) {
    const char *p = strstr(head, "path=");
    const char *sp = strchr(head, ' ');
    if (!p || !sp) return -1;
    p += 5;
    int n = 0;
    while (*p && *p != ' ' && *p != '&' && n < cap - 1) out[n++] = *p++;
    out[n] = 0;
    return n > 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: file_server PORT\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(atoi(argv[1]));
    fcntl(lfd, F_SETFL, 0);
    static char head[16384], path[4096], tmp[4200];
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0) die("pipe");
    fcntl(pp[0], F_SETPIPE_SZ, 1 << 20);
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (;;) {   // keep-alive
            int got, hl = read_head(c, head, sizeof head - 1, &got);
            if (hl < 0) break;
            head[got] = 0;
            if (!strncmp(head, "GET /api/v1/health", 18)) {
                reply(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"healthy\":true}\n");
                continue;
            }
            if (query_path(head, path, sizeof path) < 0) { reply(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"); break; }
            if (!strncmp(head, "GET ", 4)) {
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                struct stat st;
                if (fd < 0 || fstat(fd, &st) < 0) { reply(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"); if (fd >= 0) close(fd); continue; }
                char h[256];
                snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %lld\r\n\r\n", (long long)st.st_size);
                reply(c, h);
                off_t off = 0;
                while (off < st.st_size) { ssize_t n = sendfile(c, fd, &off, st.st_size - off); if (n <= 0) break; }
                close(fd);
                if (off < st.st_size) break;
            } else if (!strncmp(head, "PUT ", 4)) {
                char *cl = strcasestr(head, "content-length:");
                if (!cl) { reply(c, "HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\n\r\n"); break; }
                long long remaining = atoll(cl + 15);
                snprintf(tmp, sizeof tmp, "%s.base-upload.tmp", path);
                int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0) die("open tmp");
                int extra = got - hl;   // body bytes that came with the head
                if (extra > 0) { (void)!write(fd, head + hl, extra); remaining -= extra; }
                while (remaining > 0) {
                    ssize_t n = splice(c, NULL, pp[1], NULL, remaining < (1 << 20) ? remaining : (1 << 20), SPLICE_F_MOVE | SPLICE_F_MORE);
                    if (n <= 0) break;
                    remaining -= n;
                    while (n > 0) { ssize_t m = splice(pp[0], NULL, fd, NULL, n, SPLICE_F_MOVE); if (m <= 0) die("splice to file"); n -= m; }
                }
                fsync(fd);
                close(fd);
                if (remaining > 0) { unlink(tmp); break; }
                rename(tmp, path);
                reply(c, "HTTP/1.1 204 No Content\r\n\r\n");
            } else break;
        }
        close(c);
    }
}
