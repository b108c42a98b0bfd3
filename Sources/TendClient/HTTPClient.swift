// HTTPClient: a small blocking HTTP/1.1 client for tendd: one connection per request
// (`Connection: close`), the response head parser, and body readers for Content-Length, chunked
// (HTTP1.ChunkedDecoder) and read-until-close bodies. Reads can have a deadline and can be
// interrupted by a signalfd (Ctrl-C), which is what `tend run` and `tend logs -f` need.
import Sys
import HTTP1
import JSON

/// Why a request failed before an HTTP response arrived.
public enum ClientError: Error, CustomStringConvertible, Equatable {
    /// Could not connect (refused, no such socket, unresolvable host); `reason` is the OS text.
    case connect(address: String, reason: String)
    /// The connection broke or the response was malformed.
    case transport(String)
    /// The daemon answered with an error status.
    case api(status: Int, code: String?, message: String)
    /// Local problems (a file, an argument).
    case local(String)

    public var description: String {
        switch self {
        case .connect(let a, let r): return "cannot connect to tendd at \(a): \(r)"
        case .transport(let m): return m
        case .api(let s, let c, let m): return c.map { "\(m) (\($0), HTTP \(s))" } ?? "\(m) (HTTP \(s))"
        case .local(let m): return m
        }
    }
}

/// A parsed response head.
public struct ResponseHead: Equatable {
    public var status: Int
    public var reason: String
    public var headers: [(String, String)]

    public static func == (a: ResponseHead, b: ResponseHead) -> Bool {
        a.status == b.status && a.reason == b.reason && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }

    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.last(where: { $0.0.lowercased() == n })?.1
    }

    public var isChunked: Bool { header("Transfer-Encoding")?.lowercased().contains("chunked") ?? false }
    public var contentLength: Int? { header("Content-Length").flatMap { Int($0.trimmed) } }
}

/// Parses a response head from the start of `bytes`. Returns nil when the blank line has not arrived;
/// otherwise the head and the number of bytes it used. Throws on malformed input.
public func parseResponseHead(_ bytes: ArraySlice<UInt8>, maxBytes: Int = 64 * 1024) throws -> (ResponseHead, Int)? {
    // Find CRLFCRLF (or LFLF, leniently).
    var end = -1
    var i = bytes.startIndex
    while i < bytes.endIndex {
        if bytes[i] == 0x0A {
            if i + 1 < bytes.endIndex, bytes[i + 1] == 0x0A { end = i + 2; break }
            if i + 2 < bytes.endIndex, bytes[i + 1] == 0x0D, bytes[i + 2] == 0x0A { end = i + 3; break }
        }
        i += 1
    }
    if end < 0 {
        if bytes.count > maxBytes { throw ClientError.transport("response head larger than \(maxBytes) bytes") }
        return nil
    }
    // Split on LF bytes: as Characters, "\r\n" is one grapheme and would not match "\n".
    var lines = bytes[bytes.startIndex..<end].split(separator: 0x0A, omittingEmptySubsequences: false).map { l -> Substring in
        Substring(String(decoding: l.last == 0x0D ? l.dropLast() : l, as: UTF8.self))
    }
    while let last = lines.last, last.isEmpty { lines.removeLast() }
    guard let statusLine = lines.first else { throw ClientError.transport("empty response") }
    let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
    guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...999).contains(status) else {
        throw ClientError.transport("malformed status line: \(String(statusLine.prefix(80)))")
    }
    var headers: [(String, String)] = []
    for l in lines.dropFirst() {
        guard let colon = l.firstIndex(of: ":") else { throw ClientError.transport("malformed header line: \(String(l.prefix(80)))") }
        headers.append((String(l[..<colon]).trimmed, String(l[l.index(after: colon)...]).trimmed))
    }
    return (ResponseHead(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers), end - bytes.startIndex)
}

/// The outcome of waiting for more bytes.
public enum ReadOutcome: Equatable {
    case bytes([UInt8])
    /// The body ended cleanly (last chunk, Content-Length reached, or close for unframed bodies).
    case end
    case timeout
    case interrupted
}

