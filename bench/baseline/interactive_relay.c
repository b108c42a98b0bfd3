// Baselines for the interactive sessions (PTY over WebSocket, TCP tunnels): the same kernel work as
// tendd without WebSocket framing, one connection at a time, poll() on two fds.
//   interactive_relay pty PORT            per connection: a new pty running `cat`, bytes relayed both ways
//   interactive_relay tcp PORT TARGET     per connection: connect to 127.0.0.1:TARGET, bytes relayed both ways
#include "common.h"
#include <poll.h>
#include <pty.h>

static void relay(int a, int b) {
    static char buf[256 << 10];
    struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; return; }
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n <= 0) return;
            int to = p[1 - i].fd;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(to, buf + off, n - off);
                if (w < 0) { if (errno == EINTR || errno == EAGAIN) { struct pollfd q = {.fd = to, .events = POLLOUT}; poll(&q, 1, -1); continue; } return; }
                off += w;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: interactive_relay pty PORT | tcp PORT TARGET\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    int ls = listen_on(atoi(argv[2]));
    int fl = fcntl(ls, F_GETFL); fcntl(ls, F_SETFL, fl & ~O_NONBLOCK);
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        int one = 1; setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (strcmp(argv[1], "pty") == 0) {
            int m;
            struct winsize ws = {.ws_row = 24, .ws_col = 80};
            pid_t pid = forkpty(&m, NULL, NULL, &ws);
            if (pid == 0) { execlp("cat", "cat", (char *)NULL); _exit(127); }
            if (pid < 0) { close(c); continue; }
            relay(c, m);
            kill(pid, SIGKILL); waitpid(pid, NULL, 0); close(m);
        } else {
            int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (connect(t, (void *)&a, sizeof a) == 0) relay(c, t);
            close(t);
        }
        close(c);
    }
}
