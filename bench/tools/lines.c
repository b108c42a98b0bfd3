// Child program: prints COUNT lines of SIZE bytes of text (+ "\n") as fast as it can, in writes of
// up to 64 KiB of whole lines (like a fully buffered stdout), then exits.
// With "wait", it first reads stdin until EOF (the benchmark's start signal).
//   usage: lines SIZE COUNT [wait]
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long size = atol(argv[1]), count = atol(argv[2]);
    if (argc > 3 && !strcmp(argv[3], "wait")) { char b[256]; while (read(0, b, sizeof b) > 0) {} }
    long per = (65536 / (size + 1)); if (per < 1) per = 1;
    size_t cap = per * (size + 1);
    char *buf = malloc(cap);
    for (long i = 0; i < per; i++) { memset(buf + i * (size + 1), 'a' + i % 26, size); buf[i * (size + 1) + size] = '\n'; }
    while (count > 0) {
        long k = count < per ? count : per;
        size_t n = k * (size + 1), off = 0;
        while (off < n) { ssize_t w = write(1, buf + off, n - off); if (w <= 0) return 1; off += w; }
        count -= k;
    }
    return 0;
}
