// FD: plain file-descriptor operations (read, write, writev, close, pipes, open).
// Descriptors are Int32 in this layer; ownership (who closes) is the caller's record (Process, Connection).
import Glibc
import CShims

public enum FD {
    /// C: read(2). `.eof` when the peer closed, `.wouldBlock` when nothing is there yet.
    public static func read(_ fd: Int32, into buf: UnsafeMutableRawBufferPointer) throws -> IOResult {
        guard let n = try retrying("read", { Glibc.read(fd, buf.baseAddress, buf.count) }) else { return .wouldBlock }
        return n == 0 ? .eof : .bytes(n)
    }

    /// C: write(2). Returns bytes written or `.wouldBlock`.
    public static func write(_ fd: Int32, _ buf: UnsafeRawBufferPointer) throws -> IOResult {
        guard let n = try retrying("write", { Glibc.write(fd, buf.baseAddress, buf.count) }) else { return .wouldBlock }
        return .bytes(n)
    }

    /// Writes `bytes[from...]`; returns how many were written (0 when the fd would block).
    public static func write(_ fd: Int32, _ bytes: [UInt8], from: Int) throws -> Int {
        try bytes.withUnsafeBytes { raw in
            let slice = UnsafeRawBufferPointer(rebasing: raw[from...])
            if case .bytes(let n) = try write(fd, slice) { return n }
            return 0
        }
    }

    /// C: close(2). Never retried on EINTR (the fd is gone either way).
    public static func close(_ fd: Int32) {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// A non-blocking, close-on-exec pipe (read end, write end); `size` asks for F_SETPIPE_SZ (best effort).
    public static func pipe(size: Int32 = 0) throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        if tend_pipe(&fds, size) < 0 { throw lastError("pipe2") }
        return (fds[0], fds[1])
    }

    // perf(start): childPipe and open(_:at:flags:) are new; nothing else here changed.
    /// Which end of a pipe a child gets as its stdio.
    public enum ChildEnd { case read, write }

    /// A close-on-exec pipe for a child's stdio: the child's end blocking, ours non-blocking. Two syscalls
    /// (pipe2, one F_SETFL on our end), not a non-blocking pipe whose child end is then cleared with an
    /// F_GETFL/F_SETFL pair; `size` asks for F_SETPIPE_SZ (best effort).
    public static func childPipe(childEnd: ChildEnd, size: Int32 = 0) throws -> (read: Int32, write: Int32) {
        var fds: (Int32, Int32) = (-1, -1)
        let r = withUnsafeMutablePointer(to: &fds) {
            $0.withMemoryRebound(to: Int32.self, capacity: 2) { tend_child_pipe($0, size, childEnd == .read ? 1 : 0) }
        }
        if r < 0 { throw lastError("pipe2") }
        return fds
    }

    /// Clears O_NONBLOCK (for the end of a pipe a child will use as its stdio).
    public static func setBlocking(_ fd: Int32) throws {
        if tend_set_blocking(fd) < 0 { throw lastError("fcntl(F_SETFL)") }
    }

    public static func setNonBlockingCloexec(_ fd: Int32) throws {
        if tend_set_nonblock_cloexec(fd) < 0 { throw lastError("fcntl") }
    }

    /// C: open(2) with O_CLOEXEC.
    public static func open(_ path: String, flags: Int32, mode: UInt32 = 0) throws -> Int32 {
        let fd = tend_open_cloexec(path, flags, Int32(mode))
        if fd < 0 { throw lastError("open(\(path))") }
        return fd
    }

    /// C: openat(2) with O_CLOEXEC: `path` relative to the directory fd `dir` (a short path walk).
    public static func open(_ path: String, at dir: Int32, flags: Int32) throws -> Int32 {
        let fd = tend_openat_cloexec(dir, path, flags, 0)
        if fd < 0 { throw lastError("openat(\(path))") }
        return fd
    }

    /// The `dir` of an `openat` that means the working directory (an absolute path ignores it anyway).
    public static let cwd = AT_FDCWD
    public static let readOnly = O_RDONLY
    public static let readWrite = O_RDWR
    public static let writeOnly = O_WRONLY
    public static let directory = O_RDONLY | O_DIRECTORY

    /// Reads a whole (small) file, e.g. a token file or a /proc entry.
    public static func readFile(_ path: String, limit: Int = 1 << 20) throws -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY)
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let r = try buf.withUnsafeMutableBytes { try read(fd, into: $0) }
            guard case .bytes(let n) = r else { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    /// Writes a whole buffer to a blocking fd (files in /sys/fs/cgroup, the runtime directory).
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        let r = bytes.withUnsafeBytes { tend_write_all(fd, $0.baseAddress, $0.count) }
        if r < 0 { throw lastError("write") }
    }

    /// Number of open descriptors of this process (for leak checks and logs).
    public static func openCount() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var n = 0
        while readdir(dir) != nil { n += 1 }
        return n - 3 // ".", "..", and the directory's own fd
    }
}
