// Low-level JSON writers that append straight into a byte buffer: string literals (with escaping),
// integers and doubles. These are on the daemon's output hot path (every SSE line goes through
// `appendJSONString`), so they avoid per-call allocation and copy unescaped runs in bulk, finding the
// next byte that needs escaping eight bytes at a time (SWAR).

/// Appends the JSON string literal for `utf8`, including the surrounding quotes.
///
/// The bytes must be valid UTF-8 (they are not checked). `"` and `\` are escaped, as are the control
/// characters below 0x20: `\n \r \t \b \f` in their short form, the others as `\u00XX`. Everything else,
/// including DEL, U+2028 and U+2029, is copied as is.
public func appendJSONString(_ utf8: UnsafeRawBufferPointer, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    if let base = utf8.baseAddress, utf8.count > 0 {
        appendEscapedBody(base.assumingMemoryBound(to: UInt8.self), utf8.count, to: &out)
    }
    out.append(UInt8(ascii: "\""))
}

/// Appends the JSON string literal for `s`, including the surrounding quotes. See the raw-buffer overload.
public func appendJSONString(_ s: String, to out: inout [UInt8]) {
    var s = s
    s.withUTF8 { appendJSONString(UnsafeRawBufferPointer($0), to: &out) }
}

/// Appends the decimal form of `v` without allocating.
public func appendJSONInt(_ v: Int64, to out: inout [UInt8]) {
    if v < 0 { out.append(UInt8(ascii: "-")) }
    var m = v.magnitude
    if m < 10 {
        out.append(0x30 &+ UInt8(truncatingIfNeeded: m))
        return
    }
    // 20 digits hold UInt64.max; the digits are produced backwards into a stack buffer.
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buf in
        let base = buf.baseAddress!
        var i = 20
        repeat {
            let (q, r) = m.quotientAndRemainder(dividingBy: 10)
            i -= 1
            (base + i).initialize(to: 0x30 &+ UInt8(truncatingIfNeeded: r))
            m = q
        } while m != 0
        out.append(contentsOf: UnsafeBufferPointer(start: base + i, count: 20 - i))
    }
}

/// Appends a round-trippable form of `v` (Swift's shortest representation, e.g. `1.5`, `1e+20`,
/// `5e-324`). JSON has no NaN or infinities: those are written as `null`.
func appendJSONDouble(_ v: Double, to out: inout [UInt8]) {
    guard v.isFinite else {
        appendASCII("null", to: &out)
        return
    }
    var text = v.description
    text.withUTF8 { out.append(contentsOf: $0) }
}

@inline(__always)
func appendASCII(_ s: StaticString, to out: inout [UInt8]) {
    s.withUTF8Buffer { out.append(contentsOf: $0) }
}

// MARK: - Escaping

private let lowBits: UInt64 = 0x0101_0101_0101_0101
private let highBits: UInt64 = 0x8080_8080_8080_8080

/// Bit 7 of each byte of the result is set for the bytes of `w` that must be escaped (< 0x20, `"` or `\`).
/// Bits above the lowest set one may be false positives (borrow propagation); the lowest one is exact,
/// which is all the caller uses.
@inline(__always)
private func escapeMask(_ w: UInt64) -> UInt64 {
    let control = (w &- lowBits &* 0x20) & ~w & highBits
    let q = w ^ (lowBits &* 0x22)
    let quote = (q &- lowBits) & ~q & highBits
    let b = w ^ (lowBits &* 0x5C)
    let backslash = (b &- lowBits) & ~b & highBits
    return control | quote | backslash
}

@inline(__always)
private func needsEscape(_ b: UInt8) -> Bool {
    b < 0x20 || b == 0x22 || b == 0x5C
}

private let hexDigits: StaticString = "0123456789abcdef"

/// Appends the escape sequence for `b`, one of the bytes `needsEscape` accepts.
@inline(__always)
private func appendEscape(_ b: UInt8, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\\"))
    switch b {
    case 0x22: out.append(UInt8(ascii: "\""))
    case 0x5C: out.append(UInt8(ascii: "\\"))
    case 0x0A: out.append(UInt8(ascii: "n"))
    case 0x0D: out.append(UInt8(ascii: "r"))
    case 0x09: out.append(UInt8(ascii: "t"))
    case 0x08: out.append(UInt8(ascii: "b"))
    case 0x0C: out.append(UInt8(ascii: "f"))
    default:
        let hex = hexDigits.utf8Start
        out.append(UInt8(ascii: "u"))
        out.append(UInt8(ascii: "0"))
        out.append(UInt8(ascii: "0"))
        out.append(hex[Int(b >> 4)])
        out.append(hex[Int(b & 0xF)])
    }
}

private func appendEscapedBody(_ p: UnsafePointer<UInt8>, _ n: Int, to out: inout [UInt8]) {
    var i = 0
    var run = 0   // start of the pending run of bytes that need no escaping
    while true {
        // Find the next byte that needs escaping, eight bytes at a time, then byte by byte for the tail.
        var found = false
        while i &+ 8 <= n {
            let w = UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self))
            let m = escapeMask(w)
            if m != 0 {
                i &+= m.trailingZeroBitCount >> 3
                found = true
                break
            }
            i &+= 8
        }
        if !found {
            while i < n && !needsEscape(p[i]) { i &+= 1 }
            found = i < n
        }
        if i > run { out.append(contentsOf: UnsafeBufferPointer(start: p + run, count: i &- run)) }
        guard found else { return }

        appendEscape(p[i], to: &out)
        i &+= 1
        run = i
    }
}
