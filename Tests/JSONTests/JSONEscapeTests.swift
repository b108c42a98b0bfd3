// Tests for the escaper behind appendJSONString and UnsafeByteWriter.writeJSONStringBody (sixteen bytes
// at a time, storing whole blocks): compared with a byte-by-byte reference for every byte 0x00-0x7F at
// every position of strings of length 0...40, multi-byte UTF-8, all source and destination alignments,
// random inputs; and checked never to write outside its room of 6 bytes per input byte, nor to read
// past its input.
@testable import JSON
import XCTest

/// Obviously-correct reference: the escaped body (no quotes), one byte at a time.
private func referenceBody(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    let hex = Array("0123456789abcdef".utf8)
    for b in bytes {
        switch b {
        case 0x22: out += [0x5C, 0x22]
        case 0x5C: out += [0x5C, 0x5C]
        case 0x0A: out += [0x5C, UInt8(ascii: "n")]
        case 0x0D: out += [0x5C, UInt8(ascii: "r")]
        case 0x09: out += [0x5C, UInt8(ascii: "t")]
        case 0x08: out += [0x5C, UInt8(ascii: "b")]
        case 0x0C: out += [0x5C, UInt8(ascii: "f")]
        case 0..<0x20: out += [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]]
        default: out.append(b)
        }
    }
    return out
}

/// Escapes `bytes` placed at `srcOffset` in a buffer whose other bytes are all `"` (so a read past the
/// input would show in the output), into exactly `maxJSONStringBodyCount` bytes of room at `dstOffset`
/// with sentinel bytes on both sides. Returns the output, or nil if a sentinel was overwritten.
private func escapeAt(_ bytes: [UInt8], srcOffset: Int, dstOffset: Int) -> [UInt8]? {
    let srcCount = srcOffset + bytes.count + 32
    let src = UnsafeMutablePointer<UInt8>.allocate(capacity: srcCount)
    defer { src.deallocate() }
    src.initialize(repeating: 0x22, count: srcCount)
    for (k, b) in bytes.enumerated() { src[srcOffset + k] = b }

    let room = maxJSONStringBodyCount(bytes.count)
    let guardCount = 32
    let dstCount = dstOffset + room + guardCount
    let dst = UnsafeMutablePointer<UInt8>.allocate(capacity: dstCount)
    defer { dst.deallocate() }
    dst.initialize(repeating: 0xEE, count: dstCount)

    let n = writeEscaped(src + srcOffset, bytes.count, to: dst + dstOffset)
    guard n <= room else { return nil }
    for k in 0..<dstOffset where dst[k] != 0xEE { return nil }
    for k in (dstOffset + room)..<dstCount where dst[k] != 0xEE { return nil }
    return Array(UnsafeBufferPointer(start: dst + dstOffset, count: n))
}

/// Deterministic generator for the randomized comparison.
private struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

final class JSONEscapeTests: XCTestCase {
    func testEveryASCIIByteAtEveryPosition() {
        // Lengths 0...40 cover the 16-byte blocks, the byte-at-a-time tail, and escapes in both; the
        // alignments vary with the case.
        for length in 1...40 {
            for pos in 0..<length {
                for b in UInt8(0)...0x7F {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    bytes[pos] = b
                    let got = escapeAt(bytes, srcOffset: (length + pos) % 16, dstOffset: (pos &* 3 &+ Int(b)) % 16)
                    if got != referenceBody(bytes) {
                        XCTFail("length \(length) pos \(pos) byte \(b): \(String(describing: got))")
                        return
                    }
                }
            }
        }
        XCTAssertEqual(escapeAt([], srcOffset: 3, dstOffset: 5), [])
    }

