// Memory: shared-memory files (C: memfd_create(2), mmap(2)) that outlive a crash of the daemon when
// their fd is kept in systemd's fd store or handed to a re-executed image.
import Glibc
import CShims

public final class SharedRegion {
    public let fd: Int32
    public let size: Int
    public let bytes: UnsafeMutableRawBufferPointer

    /// A new zero-filled memfd of `size` bytes, mapped. Pages cost memory only once touched.
    public init(name: String, size: Int) throws {
        let fd = tend_memfd(name, size)
        if fd < 0 { throw lastError("memfd_create") }
        guard let p = tend_map_shared(fd, size) else { let e = lastError("mmap"); FD.close(fd); throw e }
        self.fd = fd
        self.size = size
        bytes = UnsafeMutableRawBufferPointer(start: p, count: size)
    }

    /// Maps an existing memfd (recovered from the fd store); takes ownership of `fd`.
    public init(adopting fd: Int32) throws {
        let n = tend_fd_size(fd)
        if n <= 0 { throw SysError("fstat(memfd)", errno: EINVAL) }
        guard let p = tend_map_shared(fd, Int(n)) else { throw lastError("mmap") }
        self.fd = fd
        size = Int(n)
        bytes = UnsafeMutableRawBufferPointer(start: p, count: size)
    }

    deinit {
        _ = tend_unmap(bytes.baseAddress, size)
        FD.close(fd)
    }
}

/// Big buffers that are touched lazily (journal regions, raw rings) come straight from the kernel: pages
/// cost memory only once touched, and `release` returns all of them at once. From malloc, a freed
/// buffer of a few hundred KiB stays in its heap (resident) and fragments it.
public enum PageMemory {
    /// `size` bytes of zeroed, page-aligned memory (C: mmap(MAP_PRIVATE|MAP_ANONYMOUS)).
    public static func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        guard let p = tend_map_anon(size) else { fatalError("mmap of \(size) bytes failed: out of memory") }
        return p
    }
    /// Gives the pages of `allocate(size)` back (C: munmap).
    public static func release(_ p: UnsafeMutableRawPointer, _ size: Int) { _ = tend_unmap(p, size) }
}

public enum CodePages {
    /// After start-up: unmaps the read-only pages of the program and its libraries (they come back, one
    /// page at a time, when used), so the idle footprint is the code the daemon runs, not what start-up
    /// and fault-around mapped. Returns the bytes advised.
    @discardableResult
    public static func trim() -> Int { Int(tend_trim_code_pages()) }
}

extension Proc {
    /// The exit of a process we may not be the parent of (after a crash-restart the children belong to
    /// systemd): C: ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT). nil while it runs; throws if unsupported.
    public static func exitStatus(pidfd: Int32) throws -> ExitReport? {
        var status: Int32 = 0
        let r = tend_pidfd_exit_status(pidfd, &status)
        if r < 0 { throw lastError("ioctl(PIDFD_GET_INFO)") }
        if r == 0 { return nil }
        if tend_wifexited(status) != 0 { return .exited(tend_wexitstatus(status)) }
        return .signaled(tend_wtermsig(status), coreDumped: false)
    }
}

extension FD {
    /// Sets or clears FD_CLOEXEC.
    public static func setCloexec(_ fd: Int32, _ on: Bool) throws {
        if tend_set_cloexec(fd, on ? 1 : 0) < 0 { throw lastError("fcntl(F_SETFD)") }
    }
    /// C: fcntl(F_DUPFD_CLOEXEC, min).
    public static func dup(_ fd: Int32, atLeast min: Int32) throws -> Int32 {
        let r = tend_dup_above(fd, min)
        if r < 0 { throw lastError("fcntl(F_DUPFD_CLOEXEC)") }
        return r
    }
    /// C: dup2(2) (the new fd is not close-on-exec).
    public static func dup2(_ fd: Int32, _ target: Int32) throws {
        if Glibc.dup2(fd, target) < 0 { throw lastError("dup2") }
    }
    /// C: dup3(fd, target, O_CLOEXEC): like dup2, the new fd close-on-exec, in one call.
    public static func dup2Cloexec(_ fd: Int32, _ target: Int32) throws {
        if tend_dup3_cloexec(fd, target) < 0 { throw lastError("dup3") }
    }
}

extension FD {
    public static let create = O_CREAT
    public static let truncate = O_TRUNC
    /// C: rename(2): atomically replaces `to`.
    public static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) < 0 { throw lastError("rename(\(from))") }
    }
    /// C: readlink(2).
    public static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        if n < 0 { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public let ECHILD_ = ECHILD

extension Proc {
    /// C: execve(2). Returns only on failure.
    public static func exec(_ path: String, argv: [String], env: [String]) -> SysError {
        var a = argv.map { strdup($0) } + [nil]
        var e = env.map { strdup($0) } + [nil]
        _ = execve(path, &a, &e)
        let err = lastError("execve(\(path))")
        for p in a { free(p) }
        for p in e { free(p) }
        return err
    }
}

extension FD {
    /// C: unlink(2); ignores a missing file.
    public static func unlink(_ path: String) { _ = Glibc.unlink(path) }
    /// C: unlink(2). True if the file existed and is gone now.
    public static func unlinkExisting(_ path: String) -> Bool { Glibc.unlink(path) == 0 }
}

extension FD {
    /// The entry names of a directory (C: opendir/readdir), without "." and "..".
    public static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let ent = readdir(dir) {
            let name = direntName(ent)   // hardening: never load the whole dirent (ASan heap overflow; DirEntry.swift)
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }
}
