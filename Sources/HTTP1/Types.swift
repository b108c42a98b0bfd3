// Types.swift — the types of the HTTP1 module: parser limits, the parsed request head (a class of
// constants: headers, framing, keep-alive), parse results and the error type with its fixed set of
// status/code/message triples. No parsing logic lives here beyond small lookup helpers.
// The module is pure Swift: no Foundation, no Glibc, no I/O.

/// Bounds the parser enforces on a request head.
public struct HTTPLimits: Sendable {
    /// Request line + all header lines including their line endings (and any leading empty
    /// lines tolerated before the request line). A head that has not ended within this many
    /// bytes is rejected with 431, even while still incomplete.
    public var maxHeaderBytes: Int
    /// Maximum number of header field lines.
    public var maxHeaderCount: Int

    public init(maxHeaderBytes: Int = 16 * 1024, maxHeaderCount: Int = 64) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
    }
}

/// Header fields in the order received. Names keep the case they were sent with; values are
/// trimmed of leading/trailing optional whitespace (SP / HT). Lookups are ASCII case-insensitive.
public struct HTTPHeaders: Sendable, Equatable {
    public var fields: [(name: String, value: String)]

    public init(_ fields: [(name: String, value: String)] = []) {
        self.fields = fields
    }

    /// Value of the first field named `name` (case-insensitive), or nil.
    public subscript(name: String) -> String? {
        for f in fields where asciiCaseInsensitiveEquals(f.name, name) {
            return f.value
        }
        return nil
    }

    /// Values of every field named `name` (case-insensitive), in order. Field values are
    /// returned as sent; comma-separated lists are not split.
    public func values(_ name: String) -> [String] {
        var result: [String] = []
        for f in fields where asciiCaseInsensitiveEquals(f.name, name) {
            result.append(f.value)
        }
        return result
    }

    /// True if at least one field named `name` (case-insensitive) is present.
    public func contains(_ name: String) -> Bool {
        for f in fields where asciiCaseInsensitiveEquals(f.name, name) {
            return true
        }
        return false
    }

    public var count: Int { fields.count }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        guard lhs.fields.count == rhs.fields.count else { return false }
        for (a, b) in zip(lhs.fields, rhs.fields) where a.name != b.name || a.value != b.value {
            return false
        }
        return true
    }
}

/// How the request body is delimited.
public enum BodyFraming: Equatable, Sendable {
    /// No Content-Length and no Transfer-Encoding: the request has no body.
    case none
    /// Exactly this many body bytes follow the head (may be 0).
    case contentLength(Int)
    /// The body uses chunked transfer coding; decode with `ChunkedDecoder`.
    case chunked
}

/// A fully parsed and validated request head. A class of constants: the connection, the router and a
/// handler share one head (a struct of Strings and an array was copied field by field at each hand-over,
/// 1–2 % of an /info profile).
public final class HTTPRequestHead: Sendable, Equatable {
    /// As sent (case-sensitive token).
    public let method: String
    /// Raw request-target.
    public let target: String
    /// `target` up to the first '?', not percent-decoded.
    public let path: String
    /// Everything after the first '?', raw; nil if the target has no '?'.
    public let query: String?
    /// 0 or 1. HTTP/1.2 … HTTP/1.9 are treated as 1.1 (RFC 9110 §6.2: highest supported minor).
    public let versionMinor: Int
    public let headers: HTTPHeaders
    /// HTTP/1.1: true unless "Connection: close". HTTP/1.0: true only with "Connection: keep-alive"
    /// (and no "close"). Connection is parsed as a case-insensitive token list.
    public let keepAlive: Bool
    public let framing: BodyFraming
    /// "Expect: 100-continue" on an HTTP/1.1 request (ignored for HTTP/1.0, per RFC 9110 §10.1.1).
    public let expectsContinue: Bool

    public init(method: String, target: String, path: String, query: String?, versionMinor: Int,
                headers: HTTPHeaders, keepAlive: Bool, framing: BodyFraming, expectsContinue: Bool) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.versionMinor = versionMinor
        self.headers = headers
        self.keepAlive = keepAlive
        self.framing = framing
        self.expectsContinue = expectsContinue
    }

    /// Equal fields (a value comparison, as when this was a struct).
    public static func == (a: HTTPRequestHead, b: HTTPRequestHead) -> Bool {
        a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query
            && a.versionMinor == b.versionMinor && a.headers == b.headers && a.keepAlive == b.keepAlive
            && a.framing == b.framing && a.expectsContinue == b.expectsContinue
    }
}

/// A protocol error to answer with `status` before closing the connection.
/// `code` is a stable machine-readable identifier, `message` a short human sentence.
public struct HTTPParseError: Error, Equatable, Sendable {
    public let status: Int
    public let code: String
    public let message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
}

