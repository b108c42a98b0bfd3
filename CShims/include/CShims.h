// CShims: the few things Swift cannot reach cleanly on Linux.
// Every symbol is prefixed `tend_`; each function says why it must be C. The shim returns raw
// results (-1 and errno on failure, like the kernel); policy lives in Swift (module Sys).
#ifndef TEND_CSHIMS_H
#define TEND_CSHIMS_H

#include <stdint.h>
#include <sys/types.h>

// ---- epoll: `struct epoll_event` is packed on x86_64, which Swift imports badly. ----
typedef struct { uint32_t events; uint64_t data; } tend_epoll_event;
extern const uint32_t TEND_EPOLLIN, TEND_EPOLLOUT, TEND_EPOLLERR, TEND_EPOLLHUP, TEND_EPOLLRDHUP, TEND_EPOLLET;
int tend_epoll_create(void);
int tend_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int tend_epoll_wait(int epfd, tend_epoll_event *out, int max, int timeout_ms);
extern const int TEND_EPOLL_CTL_ADD, TEND_EPOLL_CTL_MOD, TEND_EPOLL_CTL_DEL;

// ---- pidfd: no glibc wrappers for pidfd_open/pidfd_send_signal; waitid(P_PIDFD) fills a siginfo_t union. ----
int tend_pidfd_open(pid_t pid);
int tend_pidfd_send_signal(int pidfd, int sig);
// Non-blocking reap through a pidfd. Returns 1 and fills *code (CLD_EXITED/CLD_KILLED/CLD_DUMPED) and
// *status (exit status or signal) when the child was reaped, 0 when it has not exited yet, -1 on error.
// With `peek` the child is left waitable (WNOWAIT).
int tend_pidfd_wait(int pidfd, int peek, int *code, int *status);
// The pid of an exited child, left waitable (WNOWAIT); 0 if none. siginfo_t is a union.
pid_t tend_peek_exited(void);
// Reap one exited child by pid, without blocking.
void tend_reap_pid(pid_t pid);
extern const int TEND_CLD_EXITED, TEND_CLD_KILLED, TEND_CLD_DUMPED;

// ---- signals: sigset_t is opaque to Swift and signalfd_siginfo is a large struct. ----
// Blocks `signals` (n entries) for the calling thread and returns a non-blocking, close-on-exec signalfd for them.
int tend_signalfd_open(const int *signals, int n);
// Reads one signal from the signalfd: returns its number (and fills *pid with the sender), 0 if none pending, -1 on error.
int tend_signalfd_read(int fd, int *pid);
int tend_signalfd_read_many(int fd, int *signos, int *pids, int max); // up to max (<= 8) signals and senders; 0 when none
// Ignore SIGPIPE (writes to a vanished client must return EPIPE, not kill the daemon).
void tend_ignore_sigpipe(void);

// ---- misc syscalls that are variadic or missing in Swift's Glibc overlay ----
int tend_set_pipe_size(int fd, int size);     // fcntl(F_SETPIPE_SZ), variadic
int tend_set_nonblock_cloexec(int fd);         // fcntl(F_GETFL/F_SETFL/F_SETFD), variadic
int tend_set_child_subreaper(void);            // prctl(PR_SET_CHILD_SUBREAPER), variadic
int tend_pipe(int fds[2], int size_hint);      // pipe2(O_CLOEXEC|O_NONBLOCK) both ends, optional F_SETPIPE_SZ
int tend_set_blocking(int fd);                 // clear O_NONBLOCK (the child's end of a pipe)
int tend_child_pipe(int fds[2], int size_hint, int child_reads); // pipe2(O_CLOEXEC), O_NONBLOCK on our end only, optional F_SETPIPE_SZ
int tend_accept(int listener);                 // accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) needs _GNU_SOURCE
int tend_open_cloexec(const char *path, int flags, int mode); // open(2) is variadic
int tend_openat_cloexec(int dir, const char *path, int flags, int mode); // openat(2), relative to `dir`

// ---- spawn: the child side must run no Swift code (shared address space with CLONE_VM, no allocation). ----
typedef struct {
    const char *path;          // absolute path to execve (PATH resolved by the parent)
    char *const *argv;         // NULL-terminated
    char *const *envp;         // NULL-terminated
    const char *cwd;           // NULL: inherit
    int stdin_fd, stdout_fd, stderr_fd;   // become 0, 1, 2 in the child (must be >= 3 in the parent)
    int set_ids;               // when non-zero: setgroups(ngroups, groups), setgid(gid), setuid(uid)
    uid_t uid; gid_t gid;
    const gid_t *groups; int ngroups;
    // >= 0: an O_DIRECTORY fd of a cgroup v2 directory the child starts in: created there directly
    // (clone3 CLONE_INTO_CGROUP: no migration, whose write lock can stall for an RCU grace period), or,
    // where clone3 cannot do that, moved there by the child (writes "0" to <dir>/cgroup.procs).
    int cgroup_fd;
    // When non-zero: clone with CLONE_FILES (no copy of the daemon's fd table, which may hold tens of
    // thousands of fds); the child's first act is close_range(keep_below, ~0U, CLOSE_RANGE_UNSHARE),
    // which gives it a private table holding only fds < keep_below. Every fd named above must be below it.
    int share_files;
    unsigned int keep_below;
    // pty: when non-zero, stdin_fd is a pty slave that becomes the child's controlling terminal
    // (ioctl TIOCSCTTY after setsid: the child leads a new session, so it may take one).
    int controlling_tty;
    // internal: an asynchronous spawn's report pipe (write end), -1 for a synchronous one
    int report_fd;
    // out:
    int pidfd;                 // the child's pidfd (CLONE_PIDFD)
    int joined_by_clone;       // 1 when clone3 placed the child in cgroup_fd (internal, read by the child)
    int child_errno;           // errno of the failed step in the child, 0 when execve succeeded
    int failed_step;           // which step failed (TEND_STEP_*)
} tend_spawn_plan;
enum { TEND_STEP_NONE = 0, TEND_STEP_UNSHARE_FILES, TEND_STEP_SETSID, TEND_STEP_CGROUP, TEND_STEP_DUP, TEND_STEP_CHDIR,
       TEND_STEP_SETGROUPS, TEND_STEP_SETGID, TEND_STEP_SETUID, TEND_STEP_EXEC, TEND_STEP_CTTY };
