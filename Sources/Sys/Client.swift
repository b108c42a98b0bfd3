// Client: the client side of the socket layer, for the `tend` CLI. Blocking connect to TCP (by name,
// via getaddrinfo) or a unix socket, readiness waits (poll) so reads can have deadlines and be
// interrupted by a signalfd, whole-buffer writes, and the terminal questions (isatty, width).
// The daemon never uses this file.
import Glibc
import CShims

/// Where a client connects: the `--url` of `tend` (`http://host:port`, `unix:/path`).
public enum ClientAddress: Equatable, Sendable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let h, let p): return h.contains(":") ? "http://[\(h)]:\(p)" : "http://\(h):\(p)"
        case .unix(let p): return "unix:\(p)"
        }
    }
}

extension Socket {
    /// Connects a blocking, close-on-exec stream socket. TCP hosts are resolved with getaddrinfo and
    /// every address is tried in order; `timeoutMs` bounds each attempt (C: connect(2) + poll(2)).
    public static func connect(_ address: ClientAddress, timeoutMs: Int32 = 10_000) throws -> Int32 {
        switch address {
        case .unix(let path):
            guard path.utf8.count < 108 else { throw SysError("connect(\(path))", errno: ENAMETOOLONG) }
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { throw lastError("socket") }
            var sun = sockaddr_un()
            sun.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sun.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
            }
            let r = withUnsafePointer(to: &sun) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if r < 0 { let e = lastError("connect(\(path))"); FD.close(fd); throw e }
            return fd
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_family = AF_UNSPEC
            var list: UnsafeMutablePointer<addrinfo>?
            let g = getaddrinfo(host, String(port), &hints, &list)
            if g != 0 {
                // EAI codes are not errnos; report them as "host not found".
                throw SysError("getaddrinfo(\(host)): \(String(cString: gai_strerror(g)))", errno: EHOSTUNREACH)
            }
            defer { freeaddrinfo(list) }
            var lastErr = SysError("connect(\(host))", errno: EHOSTUNREACH)
            var ai = list
            while let a = ai {
                ai = a.pointee.ai_next
                let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), a.pointee.ai_protocol)
                if fd < 0 { lastErr = lastError("socket"); continue }
                if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) < 0 {
                    let e = errno
                    if e != EINPROGRESS { lastErr = SysError("connect", errno: e); FD.close(fd); continue }
                    // Wait for the handshake, then read its outcome from SO_ERROR.
                    let ready = (try? waitFor(fd, events: Int16(POLLOUT), timeoutMs: timeoutMs)) ?? false
                    var soErr: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soErr, &len)
                    if !ready || soErr != 0 {
                        lastErr = SysError("connect", errno: ready ? soErr : ETIMEDOUT)
                        FD.close(fd); continue
                    }
                }
                try FD.setBlocking(fd)
                setNoDelay(fd)
                return fd
            }
            throw lastErr
        }
    }

    /// Waits until `fd` is ready for `events` (POLLIN/POLLOUT). False on timeout; EINTR is retried
    /// with the remaining time. `timeoutMs` < 0 waits forever.
    public static func waitFor(_ fd: Int32, events: Int16, timeoutMs: Int32) throws -> Bool {
        try Poll.wait([fd], events: events, timeoutMs: timeoutMs).contains(true)
    }

    /// C: shutdown(SHUT_RDWR); a reader blocked on the socket wakes up with EOF.
    public static func shutdownBoth(_ fd: Int32) { shutdown(fd, Int32(SHUT_RDWR)) }
}

public enum Poll {
    public static let readable = Int16(POLLIN)
    public static let writable = Int16(POLLOUT)

    /// C: poll(2) on several fds for the same `events`. Returns, per fd, whether it is ready (readable
    /// also covers hang-up and error, so the following read reports what happened). All false on timeout.
    /// Sleeps `ms` milliseconds (C: poll(2) on no fds; EINTR continues with the time left).
    public static func sleepMs(_ ms: Int64) { _ = try? wait([], events: 0, timeoutMs: Int32(clamping: ms)) }

    public static func wait(_ fds: [Int32], events: Int16, timeoutMs: Int32) throws -> [Bool] {
        var p = fds.map { pollfd(fd: $0, events: events, revents: 0) }
        let deadline = timeoutMs < 0 ? Int64.max : Clock.monotonicMs() + Int64(timeoutMs)
        while true {
            let left = timeoutMs < 0 ? -1 : Int32(clamping: max(0, deadline - Clock.monotonicMs()))
            let r = poll(&p, nfds_t(p.count), left)
            if r < 0 {
                if errno == EINTR { continue }
                throw lastError("poll")
            }
            return p.map { $0.revents != 0 }
        }
    }
}

extension FD {
    /// Blocking read (C: read(2)) retried on EINTR: bytes read, 0 at end of file.
    public static func readSome(_ fd: Int32, into buf: inout [UInt8]) throws -> Int {
        try buf.withUnsafeMutableBytes { raw in
            while true {
                let n = Glibc.read(fd, raw.baseAddress, raw.count)
                if n >= 0 { return n }
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    _ = try Poll.wait([fd], events: Poll.readable, timeoutMs: -1)
                    continue
                }
                throw lastError("read")
            }
        }
    }

    /// Writes all of `bytes` to a blocking fd (socket or stdout), retrying short writes and EINTR.
    /// Sockets are written with MSG_NOSIGNAL, so a closed peer is EPIPE, not a SIGPIPE.
    public static func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, socket: Bool = false) throws {
        var off = 0
        while off < bytes.count {
            let p = bytes.baseAddress! + off
            let n = socket ? Glibc.send(fd, p, bytes.count - off, Int32(MSG_NOSIGNAL)) : Glibc.write(fd, p, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    _ = try Poll.wait([fd], events: Poll.writable, timeoutMs: -1)
                    continue
                }
                throw lastError(socket ? "send" : "write")
            }
            off += n
        }
    }

    public static func writeFully(_ fd: Int32, _ bytes: [UInt8], socket: Bool = false) throws {
        try bytes.withUnsafeBytes { try writeFully(fd, $0, socket: socket) }
    }
}

public enum Terminal {
    /// C: isatty(3).
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// Columns of the terminal on `fd` (C: ioctl(TIOCGWINSZ)), else `$COLUMNS`, else nil.
    public static func columns(_ fd: Int32) -> Int? {
        var ws = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0 { return Int(ws.ws_col) }
        if let c = Proc.getenv("COLUMNS"), let n = Int(c), n > 0 { return n }
        return nil
    }

    /// Rows of the terminal on `fd` (C: ioctl(TIOCGWINSZ)), else `$LINES`, else nil.
    public static func rows(_ fd: Int32) -> Int? {
        var ws = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_row > 0 { return Int(ws.ws_row) }
        if let c = Proc.getenv("LINES"), let n = Int(c), n > 0 { return n }
        return nil
    }
}

extension Signal {
    /// Blocks `signals` for this (single-threaded) process and returns a signalfd for them, so a
    /// client can poll a socket and Ctrl-C together. Same as `openFD`; named for the client's use.
    public static func interceptFD(_ signals: [Int32]) throws -> Int32 { try openFD(signals) }

    /// SIGINT, SIGTERM, SIGHUP, SIGPIPE as Int32 for callers that do not import Glibc.
    public static let interrupt = SIGINT, hangup = SIGHUP, pipe = SIGPIPE
}
