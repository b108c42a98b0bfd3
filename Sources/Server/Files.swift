// Files: the files API (protocol.md §2.14): `GET|PUT|DELETE /api/v1/files?path=P` and
// `GET /api/v1/files/list?path=P`. Owns path validation, error mapping, byte ranges (pure functions,
// unit-tested), the upload sink (`FileUpload`: temporary file in the target's directory, fsync, rename)
// and the download producer (`FileDownload`: a Content-Length body sent with sendfile in bounded
// slices per loop turn). See README "Files" for the wire shape and the reasons for each choice.
//
// Regular files cannot be polled: every read or write of one may wait for the disk. The loop stays
// responsive because each turn does a bounded amount of it: an upload writes what one socket read
// brought (≤ 80 KiB) per readiness event, a download sends at most `FileDownload.sliceBytes` per
// EPOLLOUT, and write-back of an upload is started every `FileUpload.writebackBytes` so that its final
// fsync has little left to wait for.
import Sys
import HTTP1
import JSON

public enum FileOp: Equatable, Sendable { case read, write, delete, list }

// MARK: pure parts

enum FilePaths {
    /// The `path` query parameter (form-decoded: `%2F`, `+`), validated and made absolute against `cwd`.
    /// Returns (as given, absolute).
    static func resolve(query: String?, cwd: String) -> Result<(given: String, absolute: String), APIError> {
        guard let given = queryValue(parseQuery(query ?? ""), "path"), !given.isEmpty else {
            return .failure(APIError.invalid("the query parameter path is required (e.g. ?path=/tmp/x)"))
        }
        if given.utf8.contains(0) { return .failure(APIError.invalid("path must not contain NUL bytes")) }
        if given.utf8.count > 4096 { return .failure(APIError(400, "NAME_TOO_LONG", "path is longer than 4096 bytes")) }
        if given.split(separator: "/", omittingEmptySubsequences: true).contains("..") {
            return .failure(APIError(403, "PATH_TRAVERSAL", "path must not contain a .. component: \(Router.clip(given))"))
        }
        let absolute = given.hasPrefix("/") ? given : (cwd.hasSuffix("/") ? cwd : cwd + "/") + given
        return .success((given, absolute))
    }

    /// (directory, last component) of an absolute path; nil for "/" or a path ending in "/".
    static func split(_ absolute: String) -> (dir: String, name: String)? {
        guard !absolute.hasSuffix("/"), let slash = absolute.lastIndex(of: "/") else { return nil }
        let name = String(absolute[absolute.index(after: slash)...])
        guard !name.isEmpty, name != "." else { return nil }
        let dir = slash == absolute.startIndex ? "/" : String(absolute[..<slash])
        return (dir, name)
    }

    /// The directories to create, outermost first, for `mkdir -p dir` (pure: existence is the caller's).
    static func ancestors(_ dir: String) -> [String] {
        var out: [String] = []
        var cur = ""
        for comp in dir.split(separator: "/", omittingEmptySubsequences: true) where comp != "." {
            cur += "/" + comp
            out.append(cur)
        }
        return out
    }

    /// Directories first, then by name (byte order of the UTF-8 names, like the Rust daemon).
    static func listingOrder(_ a: (name: String, isDir: Bool), _ b: (name: String, isDir: Bool)) -> Bool {
        if a.isDir != b.isDir { return a.isDir }
        return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
    }
}

enum ByteRange: Equatable {
    case whole
    case partial(first: Int64, last: Int64)   // inclusive
    case unsatisfiable