/// One HTTP exchange on its own connection.
public final class HTTPExchange {
    public let fd: Int32
    public private(set) var head: ResponseHead?
    private var buf: [UInt8] = []
    private var scratch = [UInt8](repeating: 0, count: 64 * 1024)
    private var chunked: ChunkedDecoder?
    private var remaining: Int? // Content-Length bytes still due
    private var bodyDone = false
    /// A signalfd: when readable, waits return `.interrupted`.
    public var interruptFD: Int32 = -1

    init(fd: Int32) { self.fd = fd }
    deinit { FD.close(fd) }

    /// Closes the socket early (both directions).
    public func abort() { Socket.shutdownBoth(fd) }

    enum Fill { case data, eof, timeout, interrupted }

    /// Reads more raw bytes into `buf`.
    private func fill(deadline: Int64?) throws -> Fill {
        var fds = [fd]
        if interruptFD >= 0 { fds.append(interruptFD) }
        let timeout: Int32 = deadline.map { Int32(clamping: max(0, $0 - Clock.monotonicMs())) } ?? -1
        let ready: [Bool]
        do { ready = try Poll.wait(fds, events: Poll.readable, timeoutMs: timeout) } catch {
            throw ClientError.transport("\(error)")
        }
        if ready.count > 1, ready[1] { return .interrupted }
        if !ready[0] { return .timeout }
        let n: Int
        do { n = try FD.readSome(fd, into: &scratch) } catch let e as SysError {
            if e.errno == ECONNRESET_ { return .eof }
            throw ClientError.transport("reading the response: \(e.reason)")
        }
        if n == 0 { return .eof }
        buf.append(contentsOf: scratch[0..<n])
        return .data
    }

    /// Reads the response head.
    public func readHead(deadline: Int64? = nil) throws -> ResponseHead {
        if let head { return head }
        while true {
            if let (h, used) = try parseResponseHead(buf[...]) {
                if h.status == 100 { buf.removeFirst(used); continue }  // interim response
                head = h
                buf.removeFirst(used)
                if h.status == 204 || h.status == 304 {
                    bodyDone = true
                } else if h.isChunked {
                    chunked = ChunkedDecoder(maxBodyBytes: Int.max)
                } else if let n = h.contentLength {
                    remaining = n
                    if n == 0 { bodyDone = true }
                }
                return h
            }
            switch try fill(deadline: deadline) {
            case .data: continue
            case .eof: throw ClientError.transport("the daemon closed the connection before answering")
            case .timeout: throw ClientError.transport("timed out waiting for the daemon's answer")
            case .interrupted: throw Interrupted()
            }
        }
    }

    /// The next piece of the body.
    public func readBody(deadline: Int64? = nil) throws -> ReadOutcome {
        _ = try readHead(deadline: deadline)
        while true {
            if bodyDone { return .end }
            if !buf.isEmpty {
                if var dec = chunked {
                    var out: [UInt8] = []
                    let (used, result) = buf.withUnsafeBytes { dec.decode($0, into: &out) }
                    chunked = dec
                    buf.removeFirst(used)
                    switch result {
                    case .done: bodyDone = true
                    case .invalid(let e): throw ClientError.transport("malformed chunked body: \(e.message)")
                    case .needMore: break
                    }
                    if !out.isEmpty { return .bytes(out) }
                    if bodyDone { return .end }
                } else if let r = remaining {
                    let take = min(r, buf.count)
                    let out = Array(buf[0..<take])
                    buf.removeFirst(take)
                    remaining = r - take
                    if r - take == 0 { bodyDone = true }
                    return .bytes(out)
                } else {
                    let out = buf
                    buf.removeAll()
                    return .bytes(out)
                }
            }
            switch try fill(deadline: deadline) {
            case .data: continue
            case .eof:
                if chunked == nil && remaining == nil { bodyDone = true; return .end }
                throw ClientError.transport("connection closed in the middle of the response")
            case .timeout: return .timeout
            case .interrupted: return .interrupted
            }
        }
    }

    /// The whole body (for JSON answers).
    public func readAll(deadline: Int64? = nil, limit: Int = 64 << 20) throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            switch try readBody(deadline: deadline) {
            case .bytes(let b):
                out += b
                if out.count > limit { throw ClientError.transport("response body larger than \(limit) bytes") }
            case .end: return out
            case .timeout: throw ClientError.transport("timed out reading the daemon's answer")
            case .interrupted: throw Interrupted()
            }
        }
    }
}

