// Files: `tend cp`, `tend ls`, `tend cat`, `tend rm`, over the daemon's files API
// (`/api/v1/files?path=P`, `/api/v1/files/list?path=P`). Files are streamed both ways in 1 MiB
// pieces (any size, bounded memory); a download is written to `LOCAL.tend-part` and renamed when
// complete, so an interrupted copy never leaves a truncated LOCAL. Progress goes to stderr when it is a
// terminal and the file is large.
import ArgumentParser
import Sys
import JSON

/// `/api/v1/files…?path=P` with P form-encoded (`/` as %2F, like the SDK).
public func filesPath(_ remote: String, list: Bool = false) -> String {
    "/api/v1/files\(list ? "/list" : "")?path=\(pathSegment(remote))"
}

/// A `cp` operand: `:PATH` is remote, anything else local.
public enum CopyOperand: Equatable {
    case local(String), remote(String)
    public init(_ s: String) {
        if s.hasPrefix(":") { self = .remote(String(s.dropFirst())) } else { self = .local(s) }
    }
}

/// "12.3 MiB"
public func sizeText(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    if i == 0 { return "\(n) B" }
    let tenths = Int((v * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) \(units[i])"
}

/// A one-line progress display on stderr (only when it is a terminal and the copy is large).
struct Progress {
    let total: Int64?
    let enabled: Bool
    let started = Clock.monotonicMs()
    var lastDraw: Int64 = 0

    init(total: Int64?) {
        self.total = total
        enabled = Terminal.isTerminal(2) && (total ?? Int64.max) >= 8 << 20
    }

    mutating func update(_ done: Int64, final: Bool = false) {
        guard enabled else { return }
        let now = Clock.monotonicMs()
        if !final && now - lastDraw < 100 { return }
        lastDraw = now
        let secs = max(0.001, Double(now - started) / 1000)
        var line = "\r\(sizeText(done))"
        if let total, total > 0 { line += " / \(sizeText(total))  \(done * 100 / total)%" }
        line += "  \(sizeText(Int64(Double(done) / secs)))/s   "
        if final { line += "\n" }
        try? FD.writeFully(2, Array(line.utf8))
    }
}

public struct Cp: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Copy a file to or from the daemon's machine (:PATH is remote).",
        discussion: """
        Uploads are atomic on the daemon's side (a temporary file, fsync, rename): readers see the old file or the new one, never a part. A download goes to LOCAL.tend-part and is renamed to LOCAL once complete. A relative remote path is relative to the daemon's working directory. LOCAL - is stdin or stdout. Progress is shown on a terminal for files of 8 MiB or more.

        Examples:
          tend cp ./build.tar.gz :/srv/app/build.tar.gz
          tend cp :/var/log/app.log ./app.log
          tend cp :/etc/hostname -
          tar c src | tend cp - :/tmp/src.tar
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Argument(help: ArgumentHelp("LOCAL or :REMOTE.", valueName: "SOURCE")) public var source: String
    @Argument(help: ArgumentHelp("LOCAL or :REMOTE.", valueName: "DEST")) public var dest: String
    public init() {}

    public func validate() throws {
        switch (CopyOperand(source), CopyOperand(dest)) {
        case (.local, .remote), (.remote, .local): break
        case (.local, .local): throw ValidationError("one of SOURCE and DEST must be remote (:PATH)")
        case (.remote, .remote): throw ValidationError("copying between two remote paths is not supported; one side must be local")
        }
        if case .remote(let p) = CopyOperand(source), p.isEmpty { throw ValidationError("the remote path after ':' is empty") }
        if case .remote(let p) = CopyOperand(dest), p.isEmpty { throw ValidationError("the remote path after ':' is empty") }
    }

    public func run() throws {
        try withClient(conn) { client in
            switch (CopyOperand(source), CopyOperand(dest)) {
            case (.local(let l), .remote(let r)): try upload(client, local: l, remote: r)
            case (.remote(let r), .local(let l)): try download(client, remote: r, local: l)
            default: break
            }
        }
    }
}

/// Streams a local file (or stdin for "-") into `PUT /api/v1/files`.
public func upload(_ client: TendClient, local: String, remote: String) throws {
    let fd: Int32
    var size: Int64? = nil
    if local == "-" { fd = 0 } else {
        do {
            fd = try File.openForReading(local)
            let st = try File.fstat(fd)
            if st.kind == .directory { FD.close(fd); throw ClientError.local("\(local) is a directory (copy files one at a time)") }
            if st.kind == .regular { size = st.size }
        } catch let e as SysError { throw ClientError.local("cannot read \(local): \(e.reason)") }
        try? FD.setBlocking(fd)
    }
    defer { if fd != 0 { FD.close(fd) } }
    let ex = try client.open()
    let head = client.requestHead("PUT", filesPath(remote), headers: [("Content-Type", "application/octet-stream")],
                                  bodyLength: size.map { Int($0) })
    var progress = Progress(total: size)
    var sent: Int64 = 0
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    var writeFailed = false
    do {
        try FD.writeFully(ex.fd, head, socket: true)
        while size == nil || sent < size! {
            let n: Int
            do { n = try FD.readSome(fd, into: &buf) } catch let e as SysError { throw ClientError.local("reading \(local): \(e.reason)") }
            if n == 0 { break }
            var piece = n
            if let size { piece = Int(min(Int64(n), size - sent)) }
            if size == nil {   // chunked framing for stdin
                try FD.writeFully(ex.fd, Array((String(piece, radix: 16) + "\r\n").utf8), socket: true)
                try buf.withUnsafeBytes { try FD.writeFully(ex.fd, UnsafeRawBufferPointer(rebasing: $0[0..<piece]), socket: true) }
                try FD.writeFully(ex.fd, [0x0D, 0x0A], socket: true)
            } else {
                try buf.withUnsafeBytes { try FD.writeFully(ex.fd, UnsafeRawBufferPointer(rebasing: $0[0..<piece]), socket: true) }
            }
            sent += Int64(piece)
            progress.update(sent)
        }
        if size == nil { try FD.writeFully(ex.fd, Array("0\r\n\r\n".utf8), socket: true) }
    } catch is SysError {
        writeFailed = true   // the daemon refused and closed: its answer is read below
    }
    if let size, sent < size, !writeFailed { throw ClientError.local("\(local) shrank while it was read (\(sent) of \(size) bytes); nothing was changed") }
    let h = try ex.readHead()
    let body = try ex.readAll()
    if !(200..<300).contains(h.status) { throw client.apiError(Response(head: h, body: body)) }
    if writeFailed { throw ClientError.transport("the connection broke during the upload") }
    progress.update(sent, final: true)
}

/// Streams `GET /api/v1/files` into LOCAL (via LOCAL.tend-part), a directory (the remote name) or stdout ("-").
public func download(_ client: TendClient, remote: String, local: String) throws {
    var target = local
    if local != "-", let st = try? File.stat(local), st.kind == .directory {
        let name = remote.split(separator: "/").last.map(String.init) ?? remote
        target = (local.hasSuffix("/") ? local : local + "/") + name
    }
    let ex = try client.send("GET", filesPath(remote))
    let h = try ex.readHead()
    if !(200..<300).contains(h.status) { throw client.apiError(Response(head: h, body: try ex.readAll())) }
    let part = target + ".tend-part"
    let out: Int32
    if target == "-" { out = 1 } else {
        do { out = try File.openForWriting(part) } catch let e as SysError { throw ClientError.local("cannot write \(part): \(e.reason)") }
    }
    var progress = Progress(total: h.contentLength.map { Int64($0) })
    var got: Int64 = 0
    do {
        defer { if out != 1 { FD.close(out) } }
        loop: while true {
            switch try ex.readBody() {
            case .bytes(let b):
                do { try FD.writeFully(out, b) } catch let e as SysError { throw ClientError.local("writing \(target == "-" ? "stdout" : part): \(e.reason)") }
                got += Int64(b.count)
                progress.update(got)
            case .end: break loop
            case .timeout, .interrupted: throw ClientError.transport("the download was interrupted")
            }
        }
    } catch {
        if out != 1 { try? File.unlink(part) }
        throw error
    }
    if out != 1 {
        do { try File.rename(part, target) } catch let e as SysError { throw ClientError.local("cannot rename \(part) to \(target): \(e.reason)") }
    }
    progress.update(got, final: true)
}

public struct Cat: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Print a remote file to stdout (bytes as they are).",
        discussion: "Examples:\n  tend cat /etc/hostname\n  tend cat /srv/app/out.bin > out.bin"
    )
    @OptionGroup public var conn: ConnectionOptions
    @Argument(help: ArgumentHelp("Remote path (relative: to the daemon's working directory).", valueName: "PATH")) public var path: String
    public init() {}
    public func run() throws {
        try withClient(conn) { client in try download(client, remote: path, local: "-") }
    }
}

public struct Rm: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Delete a remote file (not a directory).",
        discussion: "Examples:\n  tend rm /tmp/build.log"
    )
    @OptionGroup public var conn: ConnectionOptions
    @Argument(help: ArgumentHelp("Remote path.", valueName: "PATH")) public var paths: [String]
    public init() {}
    public func validate() throws { if paths.isEmpty { throw ValidationError("give at least one PATH") } }
    public func run() throws {
        try withClient(conn) { client in
            for p in paths { _ = try client.call("DELETE", filesPath(p)) }
        }
    }
}

public struct Ls: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "List a remote directory (directories first, then by name).",
        discussion: """
        On a terminal: a table (type, size, modified, name; directories end in /). Otherwise: tab-separated lines (d|f, size, modified ms, name). --json prints the daemon's answer.

        Examples:
          tend ls /srv/app
          tend ls --json /tmp | jq '.entries[].name'
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Print {\"path\", \"entries\": [...]} as JSON.") public var json = false
    @Argument(help: ArgumentHelp("Remote directory (default: the daemon's working directory).", valueName: "PATH")) public var path: String = "."
    public init() {}

    public func run() throws {
        try withClient(conn) { client in
            let v = try client.call("GET", filesPath(path, list: true)).json()
            if json { printJSON(v); return }
            var entries: [JSONValue] = []
            if case .array(let a)? = v["entries"] { entries = a }
            let rows: [[String]] = entries.map { e in
                let dir = e["is_dir"] == .bool(true)
                var name = ""; if case .string(let s)? = e["name"] { name = s }
                var size = ""; if case .int(let n)? = e["size"] { size = Terminal.isTerminal(1) ? sizeText(n) : String(n) }
                var mod = ""
                if case .int(let ms)? = e["modified_at"] { mod = Terminal.isTerminal(1) ? age(ms, now: Clock.wallMs()) + " ago" : String(ms) }
                return Terminal.isTerminal(1) ? [dir ? "dir" : "file", size, mod, dir ? name + "/" : name] : [dir ? "d" : "f", size, mod, name]
            }
            if Terminal.isTerminal(1) {
                renderTable(header: ["TYPE", "SIZE", "MODIFIED", "NAME"], rows: rows, width: Terminal.columns(1)).forEach(printLine)
            } else {
                for r in rows { printLine(r.joined(separator: "\t")) }
            }
        }
    }
}
