// Files: regular-file operations for the disk tier of output retention (issue 13): append-only segment
// files written in large batches, positional reads, truncation after a failed write, directory creation
// and the filesystem's size. Regular files are not pollable: callers keep each call bounded.
import Glibc
import CShims

extension FD {
    /// C: open(2) with O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode 0600.
    public static func openAppend(_ path: String) throws -> Int32 {
        try open(path, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o600)
    }

    /// C: write(2) until everything is written or a call fails. Returns the bytes written and the error
    /// that stopped it (nil: all written). A short count with an error is a torn write (ENOSPC, EIO).
    public static func writeAllBytes(_ fd: Int32, _ buf: UnsafeRawBufferPointer) -> (written: Int, error: SysError?) {
        var done = 0
        while done < buf.count {
            do {
                guard let n = try retrying("write", { Glibc.write(fd, buf.baseAddress! + done, buf.count - done) }) else {
                    return (done, SysError("write", errno: EAGAIN))
                }
                if n == 0 { return (done, SysError("write", errno: EIO)) }
                done += n
            } catch let e as SysError {
                return (done, e)
            } catch {
                return (done, SysError("write", errno: EIO))
            }
        }
        return (done, nil)
    }

    /// C: pread(2): up to `buf.count` bytes at `offset`; fewer only at the end of the file.
    public static func pread(_ fd: Int32, into buf: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        var done = 0
        while done < buf.count {
            guard let n = try retrying("pread", { Glibc.pread(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done)) }) else {
                break
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// C: ftruncate(2).
    public static func truncate(_ fd: Int32, to size: Int) throws {
        if Glibc.ftruncate(fd, off_t(size)) < 0 { throw lastError("ftruncate") }
    }

    /// C: fstat(2): the file's size in bytes.
    public static func size(_ fd: Int32) throws -> Int {
        var st = stat()
        if Glibc.fstat(fd, &st) < 0 { throw lastError("fstat") }
        return Int(st.st_size)
    }

    /// C: mkdir(2) with mode 0700; an existing directory is fine.
    public static func makeDirectory(_ path: String) throws {
        if Glibc.mkdir(path, 0o700) < 0 && errno != EEXIST { throw lastError("mkdir(\(path))") }
    }

    /// C: fstatvfs(3): the size in bytes of the filesystem holding `path` (nil if it cannot be read).
    public static func filesystemBytes(_ path: String) -> Int? {
        guard let fd = try? open(path, flags: O_RDONLY | O_DIRECTORY) else { return nil }
        defer { close(fd) }
        var st = Glibc.statvfs()
        if Glibc.fstatvfs(fd, &st) < 0 { return nil }
        return Int(st.f_blocks) * Int(st.f_frsize)
    }
}

public let ENOSPC_ = ENOSPC
