// RequestParser.swift — the stateless HTTP/1.1 request-head parser (`parseRequestHead`).
// It owns request-line and header-line syntax, the header size/count limits, and the framing
// semantics derived from the head (Content-Length / Transfer-Encoding / Connection / Expect).
//
// Design: the caller re-calls the parser on its growing receive buffer; the parser rescans from
// the start each time (heads are small and bounded by `maxHeaderBytes`, so this is linear per
// call). Pass 1 walks complete lines, validating syntax without allocating; only once the blank
// line ending the head is found does pass 2 build the Strings (the framing fields among them are
// recognised by their bytes, in the same walk). Errors are reported in byte
// order and depend only on bytes already seen, so feeding a request whole or one byte at a time
// yields the same result. The one early check on an unterminated line is the request method
// (so binary garbage such as a TLS ClientHello is rejected at once instead of after 16 KiB).

/// Parses a request head at the start of `bytes`.
///
/// - Leading empty lines (CRLF or bare LF) are skipped and counted in `consumed`.
/// - Both CRLF and bare LF line endings are accepted.
/// - If the head has not ended within `limits.maxHeaderBytes` bytes (counted from the start of
///   `bytes`), the result is `.invalid` 431 even though the head is incomplete.
public func parseRequestHead(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits) -> HeadParseResult {
    let limit = max(0, limits.maxHeaderBytes)
    // Only the first `limit` bytes may hold the head. Parsing exactly that window makes the
    // answer independent of how the bytes were split across calls.
    let window = UnsafeRawBufferPointer(rebasing: bytes[0..<min(bytes.count, limit)])
    let result = parseHeadWindow(window, maxHeaderCount: limits.maxHeaderCount)
    if case .incomplete = result, bytes.count > limit {
        return .invalid(.headersTooLarge)
    }
    return result
}

/// Convenience overload; see `parseRequestHead(_:limits:)` for `UnsafeRawBufferPointer`.
public func parseRequestHead(_ bytes: ArraySlice<UInt8>, limits: HTTPLimits) -> HeadParseResult {
    bytes.withUnsafeBytes { parseRequestHead($0, limits: limits) }
}

/// Convenience overload; see `parseRequestHead(_:limits:)` for `UnsafeRawBufferPointer`.
public func parseRequestHead(_ bytes: [UInt8], limits: HTTPLimits) -> HeadParseResult {
    bytes.withUnsafeBytes { parseRequestHead($0, limits: limits) }
}

// MARK: - Pass 1: line splitting and syntax

private func parseHeadWindow(_ b: UnsafeRawBufferPointer, maxHeaderCount: Int) -> HeadParseResult {
    let n = b.count
    var lineStart = 0
    var requestLine: Range<Int>? = nil
    var fieldCount = 0

    while true {
        // Find the end of the current line.
        var lf = lineStart
        while lf < n && b[lf] != asciiLF { lf += 1 }
        if lf == n {
            // Unterminated line. Only the request method is checked early.
            if requestLine == nil, let err = checkPartialRequestLine(b, from: lineStart) {
                return .invalid(err)
            }
            return .incomplete
        }
        var contentEnd = lf
        if contentEnd > lineStart && b[contentEnd - 1] == asciiCR { contentEnd -= 1 }
        let line = lineStart..<contentEnd
        lineStart = lf + 1

        guard let reqLine = requestLine else {
            if line.isEmpty { continue }    // tolerated empty line before the request line
            if let err = validateRequestLine(b, line) { return .invalid(err) }
            requestLine = line
            continue
        }
        if line.isEmpty {
            return buildHead(b, requestLine: reqLine, fieldsEnd: line.lowerBound, consumed: lineStart)
        }
        if let err = validateFieldLine(b, line) { return .invalid(err) }
        fieldCount += 1
        if fieldCount > maxHeaderCount { return .invalid(.tooManyHeaders) }
    }
}

/// Early rejection on an unterminated first line: every byte before the first SP must be a
/// token byte. A CR as the very last byte is not judged yet (it may start the line ending).
/// This yields the same error the full check would give once the line is complete.
private func checkPartialRequestLine(_ b: UnsafeRawBufferPointer, from start: Int) -> HTTPParseError? {
    var i = start
    let n = b.count
    while i < n {
        let c = b[i]
        if c == asciiSP { return nil }
        if !isTokenByte(c) {
            if c == asciiCR && i == n - 1 { return nil }
            return .invalidMethod
        }
        i += 1
    }
    return nil
}

/// `method SP request-target SP HTTP-version`, each separator exactly one SP.
private func validateRequestLine(_ b: UnsafeRawBufferPointer, _ line: Range<Int>) -> HTTPParseError? {
    var i = line.lowerBound
    let end = line.upperBound
    // Method: checked first so the result matches `checkPartialRequestLine`.
    while i < end && b[i] != asciiSP {
        if !isTokenByte(b[i]) { return .invalidMethod }
        i += 1
    }
    if i == line.lowerBound || i == end { return .malformedRequestLine }
    i += 1
    // Target: visible ASCII only (non-ASCII must be percent-encoded).
    let targetStart = i
    while i < end && b[i] != asciiSP {
        let c = b[i]
        if c <= 0x20 || c >= 0x7F { return .invalidTarget }
        i += 1
    }
    if i == targetStart || i == end { return .malformedRequestLine }
    i += 1
    return versionMinor(b, i..<end).error
}

