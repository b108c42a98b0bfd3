// FDStore: systemd's file-descriptor store (C: sd_pid_notify_with_fds(3) with FDSTORE=1 / FDSTOREREMOVE=1).
// The fds that hold a process's truth (pidfd, pipe ends, journal memfd) are kept by the service manager
// so that a restarted daemon gets them back through sd_listen_fds_with_names. FDPOLL=0: systemd must
// not drop a pipe whose writer exited while we were down (its unread output is still in it).
import Glibc
import CSystemd

public enum FDStore {
    /// True when a service manager is listening (NOTIFY_SOCKET is set).
    public static var available: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Hands `fd` to the manager under `name` (letters, digits, '.', '_', '-'; no ':').
    @discardableResult
    public static func store(_ fd: Int32, name: String) -> Bool {
        var fds = [fd]
        let r = fds.withUnsafeMutableBufferPointer { p in
            sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDPOLL=0\nFDNAME=\(name)", p.baseAddress, 1)
        }
        return r > 0
    }

    /// Drops every stored fd named `name`.
    @discardableResult
    public static func remove(name: String) -> Bool {
        sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=\(name)") > 0
    }
}
