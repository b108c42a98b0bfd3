// File: regular files and directories for the files API (Server/Files.swift): stat, open, create,
// write, fsync, rename, unlink, mkdir, directory listing, sendfile and pread. Thin wrappers through the
// errno funnel; every fd is close-on-exec. Regular-file I/O cannot be polled with epoll, so callers
// bound how much they do per loop turn.
import Glibc
import CShims

public struct FileStat: Equatable, Sendable {
    public enum Kind: Equatable, Sendable { case regular, directory, other }
    public let kind: Kind
    public let size: Int64
    public let mode: UInt32          // permission bits (07777)
    public let uid: UInt32
    public let gid: UInt32
    public let modifiedMs: Int64

    init(_ st: stat) {
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        default: kind = .other
        }
        size = Int64(st.st_size)
        mode = UInt32(st.st_mode & 0o7777)
        uid = st.st_uid
        gid = st.st_gid
        modifiedMs = Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000
    }
}

/// One directory entry with what stat(2) says about it (nil when it vanished or cannot be stat'ed).
public struct DirectoryEntry: Sendable {
    public let name: String
    public let stat: FileStat?
}

public enum File {
    /// C: stat(2) (follows symlinks).
    public static func stat(_ path: String) throws -> FileStat {
        var st = Glibc.stat()
        _ = try retrying("stat") { fstatat(AT_FDCWD, path, &st, 0) }
        return FileStat(st)
    }

    /// C: fstat(2).
    public static func fstat(_ fd: Int32) throws -> FileStat {
        var st = Glibc.stat()
        _ = try retrying("fstat") { Glibc.fstat(fd, &st) }
        return FileStat(st)
    }

    /// C: open(2) O_RDONLY|O_NONBLOCK|O_NOCTTY: never waits for a FIFO's writer or a device.
    public static func openForReading(_ path: String) throws -> Int32 {
        guard let fd = try retrying("open", { tend_open_cloexec(path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0) }) else {
            throw SysError("open", errno: EAGAIN)
        }
        return fd
    }

    /// C: open(2) O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW: a new file that did not exist, never through a symlink.
    public static func createExclusive(_ path: String, mode: UInt32) throws -> Int32 {
        guard let fd = try retrying("open", { tend_open_cloexec(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, Int32(mode)) }) else {
            throw SysError("open", errno: EAGAIN)
        }
        return fd
    }

    /// C: open(2) O_WRONLY|O_CREAT|O_TRUNC (the CLI's local files).
    public static func openForWriting(_ path: String, mode: UInt32 = 0o644) throws -> Int32 {
        guard let fd = try retrying("open", { tend_open_cloexec(path, O_WRONLY | O_CREAT | O_TRUNC, Int32(mode)) }) else {
            throw SysError("open", errno: EAGAIN)
        }
        return fd
    }

