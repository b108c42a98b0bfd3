// CShims implementation. See include/CShims.h for why each piece is C.
#define _GNU_SOURCE
#include "CShims.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

const uint32_t TEND_EPOLLIN = EPOLLIN, TEND_EPOLLOUT = EPOLLOUT, TEND_EPOLLERR = EPOLLERR,
               TEND_EPOLLHUP = EPOLLHUP, TEND_EPOLLRDHUP = EPOLLRDHUP, TEND_EPOLLET = EPOLLET;
const int TEND_EPOLL_CTL_ADD = EPOLL_CTL_ADD, TEND_EPOLL_CTL_MOD = EPOLL_CTL_MOD, TEND_EPOLL_CTL_DEL = EPOLL_CTL_DEL;
const int TEND_CLD_EXITED = CLD_EXITED, TEND_CLD_KILLED = CLD_KILLED, TEND_CLD_DUMPED = CLD_DUMPED;

int tend_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int tend_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = { .events = events, .data.u64 = data };
    return epoll_ctl(epfd, op, fd, &ev);
}

int tend_epoll_wait(int epfd, tend_epoll_event *out, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) { out[i].events = evs[i].events; out[i].data = evs[i].data.u64; }
    return n;
}

int tend_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int tend_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int tend_pidfd_wait(int pidfd, int peek, int *code, int *status) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int flags = WEXITED | WNOHANG | (peek ? WNOWAIT : 0);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, flags) < 0) return -1;
    if (si.si_pid == 0) return 0;
    *code = si.si_code;
    *status = si.si_status;
    return 1;
}

pid_t tend_peek_exited(void) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) return 0;
    return si.si_pid;
}

void tend_reap_pid(pid_t pid) {
    siginfo_t si;
    (void)waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
}

int tend_signalfd_open(const int *signals, int n) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++) sigaddset(&set, signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int tend_signalfd_read(int fd, int *pid) {
    struct signalfd_siginfo si;
    ssize_t n;
    do { n = read(fd, &si, sizeof si); } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (n != sizeof si) { errno = EIO; return -1; }
    if (pid) *pid = (int)si.ssi_pid;
    return (int)si.ssi_signo;
}

int tend_signalfd_read_many(int fd, int *signos, int *pids, int max) {
    struct signalfd_siginfo si[8];
    if (max > 8) max = 8;
    ssize_t n;
    do { n = read(fd, si, sizeof si[0] * (size_t)max); } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    int count = (int)(n / (ssize_t)sizeof si[0]);
    for (int i = 0; i < count; i++) { signos[i] = (int)si[i].ssi_signo; pids[i] = (int)si[i].ssi_pid; }
    return count;
}

void tend_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

int tend_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }

int tend_set_nonblock_cloexec(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int tend_set_blocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

int tend_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int tend_pipe(int fds[2], int size_hint) {
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
    if (size_hint > 0) (void)fcntl(fds[0], F_SETPIPE_SZ, size_hint); // best effort: may exceed pipe-max-size
    return 0;
}

int tend_child_pipe(int fds[2], int size_hint, int child_reads) {
    if (pipe2(fds, O_CLOEXEC) < 0) return -1;
    // A new pipe end has no status flags: set O_NONBLOCK on ours alone, no F_GETFL first.
    if (fcntl(fds[child_reads ? 1 : 0], F_SETFL, O_NONBLOCK) < 0) {
        int e = errno; close(fds[0]); close(fds[1]); errno = e; return -1;
    }
    if (size_hint > 0) (void)fcntl(fds[0], F_SETPIPE_SZ, size_hint); // best effort: may exceed pipe-max-size
    return 0;
}

#include <sys/socket.h>
int tend_accept(int listener) { return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

int tend_open_cloexec(const char *path, int flags, int mode) {
    int fd;
    do { fd = open(path, flags | O_CLOEXEC, mode); } while (fd < 0 && errno == EINTR);
    return fd;
}

int tend_openat_cloexec(int dir, const char *path, int flags, int mode) {
    int fd;
    do { fd = openat(dir, path, flags | O_CLOEXEC, mode); } while (fd < 0 && errno == EINTR);
    return fd;
}

int tend_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        p += n; len -= (size_t)n;
    }
    return 0;
}

