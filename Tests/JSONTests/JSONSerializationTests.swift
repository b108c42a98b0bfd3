// Tests for the JSON writers: appendJSONString's exact output bytes (every control character, quote,
// backslash, multi-byte UTF-8, escapes at every position of long strings, checked against a naive
// byte-by-byte reference), appendJSONInt, doubles, whole-value serialization and equality.
import JSON
import XCTest

/// Obviously-correct reference encoder: one byte at a time.
private func referenceJSONString(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [0x22]
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
    out.append(0x22)
    return out
}

private func encoded(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    bytes.withUnsafeBytes { appendJSONString($0, to: &out) }
    return out
}

private func encoded(_ s: String) -> String {
    var out: [UInt8] = []
    appendJSONString(s, to: &out)
    return String(decoding: out, as: UTF8.self)
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
}

final class JSONSerializationTests: XCTestCase {
    func testEveryControlCharacter() {
        let short: [UInt8: String] = [0x08: #"\b"#, 0x09: #"\t"#, 0x0A: #"\n"#, 0x0C: #"\f"#, 0x0D: #"\r"#]
        for b in UInt8(0)..<0x20 {
            let expected: String
            if let s = short[b] {
                expected = s
            } else {
                let h = String(b, radix: 16)
                expected = #"\u00"# + (h.count == 1 ? "0" + h : h)
            }
            XCTAssertEqual(encoded([b]), Array("\"\(expected)\"".utf8), "byte \(b)")
        }
        XCTAssertEqual(encoded([0x01]), Array(#""\u0001""#.utf8))
        XCTAssertEqual(encoded([0x1F]), Array(#""\u001f""#.utf8))
        XCTAssertEqual(encoded([0x00]), Array(#""\u0000""#.utf8))
    }

    func testQuoteBackslashAndPassThrough() {
        XCTAssertEqual(encoded(""), #""""#)
        XCTAssertEqual(encoded("\""), #""\"""#)
        XCTAssertEqual(encoded("\\"), #""\\""#)
        XCTAssertEqual(encoded("a\"b\\c"), #""a\"b\\c""#)
        XCTAssertEqual(encoded("/"), #""/""#, "solidus is not escaped")
        XCTAssertEqual(encoded("\u{7F}"), "\"\u{7F}\"", "DEL is not escaped")
        XCTAssertEqual(encoded("\u{2028}\u{2029}"), "\"\u{2028}\u{2029}\"", "U+2028/9 are left alone")
        XCTAssertEqual(encoded("é€😀\u{10FFFF}"), "\"é€😀\u{10FFFF}\"")
        XCTAssertEqual(encoded("héllo\n wörld 😀\t€"), #""héllo\n wörld 😀\t€""#)
        var empty: [UInt8] = []
        appendJSONString(UnsafeRawBufferPointer(start: nil, count: 0), to: &empty)
        XCTAssertEqual(empty, Array(#""""#.utf8))
    }

    func testAppendsToExistingBuffer() {
        var out = Array("data:".utf8)
        appendJSONString("x\ny", to: &out)
        appendJSONInt(-5, to: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), #"data:"x\ny"-5"#)
    }

    func testEscapeAtEveryPosition() {
        // Every special byte at every position of strings of lengths 0...40 (covers all offsets within
        // and across the 8-byte words, and the tail).
        let specials: [[UInt8]] = [[0x22], [0x5C], [0x0A], [0x00], [0x1F], [0x0D], [0xC3, 0xA9], [0xF0, 0x9F, 0x98, 0x80], [0x7F]]
        for length in 0...40 {
            for pos in 0...length {
                for s in specials {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    bytes.insert(contentsOf: s, at: pos)
                    XCTAssertEqual(encoded(bytes), referenceJSONString(bytes), "length \(length) pos \(pos) \(s)")
                }
            }
        }
    }

    func testLongStringWithEscapesEverywhere() {
        // A long string where every byte needs escaping, and one with an escape every few bytes.
        var all: [UInt8] = []
        for i in 0..<4096 { all.append([0x22, 0x5C, 0x0A, 0x01][i % 4]) }
        XCTAssertEqual(encoded(all), referenceJSONString(all))
        var sparse: [UInt8] = []
        for i in 0..<100_000 { sparse.append(i % 37 == 0 ? 0x09 : i % 53 == 0 ? 0x22 : UInt8(0x41 + i % 26)) }
        XCTAssertEqual(encoded(sparse), referenceJSONString(sparse))
    }

    func testRandomizedAgainstReference() {
        var rng = SplitMix64(state: 42)
        let alphabet: [[UInt8]] = [[0x61], [0x62], [0x20], [0x22], [0x5C], [0x0A], [0x09], [0x01], [0x1F], [0x7F],
                                   [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80], [0x30]]
        for _ in 0..<3000 {
            var bytes: [UInt8] = []
            let pieces = Int(rng.next() % 60)
            for _ in 0..<pieces {
                // Mostly plain letters, so that long runs exercise the bulk copy.
                let r = rng.next()
                bytes += r % 4 == 0 ? alphabet[Int((r >> 8) % UInt64(alphabet.count))] : [UInt8(0x61 + (r >> 16) % 26)]
            }
            XCTAssertEqual(encoded(bytes), referenceJSONString(bytes))
        }
    }

    func testIntegers() {
        let values: [Int64] = [0, 1, 9, 10, 11, 99, 100, -1, -9, -10, 1_234_567_890, -987_654_321_012,
                               Int64.max, Int64.min, Int64.max - 1, Int64.min + 1, 1_000_000_000_000_000_000]
        for v in values {
            var out: [UInt8] = []
            appendJSONInt(v, to: &out)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), String(v))
        }
        var p: Int64 = 1
        for _ in 0..<18 {
            for v in [p - 1, p, p + 1, -p] {
                var out: [UInt8] = []
                appendJSONInt(v, to: &out)
                XCTAssertEqual(String(decoding: out, as: UTF8.self), String(v))
            }
            p *= 10
        }
    }

    func testDoubles() throws {
        func text(_ d: Double) -> String { String(decoding: JSONValue.double(d).serialized(), as: UTF8.self) }
        XCTAssertEqual(text(1.5), "1.5")
        XCTAssertEqual(text(1), "1.0")
        XCTAssertEqual(text(-0.0), "-0.0")
        XCTAssertEqual(text(1e20), "1e+20")
        XCTAssertEqual(text(.nan), "null")
        XCTAssertEqual(text(.infinity), "null")
        XCTAssertEqual(text(-.infinity), "null")
        let tricky: [Double] = [0.1, 0.2 + 0.1, 1.0 / 3, 2.0 / 3, 1e-7, 123456.789, .leastNonzeroMagnitude, 2.2250738585072014e-308,
                                .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 9007199254740992, 1e21, 1e22, -1.5e-300]
        for d in tricky {
            let back = try parseJSON(JSONValue.double(d).serialized())
            XCTAssertEqual(back, .double(d), "\(d) does not round-trip")
        }
    }

    func testValueSerialization() {
        let v: JSONValue = .object([
            ("a", .array([.int(1), .double(2.5), .string("x"), .bool(true), .bool(false), .null])),
            ("b", .object([])),
            ("c", .array([])),
            ("d\"", .object([("e", .int(-3))])),
        ])
        XCTAssertEqual(String(decoding: v.serialized(), as: UTF8.self),
                       #"{"a":[1,2.5,"x",true,false,null],"b":{},"c":[],"d\"":{"e":-3}}"#)
        var out = Array("x=".utf8)
        v["d\""]!.serialize(into: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), #"x={"e":-3}"#)
    }

    func testLiterals() {
        let v: JSONValue = ["pid": 12, "name": "web", "ok": true, "load": 0.5, "tags": ["a", 1]]
        XCTAssertEqual(v, .object([("pid", .int(12)), ("name", .string("web")), ("ok", .bool(true)),
                                   ("load", .double(0.5)), ("tags", .array([.string("a"), .int(1)]))]))
        XCTAssertEqual(v["pid"], 12)
        XCTAssertTrue(v["missing"] == nil)
    }

    func testEquality() {
        XCTAssertNotEqual(JSONValue.int(1), .double(1))
        XCTAssertEqual(JSONValue.object([("a", .int(1)), ("b", .int(2))]), .object([("a", .int(1)), ("b", .int(2))]))
        XCTAssertNotEqual(JSONValue.object([("a", .int(1)), ("b", .int(2))]), .object([("b", .int(2)), ("a", .int(1))]))
        XCTAssertNotEqual(JSONValue.object([("a", .int(1))]), .object([("a", .int(1)), ("a", .int(1))]))
        XCTAssertNotEqual(JSONValue.object([("a", .int(1))]), .object([("a", .int(2))]))
        XCTAssertNotEqual(JSONValue.array([.null]), .array([]))
        XCTAssertNotEqual(JSONValue.string("a"), .null)
    }

    func testStringEncodingThroughput() {
        // Printed, not asserted: 80-byte log lines (plain, and with a tab and quotes) into a reused buffer.
        #if DEBUG
        let count = 200_000
        #else
        let count = 5_000_000
        #endif
        let plain = Array(String(repeating: "0123456789abcdefghijklmnopqrstuvwxyz ", count: 3).utf8.prefix(80))
        var escaped = plain
        escaped[10] = 0x09
        escaped[40] = 0x22
        escaped[41] = 0x22
        for (name, line) in [("plain", plain), ("3 escapes", escaped)] {
            var out: [UInt8] = []
            out.reserveCapacity(256 << 10)
            let clock = ContinuousClock()
            let elapsed = line.withUnsafeBytes { raw in
                clock.measure {
                    for _ in 0..<count {
                        if out.count > 200 << 10 { out.removeAll(keepingCapacity: true) }
                        appendJSONString(raw, to: &out)
                    }
                }
            }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            print("appendJSONString, 80-byte lines (\(name)): \(Int(Double(count * 80) / seconds / 1048576)) MiB/s, \(Int(seconds / Double(count) * 1e9)) ns/line")
        }
    }
}
