// Strict RFC 8259 parsing of a byte buffer into a `JSONValue`, and `JSONParseError`. A recursive-descent
// parser over raw bytes: strings without escapes are turned into `String`s straight from the input,
// escaped ones are decoded through one reused scratch buffer. Every error names what went wrong and
// the byte offset where it was detected.

/// Why a parse failed and at which byte offset of the input.
public struct JSONParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public let offset: Int

    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "\(message) at byte \(offset)" }
}

/// Parses exactly one JSON value (RFC 8259), optionally surrounded by whitespace.
///
/// Numbers without fraction or exponent that fit in Int64 become `.int`, other numbers `.double`
/// (a number too large for a Double is an error). Arrays and objects may nest at most `maxDepth` deep.
/// Rejected with a `JSONParseError`: invalid UTF-8 or unescaped control characters in strings, bad
/// escapes, lone surrogate escapes, NaN/Infinity, leading zeros, trailing commas, trailing garbage.
public func parseJSON(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) throws -> JSONValue {
    guard let base = bytes.baseAddress, bytes.count > 0 else {
        throw JSONParseError(message: "unexpected end of input", offset: 0)
    }
    var parser = JSONParser(base.assumingMemoryBound(to: UInt8.self), count: bytes.count, maxDepth: maxDepth)
    return try parser.parseDocument()
}

/// Parses exactly one JSON value. See the raw-buffer overload.
public func parseJSON(_ bytes: [UInt8], maxDepth: Int = 64) throws -> JSONValue {
    try bytes.withUnsafeBytes { try parseJSON($0, maxDepth: maxDepth) }
}

private let lowBits: UInt64 = 0x0101_0101_0101_0101
private let highBits: UInt64 = 0x8080_8080_8080_8080

private struct JSONParser {
    let p: UnsafePointer<UInt8>
    let n: Int
    let maxDepth: Int
    var i = 0
    var depth = 0
    /// Decoded bytes of the string being parsed, used only when it contains escapes.
    var scratch: [UInt8] = []

    init(_ p: UnsafePointer<UInt8>, count: Int, maxDepth: Int) {
        self.p = p
        self.n = count
        self.maxDepth = maxDepth
    }

