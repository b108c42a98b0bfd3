// Epoll: the epoll instance (C: epoll_create1/epoll_ctl/epoll_wait through the shim,
// since `struct epoll_event` is packed on x86_64).
import Glibc
import CShims

public struct EpollEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let input = EpollEvents(rawValue: TEND_EPOLLIN)
    public static let output = EpollEvents(rawValue: TEND_EPOLLOUT)
    public static let error = EpollEvents(rawValue: TEND_EPOLLERR)
    public static let hangup = EpollEvents(rawValue: TEND_EPOLLHUP)
    public static let readHangup = EpollEvents(rawValue: TEND_EPOLLRDHUP)
}

public struct EpollEvent: Sendable {
    public var events: EpollEvents
    public var data: UInt64
}

public final class Epoll {
    public let fd: Int32
    private var buffer: [tend_epoll_event]

    public init(maxEvents: Int = 256) throws {
        fd = tend_epoll_create()
        if fd < 0 { throw lastError("epoll_create1") }
        buffer = Array(repeating: tend_epoll_event(events: 0, data: 0), count: maxEvents)
    }

    deinit { FD.close(fd) }

    public func add(_ target: Int32, events: EpollEvents, data: UInt64) throws {
        if tend_epoll_ctl(fd, TEND_EPOLL_CTL_ADD, target, events.rawValue, data) < 0 { throw lastError("epoll_ctl(ADD)") }
    }

    public func modify(_ target: Int32, events: EpollEvents, data: UInt64) throws {
        if tend_epoll_ctl(fd, TEND_EPOLL_CTL_MOD, target, events.rawValue, data) < 0 { throw lastError("epoll_ctl(MOD)") }
    }

    public func remove(_ target: Int32) {
        _ = tend_epoll_ctl(fd, TEND_EPOLL_CTL_DEL, target, 0, 0)
    }

    /// Waits up to `timeoutMs` (-1 forever) and calls `body` for each ready fd.
    public func wait(timeoutMs: Int32, _ body: (EpollEvent) -> Void) throws -> Int {
        let n = buffer.withUnsafeMutableBufferPointer { tend_epoll_wait(fd, $0.baseAddress, Int32($0.count), timeoutMs) }
        if n < 0 {
            if errno == EINTR { return 0 }
            throw lastError("epoll_wait")
        }
        for i in 0..<Int(n) {
            body(EpollEvent(events: EpollEvents(rawValue: buffer[i].events), data: buffer[i].data))
        }
        return Int(n)
    }
}