// clone3/clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) on a private stack; the parent resumes once the child has
// exec'd or failed. Returns the pid (>0) with plan->pidfd set; if the child failed before exec it has
// already exited: returns its pid with plan->child_errno/failed_step set (reap it through plan->pidfd).
// Returns -1 with errno if clone itself failed.
pid_t tend_spawn(tend_spawn_plan *plan);
// The same child, started without waiting for it (CLONE_VM without CLONE_VFORK; x86-64 only, else -1 ENOSYS):
// it runs on `stack` (from tend_child_stack_take) and reads `plan` and everything it points to until it
// has exec'd or exited, so all of that must stay alive and unchanged until `report_fd`'s read end shows
// EOF. `report_fd` is the write end of an O_CLOEXEC pipe, >= 3: the child writes two ints {failed_step,
// errno} there if a step fails, and execve or exit closes it. The caller closes its own copy of the write
// end and the child's ends of the stdio pipes right after: the child has its own fd table (no CLONE_FILES:
// plan->share_files must be 0). Returns the pid with plan->pidfd set, or -1 with errno if clone failed.
pid_t tend_spawn_async(tend_spawn_plan *plan, void *stack, int report_fd);
void *tend_child_stack_take(void);        // NULL when out of memory
void tend_child_stack_give(void *stack);
// From now on start children with clone and move them into their cgroup (for comparison and tests).
void tend_spawn_without_clone3(void);

// ---- crash recovery ----
// The wait status of an exited process through its pidfd even when we are not (or no longer) its parent
// and it was reaped by someone else: ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT), Linux 6.15+ (no libc header yet).
// Returns 1 and fills *wait_status when it has exited, 0 while it runs, -1 (errno) when unsupported or on error.
int tend_pidfd_exit_status(int pidfd, int *wait_status);

// sd_notify(3) (with one fd: FDSTORE) on a non-blocking socket: 1 sent, 0 no NOTIFY_SOCKET, -1 + errno
// (EAGAIN: the manager's queue is full). libsystemd's send blocks, and with it the event loop.
int tend_notify_nonblocking(const char *msg, int fd);
// memfd_create(MFD_CLOEXEC) + ftruncate: a shared-memory file for a crash-safe journal.
int tend_memfd(const char *name, size_t size);

/// Drops the page mappings of every read-only, file-backed segment of the program and its libraries
/// (code, read-only data) and marks them MADV_RANDOM, so that from now on only the pages actually
/// executed or read come back (one page per fault, no fault-around). Writable segments are not touched.
/// Returns the number of bytes advised.
size_t tend_trim_code_pages(void);
// mmap(MAP_SHARED) of a whole fd / munmap.
void *tend_map_shared(int fd, size_t size);
int tend_unmap(void *addr, size_t size);
/// Anonymous private zero pages (mmap); untouched pages cost nothing. NULL on failure.
void *tend_map_anon(size_t size);
// Size of a file (fstat), -1 on error.
long long tend_fd_size(int fd);
// Decoding a wait status (macros).
int tend_wifexited(int status);
int tend_wexitstatus(int status);
int tend_wtermsig(int status);
// Clear / set FD_CLOEXEC (re-exec hands fds to the new image).
int tend_set_cloexec(int fd, int on);
// dup2(2) / fcntl(F_DUPFD_CLOEXEC, min) (variadic).
int tend_dup_above(int fd, int min);
int tend_dup3_cloexec(int fd, int target);   // dup3(O_CLOEXEC) needs _GNU_SOURCE

// pty: a new pseudo-terminal pair: posix_openpt + grantpt + unlockpt + ptsname_r + open, both ends
// O_CLOEXEC, the master O_NONBLOCK, neither becomes our controlling terminal (O_NOCTTY). C because the
// tty ioctls are variadic. Returns 0, or -1 with errno (nothing left open).
int tend_pty_open(int *master, int *slave);
// pty: ioctl(TIOCSWINSZ): the terminal's size (the foreground process group gets SIGWINCH).
int tend_pty_set_size(int fd, unsigned short rows, unsigned short cols);

// Kill every process in a cgroup v2 leaf: write "1" to cgroup.kill (needs Linux 5.14).
int tend_write_all(int fd, const void *buf, size_t len);

// files: sync_file_range(2) with SYNC_FILE_RANGE_WRITE (a GNU extension, needs _GNU_SOURCE): start
// write-back of an upload's pages without waiting, so its final fsync does not stall the loop for long.
int tend_sync_file_range_write(int fd, long long offset, long long count);

#endif
