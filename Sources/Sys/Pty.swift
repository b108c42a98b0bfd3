// Pty: pseudo-terminal pairs for interactive sessions (open, window size) and the random bytes their
// session ids and tokens are made of. The tty ioctls are variadic in C, so they live in CShims.
import Glibc
import CShims

public let EIO_ = EIO

public enum PTY {
    /// A new pty pair: (master: non-blocking, slave: blocking), both close-on-exec, neither our
    /// controlling terminal. C: posix_openpt(3), grantpt(3), unlockpt(3), ptsname_r(3), open(2).
    public static func open() throws -> (master: Int32, slave: Int32) {
        var m: Int32 = -1, s: Int32 = -1
        guard try retrying("posix_openpt", { tend_pty_open(&m, &s) }) != nil else { throw SysError("posix_openpt", errno: EAGAIN) }
        return (m, s)
    }

    /// C: ioctl(TIOCSWINSZ).
    public static func setSize(_ fd: Int32, rows: UInt16, cols: UInt16) throws {
        _ = try retrying("ioctl(TIOCSWINSZ)") { tend_pty_set_size(fd, rows, cols) }
    }
}

public enum Random {
    /// Bytes from the kernel's CSPRNG (the standard library's SystemRandomNumberGenerator: getrandom(2)).
    public static func bytes(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }
}
