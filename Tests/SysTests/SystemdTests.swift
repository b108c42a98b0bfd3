// Systemd (sd-daemon through libsystemd) against a fake manager: the test sets the environment systemd
// would set (LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*) and owns the sockets behind it: listeners moved to
// fd 3, 4, ... and a datagram socket bound where NOTIFY_SOCKET points. Everything is restored afterwards.
import XCTest
import Glibc
@testable import Sys

final class SystemdTests: XCTestCase {
    var fdsBefore = 0
    let vars = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]
    var savedEnv: [String: String?] = [:]

    override func setUp() {
        fdsBefore = FD.openCount()
        for v in vars { savedEnv[v] = Proc.getenv(v); unsetenv(v) }
    }
    override func tearDown() {
        for (k, v) in savedEnv { if let v { setenv(k, v, 1) } else { unsetenv(k) } }
        XCTAssertEqual(FD.openCount(), fdsBefore, "fd leak")
    }

    // MARK: notify

    /// A datagram socket the test owns, bound to `path` (a leading "@" means the abstract namespace).
    private func notifyReceiver(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &sun.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = (i == 0 && b == UInt8(ascii: "@")) ? 0 : b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (path.hasPrefix("@") ? 0 : 1))
        let r = withUnsafePointer(to: &sun) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        XCTAssertEqual(r, 0, "bind \(path): errno \(errno)")
        return fd
    }

    private func receive(_ fd: Int32) -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n < 0 ? nil : String(decoding: buf[0..<n], as: UTF8.self)
    }

    func testNotifyWithoutSocketIsANoOp() throws {
        XCTAssertFalse(Systemd.notificationsEnabled)
        XCTAssertFalse(try Systemd.notify("READY=1"))
        XCTAssertFalse(try Systemd.notify("WATCHDOG=1"))
    }

    func testNotifyDeliversTheStateToNotifySocket() throws {
        let path = "/tmp/tend-notify-test-\(getpid())"
        unlink(path)
        let fd = try notifyReceiver(path)
        defer { FD.close(fd); unlink(path) }
        setenv("NOTIFY_SOCKET", path, 1)
        XCTAssertTrue(Systemd.notificationsEnabled)
        XCTAssertNil(receive(fd), "nothing before the first notify")
        XCTAssertTrue(try Systemd.notify("READY=1\nSTATUS=0 running, 0 exited"))
        XCTAssertEqual(receive(fd), "READY=1\nSTATUS=0 running, 0 exited")
        XCTAssertTrue(try Systemd.notify("WATCHDOG=1"))
        XCTAssertTrue(try Systemd.notify("STOPPING=1"))
        XCTAssertEqual(receive(fd), "WATCHDOG=1")
        XCTAssertEqual(receive(fd), "STOPPING=1")
        XCTAssertNil(receive(fd))
        // NOTIFY_SOCKET stays set: later notifications still work.
        XCTAssertEqual(Proc.getenv("NOTIFY_SOCKET"), path)
    }

    func testNotifyToAbstractSocket() throws {
        let name = "@tend-notify-test-\(getpid())"
        let fd = try notifyReceiver(name)
        defer { FD.close(fd) }
        setenv("NOTIFY_SOCKET", name, 1)
        XCTAssertTrue(try Systemd.notify("READY=1"))
        XCTAssertEqual(receive(fd), "READY=1")
    }

    func testNotifyToAMissingSocketThrows() throws {
        setenv("NOTIFY_SOCKET", "/tmp/tend-notify-nobody-listens-\(getpid())", 1)
        XCTAssertThrowsError(try Systemd.notify("READY=1")) { e in
            XCTAssertEqual((e as? SysError)?.call, "sd_notify")
            XCTAssertEqual((e as? SysError)?.errno, ENOENT)
        }
    }

    /// Issue 18: a manager that does not read fills its queue; the send then says `.full` at once instead of
    /// blocking (sd_notify blocked the daemon's loop here), and works again once the manager reads. With an fd
    /// (FDSTORE), the fd arrives by SCM_RIGHTS.
    func testNotifyWithoutBlockingWhenTheManagerDoesNotRead() throws {
        for name in ["/tmp/tend-notify-nb-\(getpid())", "@tend-notify-nb-\(getpid())"] {
            unlink(name)
            let fd = try notifyReceiver(name)
            defer { FD.close(fd); unlink(name) }
            setenv("NOTIFY_SOCKET", name, 1)
            var sent = 0
            let t0 = Clock.monotonicMs()
            while Systemd.notifyWithoutBlocking("WATCHDOG=1") == .sent { sent += 1; if sent > 10_000 { break } }
            XCTAssertLessThan(sent, 10_000, "the queue never filled")
            XCTAssertEqual(Systemd.notifyWithoutBlocking("STATUS=x"), .full)
            XCTAssertLessThan(Clock.monotonicMs() - t0, 2000)
            while receive(fd) != nil {}
            let pipe = try FD.pipe()
            defer { FD.close(pipe.read); FD.close(pipe.write) }
            XCTAssertEqual(Systemd.notifyWithoutBlocking("FDSTORE=1\nFDNAME=p1.out", fd: pipe.read), .sent)
            var buf = [UInt8](repeating: 0, count: 256)
            var ctl = [UInt8](repeating: 0, count: 64)
            let n = buf.withUnsafeMutableBytes { b in
                ctl.withUnsafeMutableBytes { c -> Int in
                    var iov = iovec(iov_base: b.baseAddress, iov_len: b.count)
                    var mh = msghdr()
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        mh.msg_iov = iovp; mh.msg_iovlen = 1
                        mh.msg_control = c.baseAddress; mh.msg_controllen = c.count
                        let r = recvmsg(fd, &mh, Int32(MSG_DONTWAIT) | Int32(MSG_CMSG_CLOEXEC))
                        if r >= 0, mh.msg_controllen >= MemoryLayout<cmsghdr>.size {
                            var got: Int32 = -1
                            memcpy(&got, c.baseAddress! + MemoryLayout<cmsghdr>.size, 4)
                            FD.close(got)
                            return got >= 0 ? r : -2
                        }
                        return r >= 0 ? -3 : r
                    }
                }
            }
            XCTAssertEqual(n, "FDSTORE=1\nFDNAME=p1.out".utf8.count, "the fd must travel with the message")
            XCTAssertEqual(String(decoding: buf[0..<max(0, n)], as: UTF8.self), "FDSTORE=1\nFDNAME=p1.out")
        }
        unsetenv("NOTIFY_SOCKET")
        XCTAssertEqual(Systemd.notifyWithoutBlocking("READY=1"), .noManager)
    }

    // MARK: watchdog

    func testWatchdogInterval() throws {
        XCTAssertNil(try Systemd.watchdogTimeoutUsec(), "no WATCHDOG_USEC: off")
        setenv("WATCHDOG_USEC", "3000000", 1)
        setenv("WATCHDOG_PID", "\(getpid())", 1)
        XCTAssertEqual(try Systemd.watchdogTimeoutUsec(), 3_000_000)
        XCTAssertEqual(Systemd.watchdogPingIntervalMs(timeoutUsec: 3_000_000), 1500)
        XCTAssertEqual(Systemd.watchdogPingIntervalMs(timeoutUsec: 1000), 1, "never a zero interval")
        setenv("WATCHDOG_PID", "\(getpid() + 1)", 1)
        XCTAssertNil(try Systemd.watchdogTimeoutUsec(), "the watchdog of another process")
        unsetenv("WATCHDOG_PID")
        XCTAssertEqual(try Systemd.watchdogTimeoutUsec(), 3_000_000, "without WATCHDOG_PID it is ours")
    }

    // MARK: listen fds

    /// Puts `fds` at 3, 4, ... as systemd would (saving whatever was there), runs `body`, then restores.
    private func withFDsAtStart(_ fds: [Int32], _ body: () throws -> Void) rethrows {
        var saved: [(target: Int32, copy: Int32)] = []
        for (i, fd) in fds.enumerated() {
            let target = Systemd.firstInheritedFD + Int32(i)
            let copy = fcntl(target, F_DUPFD_CLOEXEC, 200)   // -1 when nothing was open there
            saved.append((target, copy))
            XCTAssertEqual(dup2(fd, target), target)
            FD.close(fd)
        }
        defer {
            for (target, copy) in saved {
                if copy >= 0 { dup2(copy, target); FD.close(copy) } else { FD.close(target) }
            }
        }
        try body()
    }

    func testInheritedListenersWithNames() throws {
        let tcp = try Socket.listen(.tcp(host: "127.0.0.1", port: 0))
        let port = Socket.localPort(tcp)
        XCTAssertNotNil(port)
        let path = "/tmp/tend-listen-test-\(getpid()).sock"
        let unix = try Socket.listen(.unix(path: path))
        defer { unlink(path) }
        let pipe = try FD.pipe()
        FD.close(pipe.write)
        try withFDsAtStart([tcp, unix, pipe.read]) {
            setenv("LISTEN_PID", "\(getpid())", 1)
            setenv("LISTEN_FDS", "3", 1)
            setenv("LISTEN_FDNAMES", "tendd:tendd-unix:journal-1", 1)
            let got = try Systemd.inheritedFDs()
            XCTAssertEqual(got, [InheritedFD(fd: 3, name: "tendd", isListeningStream: true),
                                 InheritedFD(fd: 4, name: "tendd-unix", isListeningStream: true),
                                 InheritedFD(fd: 5, name: "journal-1", isListeningStream: false)])
            XCTAssertEqual(Socket.localPort(3), port, "fd 3 is the test's TCP listener")
            // The variables are consumed: children never see them and a second call finds nothing.
            XCTAssertNil(Proc.getenv("LISTEN_FDS"))
            XCTAssertNil(Proc.getenv("LISTEN_PID"))
            XCTAssertNil(Proc.getenv("LISTEN_FDNAMES"))
            XCTAssertEqual(try Systemd.inheritedFDs(), [])
            for fd: Int32 in 3...5 { XCTAssertEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "fd \(fd) close-on-exec") }
            // The inherited TCP listener accepts a real connection.
            let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port!.bigEndian
            sin.sin_addr.s_addr = inet_addr("127.0.0.1")
            let r = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            XCTAssertEqual(r, 0)
            try FD.setNonBlockingCloexec(3)
            let accepted = try Socket.accept(3)
            XCTAssertNotNil(accepted)
            if let accepted { FD.close(accepted) }
            FD.close(c)
        }
    }

    func testListenFDsOfAnotherProcessAreIgnored() throws {
        let tcp = try Socket.listen(.tcp(host: "127.0.0.1", port: 0))
        try withFDsAtStart([tcp]) {
            setenv("LISTEN_PID", "\(getpid() + 1)", 1)
            setenv("LISTEN_FDS", "1", 1)
            XCTAssertEqual(try Systemd.inheritedFDs(), [])
            XCTAssertNil(Proc.getenv("LISTEN_FDS"), "consumed even when not ours")
        }
    }

    func testMissingNamesAreUnknown() throws {
        let tcp = try Socket.listen(.tcp(host: "127.0.0.1", port: 0))
        try withFDsAtStart([tcp]) {
            setenv("LISTEN_PID", "\(getpid())", 1)
            setenv("LISTEN_FDS", "1", 1)
            XCTAssertEqual(try Systemd.inheritedFDs(), [InheritedFD(fd: 3, name: "unknown", isListeningStream: true)])
        }
    }

    func testNotSocketActivated() throws {
        XCTAssertEqual(try Systemd.inheritedFDs(), [])
    }
}
