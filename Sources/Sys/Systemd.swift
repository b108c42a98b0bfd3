// Systemd: the daemon's side of the sd-daemon(3) protocol, through libsystemd (the only Swift code
// that imports CSystemd): the fds passed by socket activation with their names
// (C: sd_listen_fds_with_names(3)), notifications to the manager (C: sd_notify(3)) and the watchdog
// interval (C: sd_watchdog_enabled(3)).
//
// libsystemd reads the process environment (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET,
// WATCHDOG_USEC, WATCHDOG_PID), so a test fakes systemd by setting those variables and owning the
// sockets behind them: a datagram socket bound to NOTIFY_SOCKET, listeners placed at fd 3, 4, ...
// Without NOTIFY_SOCKET every notification is a no-op (sd_notify returns 0).
import Glibc
import CSystemd
import CShims

/// One fd handed over by systemd: a socket of the `.socket` unit (named by `FileDescriptorName=`,
/// default "<unit>.socket") or, later, an fd from the fd store (named by `FDNAME=`).
public struct InheritedFD: Equatable, Sendable {
    public let fd: Int32
    public let name: String
    /// A listening SOCK_STREAM socket (TCP or unix): something tendd can accept on (C: sd_is_socket(3)).
    public let isListeningStream: Bool
    public init(fd: Int32, name: String, isListeningStream: Bool) {
        self.fd = fd; self.name = name; self.isListeningStream = isListeningStream
    }
}

public enum Systemd {
    /// The first passed fd (SD_LISTEN_FDS_START).
    public static let firstInheritedFD: Int32 = 3

    /// The fds systemd passed to this process, in order, with their names; [] when not socket-activated
    /// (no LISTEN_FDS, or LISTEN_PID is another process). The LISTEN_* variables are removed from the
    /// environment, so a second call returns [] and children never see them.
    /// C: sd_listen_fds_with_names(3) (which also marks the fds close-on-exec).
    public static func inheritedFDs() throws -> [InheritedFD] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let n = sd_listen_fds_with_names(1, &names)
        if n < 0 { throw SysError("sd_listen_fds_with_names", errno: -n) }
        defer {
            if let names {
                for i in 0..<Int(n) { free(names[i]) }
                free(names)
            }
        }
        var out: [InheritedFD] = []
        for i in 0..<n {
            let fd = firstInheritedFD + i
            let name = names?[Int(i)].map { String(cString: $0) } ?? "unknown"
            out.append(InheritedFD(fd: fd, name: name, isListeningStream: sd_is_socket(fd, AF_UNSPEC, Int32(SOCK_STREAM.rawValue), 1) > 0))
        }
        return out
    }

    /// True when a manager is listening for notifications ($NOTIFY_SOCKET is set).
    public static var notificationsEnabled: Bool {
        guard let v = Glibc.getenv("NOTIFY_SOCKET") else { return false }
        return v.pointee != 0
    }

    /// Sends newline-separated `KEY=VALUE` assignments ("READY=1", "STATUS=...", "WATCHDOG=1",
    /// "STOPPING=1") to the manager. Returns false when there is no NOTIFY_SOCKET (nothing was sent).
    /// C: sd_notify(3). One datagram on a fresh socket per call. It blocks while the manager's queue is full
    /// (a stalled manager): the daemon uses `notifyWithoutBlocking` instead.
    @discardableResult
    public static func notify(_ state: String) throws -> Bool {
        let r = sd_notify(0, state)
        if r < 0 { throw SysError("sd_notify", errno: -r) }
        return r > 0
    }

    public enum NotifyResult: Equatable, Sendable {
        case sent, noManager
        /// The manager's queue is full (it is not reading): try again later.
        case full
        case failed(Int32)
    }

    /// Sends `state` (and `fd` with SCM_RIGHTS, for FDSTORE=1) without ever blocking: a manager that does not
    /// read makes this `.full`, where sd_notify(3) would block the caller. C: sendmsg(2) with MSG_DONTWAIT.
    public static func notifyWithoutBlocking(_ state: String, fd: Int32 = -1) -> NotifyResult {
        let r = tend_notify_nonblocking(state, fd)
        if r > 0 { return .sent }
        if r == 0 { return .noManager }
        return errno == EAGAIN || errno == EWOULDBLOCK ? .full : .failed(errno)
    }

    /// The watchdog timeout the manager expects pings within, in microseconds; nil when the watchdog
    /// is off for this process (no WATCHDOG_USEC, or WATCHDOG_PID names another process).
    /// C: sd_watchdog_enabled(3).
    public static func watchdogTimeoutUsec() throws -> UInt64? {
        var usec: UInt64 = 0
        let r = sd_watchdog_enabled(0, &usec)
        if r < 0 { throw SysError("sd_watchdog_enabled", errno: -r) }
        return r > 0 && usec > 0 ? usec : nil
    }

    /// How often to send WATCHDOG=1 for a given timeout: half of it (sd_watchdog_enabled(3) advises
    /// pinging at half the interval), in milliseconds, at least 1.
    public static func watchdogPingIntervalMs(timeoutUsec: UInt64) -> Int64 {
        max(1, Int64(clamping: timeoutUsec / 2000))
    }

    /// Test-only: blocks the calling thread (the loop) forever, so the watchdog sees a stuck daemon.
    /// Signals that are not blocked (SIGKILL, the watchdog's SIGABRT) still end the process.
    public static func freezeForever() -> Never {
        while true { _ = sleep(3600) }
    }
}
