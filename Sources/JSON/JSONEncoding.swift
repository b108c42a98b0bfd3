// Low-level JSON writers that append straight into a byte buffer: string literals (with escaping),
// integers and doubles. These are on the daemon's output hot path (every SSE line goes through the
// string escaper), so they reserve the room once and write through a pointer (`appendWriting`), and
// escape sixteen bytes at a time (SIMD), copying clean runs as they go.

/// Appends the JSON string literal for `utf8`, including the surrounding quotes.
///
/// The bytes must be valid UTF-8 (they are not checked). `"` and `\` are escaped, as are the control
/// characters below 0x20: `\n \r \t \b \f` in their short form, the others as `\u00XX`. Everything else,
/// including DEL, U+2028 and U+2029, is copied as is.
public func appendJSONString(_ utf8: UnsafeRawBufferPointer, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    // In pieces, so that the room reserved for the worst case (6 bytes out per byte in) stays small.
    let piece = 16 << 10
    var from = 0
    while from < utf8.count {
        let part = UnsafeRawBufferPointer(rebasing: utf8[from..<min(utf8.count, from &+ piece)])
        out.appendWriting(upTo: maxJSONStringBodyCount(part.count)) { $0.writeJSONStringBody(part) }
        from &+= part.count
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
    out.appendWriting(upTo: 20) { w in     // "-" and 19 digits at most
        if v < 0 { w.write("-") }
        w.writeDecimal(v.magnitude)
    }
}

/// The most bytes `UnsafeByteWriter.writeJSONStringBody` writes for `count` bytes of text (all `\u00XX`).
@inlinable
public func maxJSONStringBodyCount(_ count: Int) -> Int { count &* 6 }

// MARK: - Writing into reserved room

extension Array where Element == UInt8 {
    /// Appends what `body` writes, which must be at most `maxCount` bytes: the room is reserved once and
    /// written through a pointer, without the per-append capacity and uniqueness checks of `append`.
    @inlinable
    public mutating func appendWriting(upTo maxCount: Int, _ body: (inout UnsafeByteWriter) -> Void) {
        append(addingCapacity: maxCount) { span in
            span.withUnsafeMutableBufferPointer { buf, initialized in
                let start = buf.baseAddress! + initialized
                var w = UnsafeByteWriter(start: start, limit: start + maxCount)
                body(&w)
                precondition(w.position <= w.limit, "appendWriting: wrote more than maxCount bytes")
                initialized &+= w.position - start
            }
        }
    }
}

/// A write cursor into room reserved by `appendWriting`. The caller sized the room; the writes only
/// check it in debug builds (and `appendWriting` checks the total afterwards).
public struct UnsafeByteWriter {
    @usableFromInline var position: UnsafeMutablePointer<UInt8>
    @usableFromInline let limit: UnsafeMutablePointer<UInt8>

    @inlinable
    init(start: UnsafeMutablePointer<UInt8>, limit: UnsafeMutablePointer<UInt8>) {
        position = start
        self.limit = limit
    }

    @inlinable @inline(__always)
    public mutating func write(_ s: StaticString) {
        write(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    @inlinable @inline(__always)
    public mutating func write(_ bytes: UnsafeRawBufferPointer) {
        assert(bytes.count <= limit - position)
        guard let base = bytes.baseAddress else { return }
        UnsafeMutableRawPointer(position).copyMemory(from: base, byteCount: bytes.count)
        position += bytes.count
    }

    @inlinable @inline(__always)
    public mutating func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// The decimal digits of `v` (at most 20).
    @inlinable
    public mutating func writeDecimal(_ v: UInt64) {
        var digits = 1
        var t = v
        while t >= 10 { t /= 10; digits &+= 1 }
        assert(digits <= limit - position)
        var p = position + digits
        var m = v
        repeat {
            let (q, r) = m.quotientAndRemainder(dividingBy: 10)
            p -= 1
            p.initialize(to: 0x30 &+ UInt8(truncatingIfNeeded: r))
            m = q
        } while m != 0
        position += digits
    }

    /// The escaped body of a JSON string literal for the UTF-8 text `utf8` (without the quotes); see
    /// `appendJSONString`. Needs room for `maxJSONStringBodyCount(utf8.count)` bytes.
    @inlinable
    public mutating func writeJSONStringBody(_ utf8: UnsafeRawBufferPointer) {
        guard let base = utf8.baseAddress, utf8.count > 0 else { return }
        assert(maxJSONStringBodyCount(utf8.count) <= limit - position)
        position += writeEscaped(base.assumingMemoryBound(to: UInt8.self), utf8.count, to: position)
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

@inline(__always)
private func needsEscape(_ b: UInt8) -> Bool {
    b < 0x20 || b == 0x22 || b == 0x5C
}

private let hexDigits: StaticString = "0123456789abcdef"

/// Writes the escape sequence for `b` (one of the bytes `needsEscape` accepts) at `p`; returns its length.
@inline(__always)
private func writeEscape(_ b: UInt8, at p: UnsafeMutablePointer<UInt8>) -> Int {
    p[0] = UInt8(ascii: "\\")
    switch b {
    case 0x22, 0x5C: p[1] = b
    case 0x0A: p[1] = UInt8(ascii: "n")
    case 0x0D: p[1] = UInt8(ascii: "r")
    case 0x09: p[1] = UInt8(ascii: "t")
    case 0x08: p[1] = UInt8(ascii: "b")
    case 0x0C: p[1] = UInt8(ascii: "f")
    default:
        let hex = hexDigits.utf8Start
        p[1] = UInt8(ascii: "u")
        p[2] = UInt8(ascii: "0")
        p[3] = UInt8(ascii: "0")
        p[4] = hex[Int(b >> 4)]
        p[5] = hex[Int(b & 0xF)]
        return 6
    }
    return 2
}

/// Writes the escaped form of `src[0..<n]` at `dst` and returns its length (at most 6n; `dst` must have
/// room for 6n bytes). Sixteen bytes at a time: each block is stored to `dst` as it is, then kept up
/// to its first byte that needs escaping. Such a store may write past what is kept, but never past 6n:
/// a store at input offset i (≤ n - 16) lands at output offset ≤ 6i, and 6i + 16 < 6n.
@usableFromInline
func writeEscaped(_ src: UnsafePointer<UInt8>, _ n: Int, to dst: UnsafeMutablePointer<UInt8>) -> Int {
    // Vector-with-vector compares: Swift lowers these to pminub/pcmpeqb (a vector-with-scalar compare
    // is lowered lane by lane).
    let space = SIMD16<UInt8>(repeating: 0x20), quote = SIMD16<UInt8>(repeating: 0x22)
    let backslash = SIMD16<UInt8>(repeating: 0x5C)
    var i = 0, o = 0
    while i < n {
        if n &- i >= 16 {
            let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<UInt8>.self)
            UnsafeMutableRawPointer(dst + o).storeBytes(of: v, as: SIMD16<UInt8>.self)
            let special = (v .< space) .| (v .== quote) .| (v .== backslash)
            if !any(special) {
                i &+= 16
                o &+= 16
                continue
            }
            // The mask's lanes are 0x00 or 0xFF bytes; lane 0 is the low byte of the first word (little-endian).
            let words = unsafeBitCast(special, to: SIMD2<UInt64>.self)
            let k = (words[0] != 0 ? words[0].trailingZeroBitCount : 64 &+ words[1].trailingZeroBitCount) >> 3
            i &+= k
            o &+= k
        } else if !needsEscape(src[i]) {
            dst[o] = src[i]
            i &+= 1
            o &+= 1
            continue
        }
        o &+= writeEscape(src[i], at: dst + o)
        i &+= 1
    }
    return o
}