    func fail(_ message: String, _ offset: Int) -> JSONParseError {
        JSONParseError(message: message, offset: offset)
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        if i < n { throw fail("unexpected \(describe(p[i])) after the JSON value", i) }
        return value
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while i < n {
            switch p[i] {
            case 0x20, 0x0A, 0x0D, 0x09: i += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        guard i < n else { throw fail("unexpected end of input", i) }
        switch p[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "N"), UInt8(ascii: "I"): throw fail("NaN and Infinity are not valid JSON", i)
        default: throw fail("unexpected \(describe(p[i]))", i)
        }
    }

    mutating func parseLiteral(_ word: StaticString) throws(JSONParseError) {
        let len = word.utf8CodeUnitCount
        let w = word.utf8Start
        for k in 0..<len where i + k >= n || p[i + k] != w[k] {
            throw fail("invalid literal (expected '\(word)')", i)
        }
        i += len
    }

    mutating func enterContainer() throws(JSONParseError) {
        depth += 1
        if depth > maxDepth { throw fail("nesting deeper than the maximum of \(maxDepth)", i) }
        i += 1
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enterContainer()
        var elements: [JSONValue] = []
        skipWhitespace()
        if i < n && p[i] == UInt8(ascii: "]") {
            i += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            elements.append(try parseValue())
            skipWhitespace()
            guard i < n else { throw fail("unexpected end of input in array", i) }
            let c = p[i]
            if c == UInt8(ascii: "]") { i += 1; break }
            guard c == UInt8(ascii: ",") else { throw fail("expected ',' or ']' in array, found \(describe(c))", i) }
            i += 1
            skipWhitespace()
            if i < n && p[i] == UInt8(ascii: "]") { throw fail("trailing comma in array", i) }
        }
        depth -= 1
        return .array(elements)
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enterContainer()
        var pairs: [(String, JSONValue)] = []
        skipWhitespace()
        if i < n && p[i] == UInt8(ascii: "}") {
            i += 1
            depth -= 1
            return .object(pairs)
        }
        while true {
            skipWhitespace()
            guard i < n else { throw fail("unexpected end of input in object", i) }
            guard p[i] == UInt8(ascii: "\"") else {
                if p[i] == UInt8(ascii: "}") && !pairs.isEmpty { throw fail("trailing comma in object", i) }
                throw fail("expected a string key in object, found \(describe(p[i]))", i)
            }
            let key = try parseString()
            skipWhitespace()
            guard i < n else { throw fail("unexpected end of input in object", i) }
            guard p[i] == UInt8(ascii: ":") else { throw fail("expected ':' after object key, found \(describe(p[i]))", i) }
            i += 1
            let value = try parseValue()
            pairs.append((key, value))
            skipWhitespace()
            guard i < n else { throw fail("unexpected end of input in object", i) }
            let c = p[i]
            if c == UInt8(ascii: "}") { i += 1; break }
            guard c == UInt8(ascii: ",") else { throw fail("expected ',' or '}' in object, found \(describe(c))", i) }
            i += 1
        }
        depth -= 1
        return .object(pairs)
    }

    // MARK: Strings

    /// Parses the string starting at the opening quote `p[i]`.
    mutating func parseString() throws(JSONParseError) -> String {
        var j = i + 1
        var run = j            // start of the bytes not yet copied to `scratch`
        var escaped = false    // once true, the result is built in `scratch`
        while true {
            j = skipPlainASCII(from: j)
            guard j < n else { throw fail("unterminated string", n) }
            let b = p[j]
            if b == UInt8(ascii: "\"") {
                let s: String
                if escaped {
                    scratch.append(contentsOf: UnsafeBufferPointer(start: p + run, count: j - run))
                    s = String(decoding: scratch, as: UTF8.self)
                } else {
                    s = String(decoding: UnsafeBufferPointer(start: p + run, count: j - run), as: UTF8.self)
                }
                i = j + 1
                return s
            } else if b == UInt8(ascii: "\\") {
                if !escaped {
                    escaped = true
                    scratch.removeAll(keepingCapacity: true)
                }
                scratch.append(contentsOf: UnsafeBufferPointer(start: p + run, count: j - run))
                j = try decodeEscape(at: j)
                run = j
            } else if b >= 0x80 {
                j = try skipUTF8Sequence(at: j)
            } else {
                throw fail("unescaped control character \(hexByte(b)) in string", j)
            }
        }
    }

    /// Index of the first byte at or after `j` that is not printable ASCII other than `"` and `\`.
    @inline(__always)
    func skipPlainASCII(from start: Int) -> Int {
        var j = start
        while j + 8 <= n {
            let w = UInt64(littleEndian: UnsafeRawPointer(p + j).loadUnaligned(as: UInt64.self))
            let control = (w &- lowBits &* 0x20) & ~w & highBits
            let q = w ^ (lowBits &* 0x22)
            let b = w ^ (lowBits &* 0x5C)
            let special = control | ((q &- lowBits) & ~q & highBits) | ((b &- lowBits) & ~b & highBits) | (w & highBits)
            if special != 0 { return j + special.trailingZeroBitCount >> 3 }
            j += 8
        }
        while j < n {
            let c = p[j]
            if c < 0x20 || c >= 0x80 || c == 0x22 || c == 0x5C { break }
            j += 1
        }
        return j
    }

    /// Validates the multi-byte UTF-8 sequence starting at `j` and returns the index after it.
    func skipUTF8Sequence(at j: Int) throws(JSONParseError) -> Int {
        let b0 = p[j]
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        let len: Int
        switch b0 {
        case 0xC2...0xDF: len = 2
        case 0xE0: len = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: len = 3
        case 0xED: len = 3; hi = 0x9F
        case 0xF0: len = 4; lo = 0x90
        case 0xF1...0xF3: len = 4
        case 0xF4: len = 4; hi = 0x8F
        default: throw fail("invalid UTF-8 byte \(hexByte(b0)) in string", j)
        }
        for k in 1..<len {
            guard j + k < n else { throw fail("truncated UTF-8 sequence in string", j) }
            let b = p[j + k]
            let ok = k == 1 ? (b >= lo && b <= hi) : (b & 0xC0 == 0x80)
            if !ok { throw fail("invalid UTF-8 sequence in string", j) }
        }
        return j + len
    }

    /// Decodes the escape at `p[j] == "\"` into `scratch` and returns the index after it.
    mutating func decodeEscape(at j: Int) throws(JSONParseError) -> Int {
        guard j + 1 < n else { throw fail("unterminated string", n) }
        let c = p[j + 1]
        let byte: UInt8
        switch c {
        case UInt8(ascii: "\""): byte = 0x22
        case UInt8(ascii: "\\"): byte = 0x5C
        case UInt8(ascii: "/"): byte = 0x2F
        case UInt8(ascii: "b"): byte = 0x08
        case UInt8(ascii: "f"): byte = 0x0C
        case UInt8(ascii: "n"): byte = 0x0A
        case UInt8(ascii: "r"): byte = 0x0D
        case UInt8(ascii: "t"): byte = 0x09
        case UInt8(ascii: "u"):
            var scalar = try hex4(at: j + 2)
            var end = j + 6
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                guard end + 1 < n, p[end] == UInt8(ascii: "\\"), p[end + 1] == UInt8(ascii: "u") else {
                    throw fail("lone surrogate escape (high surrogate not followed by a low one)", j)
                }
                let low = try hex4(at: end + 2)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw fail("lone surrogate escape (high surrogate not followed by a low one)", j)
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                end += 6
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw fail("lone surrogate escape (low surrogate without a high one)", j)
            }
            appendUTF8(scalar)
            return end
        default:
            if c < 0x20 || c >= 0x80 { throw fail("invalid escape sequence", j) }
            throw fail("invalid escape sequence '\\\(Character(Unicode.Scalar(c)))'", j)
        }
        scratch.append(byte)
        return j + 2
    }