    /// C: write(2) until all of `bytes` is written (a regular file takes everything or fails: ENOSPC, EIO).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            guard let n = try retrying("write", { Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done) }) else {
                throw SysError("write", errno: EAGAIN)
            }
            if n == 0 { throw SysError("write", errno: EIO) }
            done += n
        }
    }

    /// C: fsync(2).
    public static func fsync(_ fd: Int32) throws {
        _ = try retrying("fsync") { Glibc.fsync(fd) }
    }

    /// C: sync_file_range(2) SYNC_FILE_RANGE_WRITE: starts write-back of a range without waiting for it,
    /// so the final fsync has little left to do. Best effort (not every file system supports it).
    public static func startWriteback(_ fd: Int32, offset: Int64, count: Int64) {
        _ = tend_sync_file_range_write(fd, offset, count)
    }

    /// Opens a directory (O_DIRECTORY) and fsyncs it, so a rename in it is durable. Best effort.
    public static func syncDirectory(_ path: String) {
        let fd = tend_open_cloexec(path, O_RDONLY | O_DIRECTORY, 0)
        guard fd >= 0 else { return }
        _ = Glibc.fsync(fd)
        _ = Glibc.close(fd)
    }

    /// C: fchmod(2).
    public static func fchmod(_ fd: Int32, _ mode: UInt32) throws {
        _ = try retrying("fchmod") { Glibc.fchmod(fd, mode_t(mode)) }
    }

    /// C: fchown(2).
    public static func fchown(_ fd: Int32, uid: UInt32, gid: UInt32) throws {
        _ = try retrying("fchown") { Glibc.fchown(fd, uid, gid) }
    }

    /// C: rename(2): atomically replaces `to`.
    public static func rename(_ from: String, _ to: String) throws {
        _ = try retrying("rename") { Glibc.rename(from, to) }
    }

    /// C: unlink(2).
    public static func unlink(_ path: String) throws {
        _ = try retrying("unlink") { Glibc.unlink(path) }
    }

    /// C: mkdir(2). EEXIST is thrown like any other error.
    public static func mkdir(_ path: String, mode: UInt32) throws {
        _ = try retrying("mkdir") { Glibc.mkdir(path, mode_t(mode)) }
    }

    /// C: sendfile(2) from a file at `offset` (advanced) to a non-blocking socket.
    /// `.bytes(0)` means the file ended before `count` (it shrank); `.wouldBlock` the socket is full.
    public static func sendfile(to socket: Int32, from fd: Int32, offset: inout Int64, count: Int) throws -> IOResult {
        var off = off_t(offset)
        guard let n = try retrying("sendfile", { Glibc.sendfile(socket, fd, &off, count) }) else { return .wouldBlock }
        offset = Int64(off)
        return .bytes(n)
    }

    /// C: pread(2). 0 at the end of the file.
    public static func pread(_ fd: Int32, into buf: UnsafeMutableRawBufferPointer, offset: Int64) throws -> Int {
        guard let n = try retrying("pread", { Glibc.pread(fd, buf.baseAddress, buf.count, off_t(offset)) }) else {
            throw SysError("pread", errno: EAGAIN)
        }
        return n
    }

    /// C: opendir(3) + readdir(3) + stat(2) per entry ("." and ".." left out), at most `limit` entries
    /// (then throws E2BIG).
    public static func listDirectory(_ path: String, limit: Int) throws -> [DirectoryEntry] {
        let fd = tend_open_cloexec(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0)
        if fd < 0 { throw lastError("open") }
        guard let dir = fdopendir(fd) else { let e = lastError("fdopendir"); _ = Glibc.close(fd); throw e }
        defer { closedir(dir) }
        var out: [DirectoryEntry] = []
        while true {
            errno = 0
            guard let ent = readdir(dir) else {
                if errno != 0 { throw lastError("readdir") }
                break
            }
            let name = direntName(ent)
            if name == "." || name == ".." { continue }
            if out.count >= limit { throw SysError("readdir", errno: E2BIG) }
            var st = Glibc.stat()
            if fstatat(fd, name, &st, 0) == 0 || fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                out.append(DirectoryEntry(name: name, stat: FileStat(st)))
            } else {
                out.append(DirectoryEntry(name: name, stat: nil))
            }
        }
        return out
    }

    /// C: getcwd(3).
    public static func currentDirectory() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil else { return "/" }
        return String(cString: buf)
    }

    // errno values the files API maps to statuses (Server/Files.swift).
    public static let ENOENT_ = ENOENT, ENOTDIR_ = ENOTDIR, EISDIR_ = EISDIR, EACCES_ = EACCES, EPERM_ = EPERM
    public static let ELOOP_ = ELOOP, ENOSPC_ = ENOSPC, EDQUOT_ = EDQUOT, ENAMETOOLONG_ = ENAMETOOLONG
    public static let EROFS_ = EROFS, EEXIST_ = EEXIST, E2BIG_ = E2BIG, EFBIG_ = EFBIG, ETXTBSY_ = ETXTBSY
}