    func testEveryAlignment() {
        let inputs: [[UInt8]] = [
            Array("plain text that is long enough for a few blocks of sixteen".utf8),
            Array("q\"b\\n\nt\tc\u{1}d\u{1F}e\u{7F}f".utf8) + Array("ééé€€😀😀 end".utf8),
            Array(UInt8(0)...0x7F),
            [UInt8](repeating: 0x0A, count: 40),
            Array("x".utf8), Array("\"".utf8), Array(repeating: UInt8(ascii: "z"), count: 15),
            Array(repeating: UInt8(ascii: "z"), count: 16), Array(repeating: UInt8(ascii: "z"), count: 17),
        ]
        for bytes in inputs {
            let expected = referenceBody(bytes)
            for s in 0..<16 {
                for d in 0..<16 {
                    XCTAssertEqual(escapeAt(bytes, srcOffset: s, dstOffset: d), expected, "\(bytes) at \(s)/\(d)")
                }
            }
        }
    }

    func testRandomAgainstReference() {
        var rng = SplitMix64(state: 2024)
        let multibyte: [[UInt8]] = [[0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80], [0xE2, 0x80, 0xA8],
                                    [0xEF, 0xBF, 0xBF], [0xF4, 0x8F, 0xBF, 0xBF], [0xC2, 0x80]]
        for round in 0..<20_000 {
            var bytes: [UInt8] = []
            let target = rng.below(round % 10 == 0 ? 300 : 70)
            let escapeRate = [2, 8, 64][rng.below(3)]   // dense, sparse and rare escapes
            while bytes.count < target {
                let r = rng.below(escapeRate)
                if r == 0 {
                    bytes.append(UInt8(rng.below(0x80)))            // any ASCII byte, control characters included
                } else if r == 1 {
                    bytes += multibyte[rng.below(multibyte.count)]
                } else {
                    bytes.append(UInt8(0x20 + rng.below(0x5F)))    // printable ASCII (may be `"` or `\`)
                }
            }
            let got = escapeAt(bytes, srcOffset: rng.below(16), dstOffset: rng.below(16))
            if got != referenceBody(bytes) {
                XCTFail("round \(round): \(bytes) -> \(String(describing: got))")
                return
            }
            // The public paths agree: the literal with quotes, appended after a prefix of any length.
            var out = [UInt8](repeating: UInt8(ascii: "p"), count: rng.below(20))
            let prefix = out
            bytes.withUnsafeBytes { appendJSONString($0, to: &out) }
            XCTAssertEqual(out, prefix + [0x22] + referenceBody(bytes) + [0x22])
        }
    }

    func testLongInputInPieces() {
        // appendJSONString escapes long texts in pieces: the output is the same across piece boundaries.
        var rng = SplitMix64(state: 5)
        var bytes: [UInt8] = []
        for _ in 0..<100_000 { bytes.append(rng.below(50) == 0 ? UInt8(rng.below(0x20)) : [0xC3, 0xA9, 0x41, 0x5C][rng.below(4)]) }
        var out: [UInt8] = []
        bytes.withUnsafeBytes { appendJSONString($0, to: &out) }
        XCTAssertEqual(out, [0x22] + referenceBody(bytes) + [0x22])
    }

    func testByteWriter() {
        var out = Array("data:".utf8)
        let text = Array("a\"b\n".utf8)
        out.appendWriting(upTo: 20 + 3 + maxJSONStringBodyCount(text.count) + 2) { w in
            w.write("id:")
            w.writeDecimal(UInt64.max)
            w.write(Array("[".utf8))
            text.withUnsafeBytes { w.writeJSONStringBody($0) }
            w.write("]")
        }
        XCTAssertEqual(String(decoding: out, as: UTF8.self), #"data:id:18446744073709551615[a\"b\n]"#)
        for v: UInt64 in [0, 1, 9, 10, 99, 100, 1_234_567_890_123] {
            var o: [UInt8] = []
            o.appendWriting(upTo: 20) { $0.writeDecimal(v) }
            XCTAssertEqual(String(decoding: o, as: UTF8.self), String(v))
        }
    }
}