    /// `Range: bytes=a-b | a- | -n` for a file of `size` bytes (RFC 9110 §14). Another unit or several
    /// ranges: the whole file (a server may ignore Range). A malformed or unsatisfiable byte range: 416.
    static func parse(_ header: String?, size: Int64) -> ByteRange {
        guard let header else { return .whole }
        let h = header.trimmingSpaces
        guard h.lowercased().hasPrefix("bytes=") else { return .whole }
        let spec = h.dropFirst(6).trimmingSpaces
        if spec.contains(",") { return .whole }
        guard let dash = spec.firstIndex(of: "-") else { return .unsatisfiable }
        let a = spec[..<dash].trimmingSpaces, b = spec[spec.index(after: dash)...].trimmingSpaces
        func num(_ s: String) -> Int64? { s.isEmpty || !s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) ? nil : Int64(s) }
        if a.isEmpty {
            guard let n = num(b), n > 0, size > 0 else { return .unsatisfiable }   // suffix: the last n bytes
            return .partial(first: max(0, size - n), last: size - 1)
        }
        guard let first = num(a), first < size else { return .unsatisfiable }
        if b.isEmpty { return .partial(first: first, last: size - 1) }
        guard let last = num(b), last >= first else { return .unsatisfiable }
        return .partial(first: first, last: min(last, size - 1))
    }
}

extension StringProtocol {
    fileprivate var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// A failed file system call as the API error the client sees.
func fileError(_ e: Error, _ path: String) -> APIError {
    if let api = e as? APIError { return api }
    guard let e = e as? SysError else { return APIError(500, "IO_ERROR", "\(e)") }
    let p = Router.clip(path)
    switch e.errno {
    case File.ENOENT_: return APIError(404, "NOT_FOUND", "no such file or directory: \(p)")
    case File.EISDIR_: return APIError(400, "IS_DIRECTORY", "\(p) is a directory")
    case File.ENOTDIR_: return APIError(400, "NOT_A_DIRECTORY", "a component of \(p) is not a directory")
    case File.EACCES_, File.EPERM_: return APIError(403, "PERMISSION_DENIED", "permission denied: \(p) (\(e.call))")
    case File.EROFS_: return APIError(403, "READ_ONLY_FILE_SYSTEM", "\(p) is on a read-only file system")
    case File.ELOOP_: return APIError(400, "SYMLINK_LOOP", "too many levels of symbolic links in \(p)")
    case File.ENAMETOOLONG_: return APIError(400, "NAME_TOO_LONG", "a name in \(p) is too long")
    case File.ENOSPC_, File.EDQUOT_: return APIError(507, "NO_SPACE", "no space left on the device for \(p); nothing was changed")
    case File.EFBIG_: return APIError(413, "FILE_TOO_LARGE", "\(p) would exceed the largest file size allowed")
    case File.ETXTBSY_: return APIError(409, "TEXT_FILE_BUSY", "\(p) is a running executable")
    case File.E2BIG_: return APIError(413, "DIRECTORY_TOO_LARGE", "\(p) has more than \(FileListing.maxEntries) entries")
    default: return APIError(500, "IO_ERROR", "\(e.call) \(p): \(e.reason)")
    }
}

enum FileListing {
    /// Bound on one listing's entries (its JSON is built in memory, and stat'ing them takes loop time).
    static let maxEntries = 100_000