// ---- spawn ----
// The synchronous spawn's child runs on this private stack while the parent is suspended (CLONE_VFORK),
// so one stack serves every such spawn of this single-threaded daemon. An asynchronous spawn's child has
// its own stack (tend_child_stack_take) until it has exec'd or exited.
#define TEND_CHILD_STACK (64 * 1024)
static char *child_stack;

// The child shares our address space and, without CLONE_SETTLS, our thread's TLS: with an asynchronous
// spawn it runs beside the parent, so it must not write errno (glibc's wrappers do on failure) or any
// other libc state. It makes raw system calls that return -errno. Without the x86-64 asm below (where
// tend_spawn_async is refused) it goes through syscall(2), which is safe under CLONE_VFORK only.
#if defined(__x86_64__)
__attribute__((no_sanitize("address", "undefined"))) static inline long rs(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}
#else
static long rs(long n, long a, long b, long c, long d) {
    long r = syscall(n, a, b, c, d);
    return r < 0 ? -errno : r;
}
#endif

// The child side is not instrumented by sanitizers: their runtime keeps per-thread state, which an
// asynchronous child would share with the running parent.
#define TEND_CHILD_SIDE __attribute__((no_sanitize("address", "undefined")))

TEND_CHILD_SIDE static long dup_to(int fd, int target) {
    if (fd == target) {               // dup2 would be a no-op and keep FD_CLOEXEC
        long fl = rs(SYS_fcntl, fd, F_GETFD, 0, 0);
        return fl < 0 ? fl : rs(SYS_fcntl, fd, F_SETFD, fl & ~FD_CLOEXEC, 0);
    }
    long r = rs(SYS_dup3, fd, target, 0, 0);
    return r < 0 ? r : 0;
}

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

struct tend_k_sigaction { void *handler; unsigned long flags; void *restorer; unsigned long mask; };

TEND_CHILD_SIDE static int child_main(void *arg) {
    tend_spawn_plan *p = arg;
    long r = 0;
    int step = TEND_STEP_NONE;
    // With CLONE_FILES we still share the daemon's fd table: take a private copy of the few low fds
    // we need before touching any fd (a dup2 on the shared table would change the daemon's).
    if (p->share_files && (r = rs(SYS_close_range, p->keep_below, ~0U, CLOSE_RANGE_UNSHARE, 0)) < 0) {
        step = TEND_STEP_UNSHARE_FILES; goto fail;
    }
    // Signal dispositions are per process here (no CLONE_SIGHAND): reset them (an ignored signal stays
    // ignored across execve), then the mask, which survives execve and is full of the daemon's signals.
    struct tend_k_sigaction dfl = {SIG_DFL, 0, 0, 0};
    for (int s = 1; s < 65; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        (void)rs(SYS_rt_sigaction, s, (long)&dfl, 0, 8);
    }
    if ((r = rs(SYS_setsid, 0, 0, 0, 0)) < 0) { step = TEND_STEP_SETSID; goto fail; }
    if (p->cgroup_fd >= 0 && !p->joined_by_clone) {
        long procs = rs(SYS_openat, p->cgroup_fd, (long)"cgroup.procs", O_WRONLY | O_CLOEXEC, 0);
        if (procs < 0) { r = procs; step = TEND_STEP_CGROUP; goto fail; }
        r = rs(SYS_write, procs, (long)"0", 1, 0);
        (void)rs(SYS_close, procs, 0, 0, 0);
        if (r != 1) { if (r >= 0) r = -EIO; step = TEND_STEP_CGROUP; goto fail; }
    }
    if ((r = dup_to(p->stdin_fd, 0)) < 0 || (r = dup_to(p->stdout_fd, 1)) < 0 || (r = dup_to(p->stderr_fd, 2)) < 0) {
        step = TEND_STEP_DUP; goto fail;
    }
    // pty: the slave (now fd 0) becomes the controlling terminal of the session setsid() created.
    if (p->controlling_tty && (r = rs(SYS_ioctl, 0, TIOCSCTTY, 0, 0)) < 0) { step = TEND_STEP_CTTY; goto fail; }
    // Everything else the daemon holds is O_CLOEXEC; mark the rest too in case a library leaked one.
    (void)rs(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC, 0);
    if (p->cwd && (r = rs(SYS_chdir, (long)p->cwd, 0, 0, 0)) < 0) { step = TEND_STEP_CHDIR; goto fail; }
    if (p->set_ids) {
        if ((r = rs(SYS_setgroups, p->ngroups, (long)p->groups, 0, 0)) < 0) { step = TEND_STEP_SETGROUPS; goto fail; }
        if ((r = rs(SYS_setgid, p->gid, 0, 0, 0)) < 0) { step = TEND_STEP_SETGID; goto fail; }
        if ((r = rs(SYS_setuid, p->uid, 0, 0, 0)) < 0) { step = TEND_STEP_SETUID; goto fail; }
    }
    unsigned long empty = 0;
    (void)rs(SYS_rt_sigprocmask, SIG_SETMASK, (long)&empty, 0, 8);
    r = rs(SYS_execve, (long)p->path, (long)p->argv, (long)p->envp, 0);
    step = TEND_STEP_EXEC;
fail:
    // Shared memory (CLONE_VM): a synchronous parent reads these after we exit. An asynchronous one
    // reads the same two numbers from the report pipe (atomic: 8 bytes < PIPE_BUF), then its EOF.
    p->child_errno = (int)-r;
    p->failed_step = step;
    if (p->report_fd >= 0) {
        int rec[2] = {step, (int)-r};
        (void)rs(SYS_write, p->report_fd, (long)rec, sizeof rec, 0);
    }
    for (;;) (void)rs(SYS_exit_group, 127, 0, 0, 0);
}