/// Thrown when Ctrl-C arrived during a wait.
public struct Interrupted: Error {}

/// A complete response.
public struct Response {
    public var head: ResponseHead
    public var body: [UInt8]
    public var status: Int { head.status }
    public func json() throws -> JSONValue {
        do { return try parseJSON(body) } catch {
            throw ClientError.transport("the daemon's answer is not JSON (HTTP \(status)): \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
    }
}

/// Talks to one tendd.
public struct TendClient {
    public var address: ClientAddress
    public var token: String?
    /// Where the token came from (for messages), and why it could not be read.
    public var tokenSource: String
    public var tokenProblem: String?
    public var userAgent = "tend/\(tendCLIVersion)"

    public init(address: ClientAddress, token: String?, tokenSource: String, tokenProblem: String? = nil) {
        self.address = address
        self.token = token
        self.tokenSource = tokenSource
        self.tokenProblem = tokenProblem
    }

    var hostHeader: String {
        switch address {
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .unix: return "localhost"
        }
    }

    /// The request head bytes.
    public func requestHead(_ method: String, _ path: String, headers: [(String, String)] = [], bodyLength: Int?) -> [UInt8] {
        var s = "\(method) \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: \(userAgent)\r\nConnection: close\r\n"
        if let token { s += "Authorization: Bearer \(token)\r\n" }
        for (k, v) in headers { s += "\(k): \(v)\r\n" }
        if let n = bodyLength {
            if n > 0 || method == "POST" || method == "PUT" { s += "Content-Length: \(n)\r\n" }
        } else {
            s += "Transfer-Encoding: chunked\r\n"
        }
        s += "\r\n"
        return Array(s.utf8)
    }

    /// Opens a connection and sends a request with a complete body; the answer is read from the exchange.
    public func send(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> HTTPExchange {
        let ex = try open()
        var out = requestHead(method, path, headers: headers, bodyLength: body.count)
        out += body
        do { try FD.writeFully(ex.fd, out, socket: true) } catch {
            // The daemon may have answered (and closed) already, e.g. 401; that answer is read next.
        }
        return ex
    }

    /// Opens a connection to the daemon.
    public func open() throws -> HTTPExchange {
        let fd: Int32
        do { fd = try Socket.connect(address) } catch let e as SysError {
            let reason = e.call.hasPrefix("getaddrinfo") ? e.call : e.reason
            throw ClientError.connect(address: address.description, reason: reason)
        }
        return HTTPExchange(fd: fd)
    }

    /// A request whose whole answer is wanted; non-2xx answers become `ClientError.api`.
    public func call(_ method: String, _ path: String, json: JSONValue? = nil, deadline: Int64? = nil) throws -> Response {
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        if let json {
            headers.append(("Content-Type", "application/json"))
            body = json.serialized()
        }
        let ex = try send(method, path, headers: headers, body: body)
        let head = try ex.readHead(deadline: deadline)
        let data = try ex.readAll(deadline: deadline)
        let r = Response(head: head, body: data)
        if !(200..<300).contains(r.status) { throw apiError(r) }
        return r
    }

    /// `{"error","code"}` of an error answer (or its raw text).
    public func apiError(_ r: Response) -> ClientError {
        var message = String(decoding: r.body.prefix(500), as: UTF8.self).trimmed
        var code: String? = nil
        if let v = try? parseJSON(r.body) {
            if case .string(let m)? = v["error"] { message = m }
            if case .string(let c)? = v["code"] { code = c }
        }
        if message.isEmpty { message = r.head.reason.isEmpty ? "request failed" : r.head.reason }
        return .api(status: r.status, code: code, message: message)
    }
}

/// Percent-encodes a process reference (pid or managed name) as one path segment.
public func pathSegment(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default:
            let hex = Array("0123456789ABCDEF".utf8)
            out += "%"
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 15)]))
        }
    }
    return out
}

public let tendCLIVersion = "0.1.0"

extension StringProtocol {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s = s.dropLast() }
        return String(s)
    }
}
