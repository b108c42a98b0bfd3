// Syscall: the one errno funnel every system call in tend goes through, and the error type it throws.
// EINTR retries, EAGAIN becomes a value, anything else throws a SysError naming the call.
import Glibc
import CShims

public struct SysError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    public init(_ call: String, errno: Int32) { self.call = call; self.errno = errno }
    /// The OS's text for the errno, e.g. "No such file or directory".
    public var reason: String { String(cString: strerror(errno)) }
    public var description: String { "\(call): \(reason) (errno \(errno))" }
}

public enum IOResult: Equatable, Sendable {
    case bytes(Int)
    case wouldBlock
    case eof
}

public let EAGAIN_ = EAGAIN
public let ENOENT_ = ENOENT
public let EMFILE_ = EMFILE
public let ENFILE_ = ENFILE
public let EPIPE_ = EPIPE
public let ESRCH_ = ESRCH
public let ECONNRESET_ = ECONNRESET

/// Runs `body` until it does not fail with EINTR. Returns the result, or nil for EAGAIN; throws otherwise.
@inline(__always)
func retrying<T: BinaryInteger>(_ call: String, _ body: () -> T) throws -> T? {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = errno
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK { return nil }
        throw checked(SysError(call, errno: e))
    }
}

/// The current errno as a SysError.
func lastError(_ call: String) -> SysError { checked(SysError(call, errno: errno)) }

/// EBADF and EFAULT are bugs (an fd used after its close, a bad pointer), never conditions to handle:
/// they stop the daemon at once, naming the call, instead of turning into an error some caller ignores.
@inline(__always)
func checked(_ e: SysError) -> SysError {
    if e.errno == EBADF || e.errno == EFAULT { fatalError("\(e.call): \(e.reason): a bug in tendd (fd used after close?)") }
    return e
}