extension HTTPParseError {
    static func badRequest(_ message: String) -> HTTPParseError {
        HTTPParseError(status: 400, code: "BAD_REQUEST", message: message)
    }

    // Request line.
    static let invalidMethod = badRequest("Invalid request method.")
    static let malformedRequestLine = badRequest("Malformed request line.")
    static let invalidTarget = badRequest("Invalid request target.")
    static let malformedVersion = badRequest("Malformed HTTP version.")
    static let versionNotSupported = HTTPParseError(
        status: 505, code: "HTTP_VERSION_NOT_SUPPORTED", message: "Only HTTP/1.0 and HTTP/1.1 are supported.")

    // Header lines.
    static let obsFold = badRequest("Obsolete header line folding is not allowed.")
    static let invalidFieldName = badRequest("Invalid header field name.")
    static let whitespaceBeforeColon = badRequest("Whitespace between header field name and colon is not allowed.")
    static let invalidFieldValue = badRequest("Invalid character in header field value.")
    static let headersTooLarge = HTTPParseError(
        status: 431, code: "HEADERS_TOO_LARGE", message: "Request header section is too large.")
    static let tooManyHeaders = HTTPParseError(
        status: 431, code: "HEADERS_TOO_LARGE", message: "Too many header fields.")

    // Framing.
    static let invalidContentLength = badRequest("Invalid Content-Length.")
    static let conflictingContentLength = badRequest("Conflicting Content-Length values.")
    static let contentLengthWithTransferEncoding = badRequest(
        "Both Transfer-Encoding and Content-Length are present.")
    static let transferEncodingOnHTTP10 = badRequest("Transfer-Encoding is not allowed in HTTP/1.0.")
    static let invalidTransferEncoding = badRequest("Invalid Transfer-Encoding.")
    static let unsupportedTransferEncoding = HTTPParseError(
        status: 501, code: "NOT_IMPLEMENTED", message: "Only the chunked transfer coding is supported.")

    // Chunked body.
    static let invalidChunkSize = badRequest("Invalid chunk size.")
    static let chunkSizeLineTooLong = badRequest("Chunk size line is too long.")
    static let invalidChunkExtension = badRequest("Invalid character in chunk size line.")
    static let missingChunkCRLF = badRequest("Missing CRLF after chunk data.")
    static let invalidTrailer = badRequest("Invalid character in chunked trailer section.")
    static let trailersTooLarge = HTTPParseError(
        status: 431, code: "HEADERS_TOO_LARGE", message: "Chunked trailer section is too large.")
    static let bodyTooLarge = HTTPParseError(
        status: 413, code: "BODY_TOO_LARGE", message: "Request body is too large.")
}

/// Outcome of `parseRequestHead`.
public enum HeadParseResult: Equatable, Sendable {
    /// The head is complete; `consumed` bytes (leading empty lines + head + final empty line)
    /// belong to it. The body, if any, starts right after.
    case complete(HTTPRequestHead, consumed: Int)
    /// More bytes are needed. Call again with the same buffer extended.
    case incomplete
    /// The request is malformed; answer with the error's status and close.
    case invalid(HTTPParseError)
}

// MARK: - ASCII helpers shared by the module

@inline(__always)
func asciiLower(_ b: UInt8) -> UInt8 {
    (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
}

/// ASCII case-insensitive equality (non-ASCII bytes must match exactly).
/// The common case (two Strings, e.g. a header name and a literal): compared over their contiguous
/// UTF-8 in place; walking two `UTF8View`s with `zip` showed up in every request's profile.
func asciiCaseInsensitiveEquals(_ a: String, _ b: String) -> Bool {
    var a = a, b = b
    guard a.utf8.count == b.utf8.count else { return false }
    return a.withUTF8 { x in
        b.withUTF8 { y in
            for i in 0..<x.count where asciiLower(x[i]) != asciiLower(y[i]) { return false }
            return true
        }
    }
}

func asciiCaseInsensitiveEquals<A: StringProtocol, B: StringProtocol>(_ a: A, _ b: B) -> Bool {
    let ua = a.utf8, ub = b.utf8
    guard ua.count == ub.count else { return false }
    for (x, y) in zip(ua, ub) where asciiLower(x) != asciiLower(y) {
        return false
    }
    return true
}

/// RFC 9110 tchar: "!#$%&'*+-.^_`|~" / DIGIT / ALPHA.
@inline(__always)
func isTokenByte(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
         UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
         UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

@inline(__always)
func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(b &- UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(b &- UInt8(ascii: "a") &+ 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(b &- UInt8(ascii: "A") &+ 10)
    default: return nil
    }
}

let asciiCR: UInt8 = 0x0D
let asciiLF: UInt8 = 0x0A
let asciiSP: UInt8 = 0x20
let asciiHT: UInt8 = 0x09