    static func json(given: String, entries: [DirectoryEntry]) -> JSONValue {
        let sorted = entries.sorted {
            FilePaths.listingOrder(($0.name, $0.stat?.kind == .directory), ($1.name, $1.stat?.kind == .directory))
        }
        let list: [JSONValue] = sorted.map { e in
            let isDir = e.stat?.kind == .directory
            return .object([
                ("name", .string(e.name)),
                ("is_dir", .bool(isDir)),
                ("size", isDir || e.stat == nil ? .null : .int(e.stat!.size)),
                ("modified_at", e.stat.map { .int($0.modifiedMs) } ?? .null),
            ])
        }
        return .object([("path", .string(given)), ("entries", .array(list))])
    }
}

// MARK: handlers

extension Server {
    /// `GET /api/v1/files`, `DELETE /api/v1/files`, `GET /api/v1/files/list` (PUT goes through `beginUpload`).
    func filesRequest(_ op: FileOp, _ head: HTTPRequestHead, _ connection: Connection) -> Outcome {
        let paths: (given: String, absolute: String)
        switch FilePaths.resolve(query: head.query, cwd: File.currentDirectory()) {
        case .success(let p): paths = p
        case .failure(let e): return .error(e)
        }
        do {
            switch op {
            case .read: return try readFile(paths.absolute, head, connection)
            case .list:
                let st = try File.stat(paths.absolute)
                guard st.kind == .directory else { throw APIError(400, "NOT_A_DIRECTORY", "\(Router.clip(paths.given)) is not a directory") }
                let entries = try File.listDirectory(paths.absolute, limit: FileListing.maxEntries)
                return .response(200, FileListing.json(given: paths.given, entries: entries), [])
            case .delete:
                try File.unlink(paths.absolute)
                log.info("msg=\"file deleted\" path=\(Log.q(paths.absolute))")
                return .noContent
            case .write:
                return .error(APIError(500, "INTERNAL_ERROR", "an upload is answered by its sink"))
            }
        } catch {
            return .error(fileError(error, paths.given))
        }
    }

    private func readFile(_ path: String, _ head: HTTPRequestHead, _ connection: Connection) throws -> Outcome {
        let fd = try File.openForReading(path)
        var handedOver = false
        defer { if !handedOver { FD.close(fd) } }
        let st = try File.fstat(fd)
        switch st.kind {
        case .directory: throw APIError(400, "IS_DIRECTORY", "\(Router.clip(path)) is a directory")
        case .other: throw APIError(400, "NOT_A_REGULAR_FILE", "\(Router.clip(path)) is not a regular file (a device, FIFO or socket)")
        case .regular: break
        }
        let type = "application/octet-stream"
        if st.size == 0 {
            // Empty, or a /proc or /sys file whose size is not known in advance: read what it has (bounded).
            let body = try readSmall(fd, limit: FileDownload.inMemoryLimit, path: path)
            return .bytes(200, type, body, [("Accept-Ranges", "bytes")])
        }
        var status = 200
        var first: Int64 = 0, last = st.size - 1
        var headers: [(String, String)] = [("Accept-Ranges", "bytes")]
        switch ByteRange.parse(head.headers["Range"], size: st.size) {
        case .whole: break
        case .partial(let a, let b):
            status = 206; first = a; last = b
            headers.append(("Content-Range", "bytes \(a)-\(b)/\(st.size)"))
        case .unsatisfiable:
            let e = APIError(416, "RANGE_NOT_SATISFIABLE", "Range \(Router.clip(head.headers["Range"] ?? "")) does not fit the file's \(st.size) bytes")
            return .response(416, e.json, [("Content-Range", "bytes */\(st.size)")])
        }
        let length = last - first + 1
        headers.append(("Content-Type", type))
        headers.append(("Content-Length", String(length)))
        connection.beginBody(status: status, headers: headers)   // files: fixed-length streaming body
        let d = FileDownload(connection: connection, fd: fd, offset: first, length: length,
                             useSendfile: Proc.getenv("TENDD_FILES_PREAD") != "1")
        handedOver = true
        return .streaming(d)
    }

    private func readSmall(_ fd: Int32, limit: Int, path: String) throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = try buf.withUnsafeMutableBytes { try File.pread(fd, into: $0, offset: Int64(out.count)) }
            if n == 0 { return out }
            out.append(contentsOf: buf[0..<n])
            if out.count > limit {
                throw APIError(413, "FILE_TOO_LARGE", "\(Router.clip(path)) reports no size and has more than \(limit) bytes")
            }
        }
    }

    /// `PUT /api/v1/files`: checked and prepared before the body is read (a refused upload reads nothing).
    func beginUpload(_ head: HTTPRequestHead) -> Result<FileUpload, APIError> {
        switch FilePaths.resolve(query: head.query, cwd: File.currentDirectory()) {
        case .failure(let e): return .failure(e)
        case .success(let p):
            do { return .success(try FileUpload(given: p.given, target: p.absolute, log: log)) }
            catch { return .failure(fileError(error, p.given)) }
        }
    }
}

