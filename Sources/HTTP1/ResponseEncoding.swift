// ResponseEncoding.swift — serialisation of HTTP/1.1 responses into byte buffers: the status
// line and header block, chunked-coding chunks and the last-chunk, plus reason phrases. It owns
// no connection state; the caller decides framing (Content-Length vs chunked) and keep-alive.

/// Standard reason phrase for `status`; unknown codes get a phrase for their class.
public func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: return "Continue"
    case 101: return "Switching Protocols"
    case 200: return "OK"
    case 201: return "Created"
    case 202: return "Accepted"
    case 204: return "No Content"
    case 206: return "Partial Content"
    case 301: return "Moved Permanently"
    case 302: return "Found"
    case 303: return "See Other"
    case 304: return "Not Modified"
    case 307: return "Temporary Redirect"
    case 308: return "Permanent Redirect"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 406: return "Not Acceptable"
    case 408: return "Request Timeout"
    case 409: return "Conflict"
    case 410: return "Gone"
    case 411: return "Length Required"
    case 412: return "Precondition Failed"
    case 413: return "Content Too Large"
    case 414: return "URI Too Long"
    case 415: return "Unsupported Media Type"
    case 416: return "Range Not Satisfiable"
    case 417: return "Expectation Failed"
    case 422: return "Unprocessable Content"
    case 423: return "Locked"
    case 425: return "Too Early"
    case 426: return "Upgrade Required"
    case 428: return "Precondition Required"
    case 429: return "Too Many Requests"
    case 431: return "Request Header Fields Too Large"
    case 500: return "Internal Server Error"
    case 501: return "Not Implemented"
    case 502: return "Bad Gateway"
    case 503: return "Service Unavailable"
    case 504: return "Gateway Timeout"
    case 505: return "HTTP Version Not Supported"
    case 507: return "Insufficient Storage"
    case 100..<200: return "Informational"
    case 200..<300: return "Success"
    case 300..<400: return "Redirection"
    case 400..<500: return "Client Error"
    case 500..<600: return "Server Error"
    default: return "Unknown"
    }
}

/// Appends `"HTTP/1.1 <status> <reason>\r\n"`, then `"name: value\r\n"` for each header in
/// order, then `"\r\n"`. Header names and values are written as given, except that CR, LF and
/// other control bytes (HT excepted) are replaced by a space, so a value can never split the
/// header block (response-splitting defence).
public func encodeResponseHead(status: Int, headers: [(String, String)], into out: inout [UInt8]) {
    out.reserveCapacity(out.count + 64 + headers.count * 32)
    appendStatusLine(status, to: &out)
    for (name, value) in headers { appendField(name, value, to: &out) }
    out.append(asciiCR); out.append(asciiLF)
}

/// The head of an answer with a body: the same bytes as `encodeResponseHead(status:headers:into:)` given
/// `Content-Type` (if any), `Content-Length` (if any), `headers`, then `Connection: close` (if `close`),
/// written without building that list (an array and a String for every response).
public func encodeResponseHead(status: Int, contentType: String?, contentLength: Int?,
                               headers: [(String, String)], close: Bool, into out: inout [UInt8]) {
    out.reserveCapacity(out.count + 128 + headers.count * 32)
    appendStatusLine(status, to: &out)
    if let contentType { appendField("Content-Type", contentType, to: &out) }
    if let contentLength {
        appendASCII("Content-Length: ", to: &out)
        appendDecimal(contentLength, to: &out)
        out.append(asciiCR); out.append(asciiLF)
    }
    for (name, value) in headers { appendField(name, value, to: &out) }
    if close { appendASCII("Connection: close\r\n", to: &out) }
    out.append(asciiCR); out.append(asciiLF)
}

private func appendStatusLine(_ status: Int, to out: inout [UInt8]) {
    appendASCII("HTTP/1.1 ", to: &out)
    appendDecimal(status, to: &out)
    out.append(asciiSP)
    appendSanitized(reasonPhrase(status), to: &out)
    out.append(asciiCR); out.append(asciiLF)
}

private func appendField(_ name: String, _ value: String, to out: inout [UInt8]) {
    appendSanitized(name, to: &out)
    out.append(UInt8(ascii: ":")); out.append(asciiSP)
    appendSanitized(value, to: &out)
    out.append(asciiCR); out.append(asciiLF)
}

/// Appends one chunk: `"<hex size>\r\n" + payload + "\r\n"` (lowercase hex, no leading zeros).
/// An empty payload appends nothing, so this can never emit the last-chunk by accident.
public func encodeChunk(_ payload: UnsafeRawBufferPointer, into out: inout [UInt8]) {
    if payload.isEmpty { return }
    appendHex(payload.count, to: &out)
    out.append(asciiCR); out.append(asciiLF)
    out.append(contentsOf: payload)
    out.append(asciiCR); out.append(asciiLF)
}

/// Convenience overload of `encodeChunk(_:into:)` for byte arrays.
public func encodeChunk(_ payload: [UInt8], into out: inout [UInt8]) {
    payload.withUnsafeBytes { encodeChunk($0, into: &out) }
}

/// The last-chunk with an empty trailer section: `"0\r\n\r\n"`.
public let lastChunk: [UInt8] = [UInt8(ascii: "0"), asciiCR, asciiLF, asciiCR, asciiLF]

// MARK: - Helpers

private func appendASCII(_ s: StaticString, to out: inout [UInt8]) {
    s.withUTF8Buffer { out.append(contentsOf: $0) }
}

/// Header names and values: a control byte (other than HT) becomes a space. The usual clean value is
/// appended in one copy; byte by byte only when something must be replaced.
private func appendSanitized(_ s: String, to out: inout [UInt8]) {
    var s = s
    s.withUTF8 { buf in
        if !buf.contains(where: { ($0 < 0x20 && $0 != asciiHT) || $0 == 0x7F }) { out.append(contentsOf: buf); return }
        for b in buf { out.append((b < 0x20 && b != asciiHT) || b == 0x7F ? asciiSP : b) }
    }
}

/// Appends the decimal representation of `value` (negative values get a '-').
func appendDecimal(_ value: Int, to out: inout [UInt8]) {
    var v = value.magnitude
    if value < 0 { out.append(UInt8(ascii: "-")) }
    var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                 UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var count = 0
    withUnsafeMutableBytes(of: &digits) { buf in
        repeat {
            buf[count] = UInt8(ascii: "0") &+ UInt8(v % 10)
            v /= 10
            count += 1
        } while v > 0
        for k in stride(from: count - 1, through: 0, by: -1) { out.append(buf[k]) }
    }
}

/// Appends the lowercase hexadecimal representation of a non-negative `value`.
func appendHex(_ value: Int, to out: inout [UInt8]) {
    precondition(value >= 0)
    var shift = (Int.bitWidth - 4)
    while shift > 0 && (value >> shift) & 0xF == 0 { shift -= 4 }
    while shift >= 0 {
        let d = UInt8((value >> shift) & 0xF)
        out.append(d < 10 ? UInt8(ascii: "0") &+ d : UInt8(ascii: "a") &+ (d &- 10))
        shift -= 4
    }
}