#if defined(__x86_64__)
// clone3 with a new stack and a function to run there (glibc has no public wrapper): the child returns
// from the syscall on its new stack with the parent's registers, so fn and arg travel in r8/r9 (which
// the syscall preserves), and it must never return into the parent's frames: it calls fn and exits.
//   long tend_clone3_run(struct clone_args *args, size_t size, int (*fn)(void *), void *arg)
__asm__(
    ".text\n"
    ".globl tend_clone3_run\n"
    ".type tend_clone3_run,@function\n"
    "tend_clone3_run:\n"
    "    mov %rdx, %r8\n"
    "    mov %rcx, %r9\n"
    "    mov $435, %eax\n"          // SYS_clone3
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jnz 1f\n"
    "    xor %ebp, %ebp\n"          // child: rsp = stack + stack_size (16-byte aligned)
    "    mov %r9, %rdi\n"
    "    call *%r8\n"
    "    mov %eax, %edi\n"
    "    mov $60, %eax\n"           // SYS_exit (child_main never returns: it execs or _exits)
    "    syscall\n"
    "    hlt\n"
    "1:  ret\n"
    ".size tend_clone3_run, .-tend_clone3_run\n");
long tend_clone3_run(void *args, size_t size, int (*fn)(void *), void *arg);

struct tend_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
static int clone3_unusable;   // set once clone3/CLONE_INTO_CGROUP was refused: use clone + cgroup.procs
#endif

void tend_spawn_without_clone3(void) {
#if defined(__x86_64__)
    clone3_unusable = 1;
#endif
}