// MARK: upload

/// The body of one `PUT /api/v1/files`: written to a temporary file beside the target, fsynced, then
/// renamed over it. Until `commit` succeeds the target is untouched; any other end (error, disconnect,
/// timeout, deinit) removes the temporary file.
final class FileUpload {
    let given: String
    let target: String
    let temp: String
    private var fd: Int32
    private let mode: UInt32
    private let owner: (uid: UInt32, gid: UInt32)?
    private(set) var written: Int64 = 0
    private var writebackFrom: Int64 = 0
    private var fsyncMs: Int64 = 0
    private let log: Log

    /// Write-back is started every this many bytes (sync_file_range), so the final fsync is short.
    static let writebackBytes: Int64 = 8 << 20

    init(given: String, target: String, log: Log) throws {
        self.given = given
        self.target = target
        self.log = log
        guard let (dir, name) = FilePaths.split(target) else {
            throw APIError(400, "IS_DIRECTORY", "\(Router.clip(given)) names a directory, not a file")
        }
        // The target: a directory is refused; an existing file's mode (and owner) are kept.
        var mode: UInt32 = 0o644
        var owner: (UInt32, UInt32)? = nil
        do {
            let st = try File.stat(target)
            if st.kind == .directory { throw APIError(400, "IS_DIRECTORY", "\(Router.clip(given)) is a directory") }
            mode = st.mode
            owner = (st.uid, st.gid)
        } catch let e as SysError where e.errno == File.ENOENT_ {
            // New file: create the parent directories (mkdir -p).
            for d in FilePaths.ancestors(dir) {
                do { try File.mkdir(d, mode: 0o755) } catch let e as SysError where e.errno == File.EEXIST_ {
                    if try File.stat(d).kind != .directory { throw SysError("mkdir", errno: File.ENOTDIR_) }
                }
            }
        }
        self.mode = mode
        self.owner = owner
        // A hidden name in the same directory (rename is atomic only within one file system).
        var fd: Int32 = -1
        var temp = ""
        for _ in 0..<8 {
            temp = (dir == "/" ? "" : dir) + "/.\(name.utf8.count > 200 ? "upload" : name).tend-\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF).tmp"
            do { fd = try File.createExclusive(temp, mode: 0o600); break } catch let e as SysError where e.errno == File.EEXIST_ { continue }
        }
        guard fd >= 0 else { throw SysError("open", errno: File.EEXIST_) }
        self.fd = fd
        self.temp = temp
    }

    /// Appends body bytes. An error (ENOSPC, EIO, EFBIG) aborts the upload and is returned.
    func write(_ bytes: UnsafeRawBufferPointer) -> APIError? {
        guard fd >= 0 else { return APIError(500, "IO_ERROR", "upload already ended") }
        do {
            try File.writeAll(fd, bytes)
        } catch {
            abort()
            return fileError(error, given)
        }
        written += Int64(bytes.count)
        if written - writebackFrom >= FileUpload.writebackBytes {
            File.startWriteback(fd, offset: writebackFrom, count: written - writebackFrom)
            writebackFrom = written
        }
        return nil
    }

    /// The whole body arrived: fsync, mode/owner, rename over the target, fsync the directory.
    func commit() -> Outcome {
        guard fd >= 0 else { return .error(APIError(500, "IO_ERROR", "upload already ended")) }
        do {
            try File.fchmod(fd, mode)
            if let owner { try? File.fchown(fd, uid: owner.uid, gid: owner.gid) }
            let syncStart = Clock.monotonicMs()
            try File.fsync(fd)
            fsyncMs = Clock.monotonicMs() - syncStart
            FD.close(fd)
            fd = -1
            try File.rename(temp, target)
        } catch {
            abort()
            return .error(fileError(error, given))
        }
        if let (dir, _) = FilePaths.split(target) { File.syncDirectory(dir) }
        log.info("msg=\"file written\" path=\(Log.q(target)) bytes=\(written) fsync_ms=\(fsyncMs)")
        return .noContent
    }

