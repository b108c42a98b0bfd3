// Shared helpers for the raw baselines: listening socket, clock, minimal HTTP head reading,
// integer formatting, and a spawn with clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) on a private stack.
// Deliberately small: the baselines do the same kernel work as tendd, minus its generality.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

__attribute__((unused)) static void die(const char *m) { perror(m); exit(1); }

__attribute__((unused)) static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (void *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    return fd;
}

__attribute__((unused)) static int64_t wall_ms(void) {
    struct timespec t; clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

// Writes v in decimal at p; returns the number of bytes.
static inline int fmt_u64(char *p, uint64_t v) {
    char tmp[24]; int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

// Reads a request head (blocking fd) into buf; returns its length incl. CRLFCRLF, or -1. Extra bytes
// beyond the head (a body) are left in buf after it; *got is the total read.
__attribute__((unused)) static int read_head(int fd, char *buf, int cap, int *got) {
    int n = 0;
    for (;;) {
        char *e = n >= 4 ? memmem(buf, n, "\r\n\r\n", 4) : NULL;
        if (e) { *got = n; return (int)(e - buf) + 4; }
        if (n == cap) return -1;
        ssize_t r = read(fd, buf + n, cap - n);
        if (r <= 0) return -1;
        n += r;
    }
}

// The child side of a spawn: new session, stdio, signal mask reset, exec.
struct spawn_plan { char *const *argv; int in, out, err; };
static char *child_stack;
#define CHILD_STACK (64 * 1024)

static int child_main(void *arg) {
    struct spawn_plan *p = arg;
    struct sigaction dfl; memset(&dfl, 0, sizeof dfl); dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, NULL);
    setsid();
    if (p->in != 0) dup2(p->in, 0);
    if (p->out != 1) dup2(p->out, 1);
    if (p->err != 2) dup2(p->err, 2);
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    sigset_t empty; sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execv(p->argv[0], p->argv);
    _exit(127);
}

// Spawns argv with the given stdio (all other daemon fds are O_CLOEXEC); returns pid, *pidfd.
__attribute__((unused)) static pid_t spawn(struct spawn_plan *p, int *pidfd) {
    if (!child_stack) child_stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    sigset_t all, old; sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = clone(child_main, child_stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, p, pidfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid;
}