// Clones the child onto `stack` (TEND_CHILD_STACK bytes) with `flags` (+ CLONE_PIDFD, SIGCHLD).
static pid_t spawn_on(tend_spawn_plan *p, int flags, char *stack) {
    p->pidfd = -1;
    p->child_errno = 0;
    p->failed_step = TEND_STEP_NONE;
    // Block all signals across clone so the child never runs a handler on the shared address space.
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    int pidfd = -1;
    flags |= CLONE_PIDFD;
    pid_t pid = -1;
    int saved = 0;
    p->joined_by_clone = 0;
#if defined(__x86_64__)
    if (p->cgroup_fd >= 0 && !clone3_unusable) {
        struct tend_clone_args a;
        memset(&a, 0, sizeof a);
        a.flags = (uint64_t)flags | CLONE_INTO_CGROUP;
        a.pidfd = (uint64_t)(uintptr_t)&pidfd;
        a.exit_signal = SIGCHLD;
        a.stack = (uint64_t)(uintptr_t)stack;
        a.stack_size = TEND_CHILD_STACK;
        a.cgroup = (uint64_t)p->cgroup_fd;
        p->joined_by_clone = 1;
        long r = tend_clone3_run(&a, sizeof a, child_main, p);
        if (r >= 0) {
            pid = (pid_t)r;
        } else {
            p->joined_by_clone = 0;
            saved = (int)-r;
            // No clone3 (ENOSYS), an older struct (E2BIG), or a cgroup it will not start a child in
            // (EINVAL, EOPNOTSUPP, EBUSY...): the old way, this time and (for the first two) from now on.
            if (saved == ENOSYS || saved == E2BIG) clone3_unusable = 1;
            if (saved == EAGAIN || saved == ENOMEM) { sigprocmask(SIG_SETMASK, &old, NULL); errno = saved; return -1; }
        }
    }
#endif
    if (pid < 0) {
        pid = clone(child_main, stack + TEND_CHILD_STACK, flags | SIGCHLD, p, &pidfd);
        saved = errno;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) { errno = saved; return -1; }
    p->pidfd = pidfd;
    return pid;
}

pid_t tend_spawn(tend_spawn_plan *p) {
    if (!child_stack) {
        child_stack = mmap(NULL, TEND_CHILD_STACK, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (child_stack == MAP_FAILED) { child_stack = NULL; return -1; }
    }
    p->report_fd = -1;
    return spawn_on(p, CLONE_VM | CLONE_VFORK | (p->share_files ? CLONE_FILES : 0), child_stack);
}

// Stacks of asynchronous children: a few are kept for reuse, the rest unmapped when given back.
#define TEND_STACKS_KEPT 16
static void *stacks_kept[TEND_STACKS_KEPT];
static int nstacks_kept;

void *tend_child_stack_take(void) {
    if (nstacks_kept > 0) return stacks_kept[--nstacks_kept];
    void *s = mmap(NULL, TEND_CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    return s == MAP_FAILED ? NULL : s;
}

void tend_child_stack_give(void *s) {
    if (!s) return;
    if (nstacks_kept < TEND_STACKS_KEPT) stacks_kept[nstacks_kept++] = s;
    else munmap(s, TEND_CHILD_STACK);
}

pid_t tend_spawn_async(tend_spawn_plan *p, void *stack, int report_fd) {
#if defined(__x86_64__)
    if (p->share_files || !stack || report_fd < 3) { errno = EINVAL; return -1; }
    p->report_fd = report_fd;
    return spawn_on(p, CLONE_VM, stack);
#else
    (void)p; (void)stack; (void)report_fd;
    errno = ENOSYS;
    return -1;
#endif
}

// ---- crash recovery ----
#include <sys/ioctl.h>
#include <sys/stat.h>
struct tend_pidfd_info {            // struct pidfd_info, PIDFD_INFO_SIZE_VER0 + coredump fields (72 bytes)
    uint64_t mask, cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
    uint32_t coredump_mask, spare;
};
#define TEND_PIDFD_INFO_EXIT (1UL << 3)
#define TEND_PIDFD_GET_INFO _IOWR(0xFF, 11, struct tend_pidfd_info)

int tend_pidfd_exit_status(int pidfd, int *wait_status) {
    struct tend_pidfd_info info;
    memset(&info, 0, sizeof info);
    info.mask = TEND_PIDFD_INFO_EXIT;
    if (ioctl(pidfd, TEND_PIDFD_GET_INFO, &info) < 0) return -1;
    if (!(info.mask & TEND_PIDFD_INFO_EXIT)) return 0;
    *wait_status = info.exit_code;
    return 1;
}

int tend_memfd(const char *name, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) < 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

void *tend_map_shared(int fd, size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

int tend_unmap(void *addr, size_t size) { return munmap(addr, size); }

void *tend_map_anon(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

long long tend_fd_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -1;
    return (long long)st.st_size;
}

int tend_wifexited(int status) { return WIFEXITED(status); }
int tend_wexitstatus(int status) { return WEXITSTATUS(status); }
int tend_wtermsig(int status) { return WTERMSIG(status); }

int tend_set_cloexec(int fd, int on) {
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFD, on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC));
}

int tend_dup_above(int fd, int min) { return fcntl(fd, F_DUPFD_CLOEXEC, min); }
int tend_dup3_cloexec(int fd, int target) { return dup3(fd, target, O_CLOEXEC); }


// ---- idle footprint: code pages mapped at start-up but never used again ----

#include <link.h>

static int trim_segment(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    size_t *total = data;
    if (info->dlpi_name && strstr(info->dlpi_name, "vdso")) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W)) continue;   // only read-only segments
        uintptr_t start = (info->dlpi_addr + ph->p_vaddr + 4095) & ~(uintptr_t)4095;   // never a shared page
        uintptr_t end = (info->dlpi_addr + ph->p_vaddr + ph->p_filesz) & ~(uintptr_t)4095;   // whole file pages only
        if (end <= start) continue;
        if (madvise((void *)start, end - start, MADV_RANDOM) == 0 &&
            madvise((void *)start, end - start, MADV_DONTNEED) == 0) *total += end - start;
    }
    return 0;
}