    /// Drops the temporary file (the target is untouched). Idempotent.
    func abort() {
        if fd >= 0 {
            FD.close(fd)
            fd = -1
            try? File.unlink(temp)
            log.info("msg=\"upload abandoned\" path=\(Log.q(target)) bytes=\(written)")
        }
    }

    deinit { abort() }
}

// MARK: download

/// The body of one `GET /api/v1/files` (200 or 206) with a Content-Length: `sendfile` from the file to
/// the socket, at most `sliceBytes` per loop turn, waiting for EPOLLOUT whenever the socket is full or
/// the slice is used up (level-triggered: a writable socket wakes the next turn at once, after the other
/// ready fds had theirs). `TENDD_FILES_PREAD=1` uses pread into the connection's queue instead (measured
/// against sendfile in bench/; README "Files").
final class FileDownload: StreamProducer {
    unowned let connection: Connection
    private var fd: Int32
    private var offset: Int64
    private let end: Int64
    private let useSendfile: Bool
    private var scratch: [UInt8] = []

    static let sliceBytes = 1 << 20
    static let preadBytes = 256 << 10
    /// A file that reports size 0 (procfs, sysfs) is read into memory up to this.
    static let inMemoryLimit = 1 << 20

    init(connection: Connection, fd: Int32, offset: Int64, length: Int64, useSendfile: Bool) {
        self.connection = connection
        self.fd = fd
        self.offset = offset
        self.end = offset + length
        self.useSendfile = useSendfile
    }

    func pump() {
        guard fd >= 0 else { return }
        let connection: Connection = self.connection   // strong for the call (a failed send closes it)
        if useSendfile {
            guard connection.pendingOutput == 0 else { return }   // the head first; flush calls pump again
            var budget = FileDownload.sliceBytes
            while offset < end && budget > 0 && !connection.closed {
                let r: IOResult
                do {
                    r = try File.sendfile(to: connection.fd, from: fd, offset: &offset, count: min(budget, Int(end - offset)))
                } catch {
                    return fail("sendfile: \(error)")
                }
                switch r {
                case .bytes(0), .eof: return fail("the file shrank while it was sent")
                case .bytes(let n): budget -= n; connection.sentDirectly(n)
                case .wouldBlock: budget = 0
                }
            }
            if offset < end { connection.awaitWritable(); return }
        } else {
            let highWater = connection.server.config.writeHighWater
            if scratch.isEmpty { scratch = [UInt8](repeating: 0, count: FileDownload.preadBytes) }
            while offset < end && connection.pendingOutput < highWater && !connection.closed {
                let want = min(scratch.count, Int(end - offset))
                let n: Int
                do { n = try scratch.withUnsafeMutableBytes { try File.pread(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want]), offset: offset) } }
                catch { return fail("pread: \(error)") }
                if n == 0 { return fail("the file shrank while it was sent") }
                scratch.withUnsafeBytes { connection.appendBody(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                offset += Int64(n)
            }
            if offset < end { return }
        }
        guard !connection.closed else { return }
        closeFile()
        connection.endBody()
    }

    /// The body cannot be completed (the length was promised): close the connection.
    private func fail(_ why: String) {
        closeFile()
        connection.server.log.warn("msg=\"file download failed\" reason=\(Log.q(why))")
        connection.close(reason: why)
    }

    private func closeFile() {
        if fd >= 0 { FD.close(fd); fd = -1 }
    }

    func detach() { closeFile() }

    deinit { closeFile() }
}
