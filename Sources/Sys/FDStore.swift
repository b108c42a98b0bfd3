// FDStore: systemd's file-descriptor store (FDSTORE=1 / FDSTOREREMOVE=1 messages with the fd attached).
// The fds that hold a process's truth (pidfd, pipe ends, journal memfd) are kept by the service manager
// so that a restarted daemon gets them back through sd_listen_fds_with_names. FDPOLL=0: systemd must
// not drop a pipe whose writer exited while we were down (its unread output is still in it).
// The messages are sent with Systemd.notifyWithoutBlocking (the Server's Notifier queues them while the
// manager does not read); libsystemd's sd_pid_notify_with_fds blocked the loop then (issue 18).
import Glibc

public enum FDStore {
    /// True when a service manager is listening (NOTIFY_SOCKET is set).
    public static var available: Bool { getenv("NOTIFY_SOCKET") != nil }
}
