// Socket: listening and connected stream sockets, TCP (IPv4/IPv6) and unix.
// Every socket is non-blocking and close-on-exec.
import Glibc
import CShims

public enum ListenAddress: Equatable, Sendable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    /// Parses "127.0.0.1:9501", "[::1]:9501", ":9501" (all IPv4 interfaces), "unix:/run/tendd.sock".
    public static func parse(_ s: String) -> ListenAddress? {
        if s.hasPrefix("unix:") {
            let path = String(s.dropFirst(5))
            return path.isEmpty || path.utf8.count >= 108 ? nil : .unix(path: path)
        }
        guard let colon = s.lastIndex(of: ":") else { return nil }
        var host = String(s[..<colon])
        guard let port = UInt16(s[s.index(after: colon)...]) else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        return .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .unix(let p): return "unix:\(p)"
        }
    }
}

public enum Socket {
    /// Creates, binds and listens. A stale unix socket file is replaced.
    public static func listen(_ address: ListenAddress, backlog: Int32 = 1024) throws -> Int32 {
        switch address {
        case .tcp(let host, let port):
            var v4 = sockaddr_in()
            var v6 = sockaddr_in6()
            let isV6 = host.contains(":")
            if isV6 {
                v6.sin6_family = sa_family_t(AF_INET6)
                v6.sin6_port = port.bigEndian
                guard inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 else { throw SysError("inet_pton(\(host))", errno: EINVAL) }
            } else {
                v4.sin_family = sa_family_t(AF_INET)
                v4.sin_port = port.bigEndian
                guard inet_pton(AF_INET, host, &v4.sin_addr) == 1 else { throw SysError("inet_pton(\(host))", errno: EINVAL) }
            }
            let fd = socket(isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { throw lastError("socket") }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            let r: Int32 = isV6
                ? withUnsafePointer(to: &v6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
                : withUnsafePointer(to: &v4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if r < 0 { let e = lastError("bind(\(address))"); FD.close(fd); throw e }
            if Glibc.listen(fd, backlog) < 0 { let e = lastError("listen"); FD.close(fd); throw e }
            return fd
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { throw lastError("socket") }
            var sun = sockaddr_un()
            sun.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sun.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
            }
            unlink(path)
            let r = withUnsafePointer(to: &sun) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            if r < 0 { let e = lastError("bind(\(address))"); FD.close(fd); throw e }
            chmod(path, 0o660)
            if Glibc.listen(fd, backlog) < 0 { let e = lastError("listen"); FD.close(fd); throw e }
            return fd
        }
    }

    /// C: accept4(2) with SOCK_NONBLOCK|SOCK_CLOEXEC. nil when no connection is pending.
    public static func accept(_ listener: Int32) throws -> Int32? {
        try retrying("accept4") { tend_accept(listener) }
    }

    /// Sets TCP_NODELAY (responses and SSE events go out as soon as they are written). Ignored on unix sockets.
    public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// C: shutdown(SHUT_WR): send FIN after the last response but keep reading (lingering close).
    public static func shutdownWrite(_ fd: Int32) { shutdown(fd, Int32(SHUT_WR)) }

    /// C: send(2) with MSG_NOSIGNAL; returns bytes written or 0 when it would block.
    public static func send(_ fd: Int32, _ buf: UnsafeRawBufferPointer) throws -> Int {
        guard let n = try retrying("send", { Glibc.send(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL)) }) else { return 0 }
        return n
    }

    /// C: sendmsg(2) of up to 4 buffers (a gather write, MSG_NOSIGNAL); returns bytes written or 0 when
    /// it would block. Empty buffers are skipped.
    public static func send(_ fd: Int32, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer,
                            _ c: UnsafeRawBufferPointer, _ d: UnsafeRawBufferPointer) throws -> Int {
        var iov = (iovec(), iovec(), iovec(), iovec())
        var n = 0
        withUnsafeMutableBytes(of: &iov) { raw in
            let v = raw.bindMemory(to: iovec.self)
            for buf in [a, b, c, d] where buf.count > 0 {
                v[n] = iovec(iov_base: UnsafeMutableRawPointer(mutating: buf.baseAddress), iov_len: buf.count)
                n += 1
            }
        }
        if n == 0 { return 0 }
        let r = try withUnsafeMutableBytes(of: &iov) { raw -> Int? in
            var msg = msghdr()
            msg.msg_iov = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
            msg.msg_iovlen = n
            return try retrying("sendmsg") { sendmsg(fd, &msg, Int32(MSG_NOSIGNAL)) }
        }
        return r ?? 0
    }

    /// A non-blocking IPv4 connect that may still be in progress (EINPROGRESS); watch for writability,
    /// then ask `pendingError`.
    public static func startConnect(host: String, port: UInt16) throws -> Int32 {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &sin.sin_addr) == 1 else { throw SysError("inet_pton(\(host))", errno: EINVAL) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw lastError("socket") }
        let r = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if r < 0 && errno != EINPROGRESS && errno != EINTR {
            let e = lastError("connect")
            FD.close(fd)
            throw e
        }
        return fd
    }

    /// C: getsockopt(SO_ERROR): the result of a non-blocking connect (nil when it succeeded).
    public static func pendingError(_ fd: Int32) -> SysError? {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 { return lastError("getsockopt") }
        return err == 0 ? nil : SysError("connect", errno: err)
    }

    /// The port a TCP listener is bound to (useful with port 0).
    public static func localPort(_ fd: Int32) -> UInt16? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        if r < 0 { return nil }
        if ss.ss_family == sa_family_t(AF_INET) {
            return withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } }
        }
        if ss.ss_family == sa_family_t(AF_INET6) {
            return withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
        }
        return nil
    }
}
