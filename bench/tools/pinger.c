// Child program for the latency test: COUNT times, waits for one byte on FIFO, then writes one
// line holding CLOCK_MONOTONIC in ns taken right before the write(2). Exits at EOF of the FIFO.
//   usage: pinger FIFO COUNT
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) return 1;
    long count = atol(argv[2]);
    char c, line[64];
    for (long i = 0; i < count; i++) {
        if (read(fd, &c, 1) != 1) return 0;
        struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
        int n = snprintf(line, sizeof line, "%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
        if (write(1, line, n) != n) return 1;
    }
    return 0;
}