    /// The value of the four hex digits at `k` (the `XXXX` of `\uXXXX`).
    func hex4(at k: Int) throws(JSONParseError) -> UInt32 {
        guard k + 4 <= n else { throw fail("invalid \\u escape (expected 4 hex digits)", k - 2) }
        var v: UInt32 = 0
        for m in k..<(k + 4) {
            let c = p[m]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw fail("invalid \\u escape (expected 4 hex digits)", k - 2)
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    mutating func appendUTF8(_ s: UInt32) {
        switch s {
        case 0..<0x80:
            scratch.append(UInt8(s))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | s >> 6))
            scratch.append(UInt8(0x80 | s & 0x3F))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | s >> 12))
            scratch.append(UInt8(0x80 | (s >> 6) & 0x3F))
            scratch.append(UInt8(0x80 | s & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | s >> 18))
            scratch.append(UInt8(0x80 | (s >> 12) & 0x3F))
            scratch.append(UInt8(0x80 | (s >> 6) & 0x3F))
            scratch.append(UInt8(0x80 | s & 0x3F))
        }
    }

    // MARK: Numbers

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = i
        var j = i
        let negative = p[j] == UInt8(ascii: "-")
        if negative { j += 1 }
        guard j < n else { throw fail("expected a digit after '-'", j) }
        var magnitude: UInt64 = 0
        var overflow = false
        switch p[j] {
        case UInt8(ascii: "0"):
            j += 1
            if j < n && isDigit(p[j]) { throw fail("leading zeros are not allowed", start) }
        case UInt8(ascii: "1")...UInt8(ascii: "9"):
            while j < n && isDigit(p[j]) {
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(UInt64(p[j] - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = m2
                j += 1
            }
        case UInt8(ascii: "I"), UInt8(ascii: "N"):
            throw fail("NaN and Infinity are not valid JSON", start)
        default:
            throw fail("expected a digit after '-'", j)
        }
        var integral = true
        if j < n && p[j] == UInt8(ascii: ".") {
            integral = false
            j += 1
            guard j < n && isDigit(p[j]) else { throw fail("expected a digit after the decimal point", j) }
            while j < n && isDigit(p[j]) { j += 1 }
        }
        if j < n && (p[j] == UInt8(ascii: "e") || p[j] == UInt8(ascii: "E")) {
            integral = false
            j += 1
            if j < n && (p[j] == UInt8(ascii: "+") || p[j] == UInt8(ascii: "-")) { j += 1 }
            guard j < n && isDigit(p[j]) else { throw fail("expected a digit in the exponent", j) }
            while j < n && isDigit(p[j]) { j += 1 }
        }
        i = j
        if integral && !overflow {
            if !negative && magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
            if negative && magnitude <= Int64.min.magnitude { return .int(Int64(bitPattern: 0 &- magnitude)) }
        }
        // Short enough texts become small (inline) strings: no allocation in the common case.
        let text = String(decoding: UnsafeBufferPointer(start: p + start, count: j - start), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { throw fail("number out of range", start) }
        return .double(d)
    }

    @inline(__always)
    func isDigit(_ c: UInt8) -> Bool { c &- UInt8(ascii: "0") < 10 }

    func describe(_ c: UInt8) -> String {
        if c >= 0x21 && c < 0x7F { return "character '\(Character(Unicode.Scalar(c)))'" }
        return "byte \(hexByte(c))"
    }
}

private func hexByte(_ b: UInt8) -> String {
    let digits = String(b, radix: 16, uppercase: true)
    return b < 16 ? "0x0" + digits : "0x" + digits
}