size_t tend_trim_code_pages(void) {
    size_t total = 0;
    dl_iterate_phdr(trim_segment, &total);
    return total;
}

// files: see CShims.h.
int tend_sync_file_range_write(int fd, long long offset, long long count) {
    return sync_file_range(fd, (off_t)offset, (off_t)count, SYNC_FILE_RANGE_WRITE);
}

// ---- service manager notifications without blocking (issue 18) ----
// libsystemd's sd_notify / sd_pid_notify_with_fds send on a blocking socket; a manager that does not read
// (stopped, stalled) queues at most net.unix.max_dgram_qlen (10) datagrams, and the next send blocked the
// whole event loop in sendmsg (found by the chaos tests). C because of the SCM_RIGHTS control message.
// The kernel attaches our credentials itself (the manager's socket has SO_PASSCRED).
#include <stddef.h>
#include <sys/un.h>
int tend_notify_nonblocking(const char *msg, int fd) {
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || !*e) return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(e);
    if (n >= sizeof sa.sun_path || (e[0] != '/' && e[0] != '@')) { errno = EINVAL; return -1; }
    memcpy(sa.sun_path, e, n);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = 0;          // abstract namespace
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (e[0] == '/' ? 1 : 0));
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return -1;
    struct iovec iov = { (void *)msg, strlen(msg) };
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &sa; mh.msg_namelen = salen; mh.msg_iov = &iov; mh.msg_iovlen = 1;
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } c;
    if (fd >= 0) {
        memset(&c, 0, sizeof c);
        mh.msg_control = c.buf; mh.msg_controllen = sizeof c.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    ssize_t r = sendmsg(s, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    int saved = errno;
    close(s);
    errno = saved;
    return r < 0 ? -1 : 1;
}

// ---- pty ----

int tend_pty_open(int *master, int *slave) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    char name[128];
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof name) != 0) {
        int e = errno; close(m); errno = e; return -1;
    }
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) { int e = errno; close(m); errno = e; return -1; }
    int fl = fcntl(m, F_GETFL);
    if (fl < 0 || fcntl(m, F_SETFL, fl | O_NONBLOCK) < 0) { int e = errno; close(m); close(s); errno = e; return -1; }
    *master = m;
    *slave = s;
    return 0;
}

int tend_pty_set_size(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_row = rows;
    ws.ws_col = cols;
    return ioctl(fd, TIOCSWINSZ, &ws);
}