/// Parses `HTTP/1.d` → minor (clamped to 1). `HTTP/<digits>[.<digits>]` with another major
/// → 505; anything else → 400.
private func versionMinor(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> (minor: Int, error: HTTPParseError?) {
    let prefix: [UInt8] = [0x48, 0x54, 0x54, 0x50, 0x2F] // "HTTP/"
    guard r.count > prefix.count else { return (0, .malformedVersion) }
    for k in 0..<prefix.count where b[r.lowerBound + k] != prefix[k] {
        return (0, .malformedVersion)
    }
    var i = r.lowerBound + prefix.count
    let majorStart = i
    while i < r.upperBound && isDigit(b[i]) { i += 1 }
    let majorEnd = i
    if majorEnd == majorStart { return (0, .malformedVersion) }
    var minorStart = -1, minorEnd = -1
    if i < r.upperBound {
        guard b[i] == UInt8(ascii: ".") else { return (0, .malformedVersion) }
        i += 1
        minorStart = i
        while i < r.upperBound && isDigit(b[i]) { i += 1 }
        minorEnd = i
        if minorEnd == minorStart || i != r.upperBound { return (0, .malformedVersion) }
    }
    let majorIsOne = majorEnd - majorStart == 1 && b[majorStart] == UInt8(ascii: "1")
    if !majorIsOne { return (0, .versionNotSupported) }
    guard minorStart >= 0, minorEnd - minorStart == 1 else { return (0, .malformedVersion) }
    return (b[minorStart] == UInt8(ascii: "0") ? 0 : 1, nil)
}

@inline(__always)
private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

/// `field-name ":" OWS field-value OWS`. No obs-fold, no whitespace before the colon, no CTLs
/// (other than HT) in the value.
private func validateFieldLine(_ b: UnsafeRawBufferPointer, _ line: Range<Int>) -> HTTPParseError? {
    var i = line.lowerBound
    let end = line.upperBound
    let first = b[i]
    if first == asciiSP || first == asciiHT { return .obsFold }
    while i < end && isTokenByte(b[i]) { i += 1 }
    if i == end { return .invalidFieldName }
    let c = b[i]
    if c != UInt8(ascii: ":") {
        if (c == asciiSP || c == asciiHT) && i > line.lowerBound { return .whitespaceBeforeColon }
        return .invalidFieldName
    }
    if i == line.lowerBound { return .invalidFieldName }
    i += 1
    while i < end {
        let v = b[i]
        if (v < 0x20 && v != asciiHT) || v == 0x7F { return .invalidFieldValue }
        i += 1
    }
    return nil
}

// MARK: - Pass 2: building the head and framing semantics

private func string(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> String {
    String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self)
}

private func buildHead(_ b: UnsafeRawBufferPointer, requestLine: Range<Int>, fieldsEnd: Int,
                       consumed: Int) -> HeadParseResult {
    // Request line (already validated: exactly two single SPs).
    var i = requestLine.lowerBound
    while b[i] != asciiSP { i += 1 }
    let method = string(b, requestLine.lowerBound..<i)
    i += 1
    let targetStart = i
    var qmark = -1
    while b[i] != asciiSP {
        if qmark < 0 && b[i] == UInt8(ascii: "?") { qmark = i }
        i += 1
    }
    let targetEnd = i
    let minor = versionMinor(b, (i + 1)..<requestLine.upperBound).minor
    let target = string(b, targetStart..<targetEnd)
    let path: String
    let query: String?
    if qmark >= 0 {
        path = string(b, targetStart..<qmark)
        query = string(b, (qmark + 1)..<targetEnd)
    } else {
        path = target
        query = nil
    }

    // Header fields (already validated), and the framing fields among them, recognised by their bytes
    // (comparing every name String with four literals was a tenth of the parser's time).
    var fields: [(name: String, value: String)] = []
    var contentLength: Int? = nil
    var sawContentLength = false
    var transferEncodings: [Substring] = []
    var sawTransferEncoding = false
    var connClose = false, connKeepAlive = false
    var expectsContinue = false
    var lineStart = requestLine.upperBound
    // Skip the request line's ending.
    while b[lineStart] != asciiLF { lineStart += 1 }
    lineStart += 1
    while lineStart < fieldsEnd {
        var lf = lineStart
        while b[lf] != asciiLF { lf += 1 }
        var end = lf
        if b[end - 1] == asciiCR { end -= 1 }
        var colon = lineStart
        while b[colon] != UInt8(ascii: ":") { colon += 1 }
        var vs = colon + 1, ve = end
        while vs < ve && (b[vs] == asciiSP || b[vs] == asciiHT) { vs += 1 }
        while ve > vs && (b[ve - 1] == asciiSP || b[ve - 1] == asciiHT) { ve -= 1 }
        let name = lineStart..<colon
        let value = string(b, vs..<ve)
        fields.append((name: string(b, name), value: value))
        lineStart = lf + 1

        // Framing, field by field in order (so the first error in byte order is the one reported).
        switch framingField(b, name) {
        case .contentLength:
            sawContentLength = true
            for element in listElements(value, keepEmpty: true) {
                guard let n = parseDecimal(element) else { return .invalid(.invalidContentLength) }
                if let prev = contentLength, prev != n { return .invalid(.conflictingContentLength) }
                contentLength = n
            }
        case .transferEncoding:
            sawTransferEncoding = true
            transferEncodings.append(contentsOf: listElements(value, keepEmpty: false))
        case .connection:
            for token in listElements(value, keepEmpty: false) {
                if asciiCaseInsensitiveEquals(token, "close") { connClose = true }
                else if asciiCaseInsensitiveEquals(token, "keep-alive") { connKeepAlive = true }
            }
        case .expect:
            if asciiCaseInsensitiveEquals(value, "100-continue") { expectsContinue = true }
        case nil:
            break
        }
    }
    let headers = HTTPHeaders(fields)

    let framing: BodyFraming
    if sawTransferEncoding {
        if minor == 0 { return .invalid(.transferEncodingOnHTTP10) }
        if sawContentLength { return .invalid(.contentLengthWithTransferEncoding) }
        if transferEncodings.isEmpty { return .invalid(.invalidTransferEncoding) }
        var chunkedCount = 0
        for coding in transferEncodings where asciiCaseInsensitiveEquals(coding, "chunked") {
            chunkedCount += 1
        }
        if transferEncodings.count == 1 && chunkedCount == 1 {
            framing = .chunked
        } else if chunkedCount > 1 || (chunkedCount == 1 && !asciiCaseInsensitiveEquals(transferEncodings.last!, "chunked")) {
            // chunked applied twice, or not as the final coding: the body cannot be delimited.
            return .invalid(.invalidTransferEncoding)
        } else {
            return .invalid(.unsupportedTransferEncoding)
        }
    } else if let n = contentLength {
        framing = .contentLength(n)
    } else if sawContentLength {
        return .invalid(.invalidContentLength)
    } else {
        framing = .none
    }

    let keepAlive = minor >= 1 ? !connClose : (connKeepAlive && !connClose)
    let head = HTTPRequestHead(
        method: method, target: target, path: path, query: query, versionMinor: minor,
        headers: headers, keepAlive: keepAlive, framing: framing,
        expectsContinue: minor >= 1 && expectsContinue)
    return .complete(head, consumed: consumed)
}

private enum FramingField { case contentLength, transferEncoding, connection, expect }

/// Which framing field `name` (bytes of a validated field name) is, ASCII case-insensitively; nil for
/// any other field. The length picks the one candidate.
private func framingField(_ b: UnsafeRawBufferPointer, _ name: Range<Int>) -> FramingField? {
    func nameIs(_ lower: StaticString) -> Bool {
        lower.withUTF8Buffer { l in
            for k in 0..<l.count where asciiLower(b[name.lowerBound + k]) != l[k] { return false }
            return true
        }
    }
    switch name.count {
    case 14: return nameIs("content-length") ? .contentLength : nil
    case 17: return nameIs("transfer-encoding") ? .transferEncoding : nil
    case 10: return nameIs("connection") ? .connection : nil
    case 6: return nameIs("expect") ? .expect : nil
    default: return nil
    }
}

/// Splits a comma-separated field value into OWS-trimmed elements.
private func listElements(_ value: String, keepEmpty: Bool) -> [Substring] {
    var result: [Substring] = []
    for part in value.split(separator: ",", omittingEmptySubsequences: false) {
        let trimmed = trimOWS(part)
        if trimmed.isEmpty && !keepEmpty { continue }
        result.append(trimmed)
    }
    return result
}

private func trimOWS(_ s: Substring) -> Substring {
    var start = s.startIndex, end = s.endIndex
    while start < end && (s[start] == " " || s[start] == "\t") { start = s.index(after: start) }
    while end > start {
        let prev = s.index(before: end)
        guard s[prev] == " " || s[prev] == "\t" else { break }
        end = prev
    }
    return s[start..<end]
}

/// Non-empty ASCII digits only, no sign, no overflow.
private func parseDecimal(_ s: Substring) -> Int? {
    if s.isEmpty { return nil }
    var value = 0
    for c in s.utf8 {
        guard isDigit(c) else { return nil }
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (a, o2) = m.addingReportingOverflow(Int(c &- UInt8(ascii: "0")))
        if o1 || o2 { return nil }
        value = a
    }
    return value
}
