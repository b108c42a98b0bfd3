// Tests for parseJSON: accepted documents and the values they produce (numbers, strings, escapes,
// nesting), and every class of rejected input with its message and byte offset.
import JSON
import XCTest

final class JSONParserTests: XCTestCase {
    private func parse(_ text: String, maxDepth: Int = 64, file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do {
            return try parseJSON(Array(text.utf8), maxDepth: maxDepth)
        } catch {
            XCTFail("unexpected error \(error) for \(text)", file: file, line: line)
            return nil
        }
    }

    /// Asserts that parsing fails at `offset` with a message containing `message`.
    private func assertFails(
        _ bytes: [UInt8], _ message: String, at offset: Int, maxDepth: Int = 64,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            let v = try parseJSON(bytes, maxDepth: maxDepth)
            XCTFail("parsed \(String(decoding: bytes, as: UTF8.self)) as \(v), expected an error", file: file, line: line)
        } catch let e as JSONParseError {
            XCTAssertTrue(e.message.contains(message), "message '\(e.message)' lacks '\(message)'", file: file, line: line)
            XCTAssertEqual(e.offset, offset, "offset for \(e.message)", file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    private func assertFails(
        _ text: String, _ message: String, at offset: Int, maxDepth: Int = 64,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        assertFails(Array(text.utf8), message, at: offset, maxDepth: maxDepth, file: file, line: line)
    }

    // MARK: Accepted input

    func testScalars() {
        XCTAssertEqual(parse("null"), .null)
        XCTAssertEqual(parse("true"), .bool(true))
        XCTAssertEqual(parse("false"), .bool(false))
        XCTAssertEqual(parse("0"), .int(0))
        XCTAssertEqual(parse("-0"), .int(0))
        XCTAssertEqual(parse("42"), .int(42))
        XCTAssertEqual(parse("-17"), .int(-17))
        XCTAssertEqual(parse("1.5"), .double(1.5))
        XCTAssertEqual(parse("1.0"), .double(1.0))
        XCTAssertEqual(parse("1e2"), .double(100))
        XCTAssertEqual(parse("1E+2"), .double(100))
        XCTAssertEqual(parse("25e-1"), .double(2.5))
        XCTAssertEqual(parse("-0.125"), .double(-0.125))
        XCTAssertEqual(parse("\"hi\""), .string("hi"))
        XCTAssertEqual(parse("\"\""), .string(""))
        if case .double(let d)? = parse("-0.0") {
            XCTAssertEqual(d, 0)
            XCTAssertEqual(d.sign, .minus)
        } else {
            XCTFail("-0.0 is not a double")
        }
    }

    func testBigIntegers() {
        XCTAssertEqual(parse("9223372036854775807"), .int(Int64.max))
        XCTAssertEqual(parse("-9223372036854775808"), .int(Int64.min))
        XCTAssertEqual(parse("9223372036854775808"), .double(9223372036854775808.0))
        XCTAssertEqual(parse("-9223372036854775809"), .double(-9223372036854775809.0))
        XCTAssertEqual(parse("18446744073709551616"), .double(18446744073709551616.0))   // overflows UInt64 too
        XCTAssertEqual(parse("123456789012345678901234567890"), .double(1.2345678901234568e29))
        XCTAssertEqual(parse("1.7976931348623157e308"), .double(.greatestFiniteMagnitude))
        XCTAssertEqual(parse("5e-324"), .double(.leastNonzeroMagnitude))
        XCTAssertEqual(parse("1e-400"), .double(0))   // underflow rounds to zero, which is representable
    }

    func testContainersAndWhitespace() {
        let v = parse(" \t\r\n{ \"a\" : [ 1 , 2.5 , \"x\" , true , false , null ] , \"b\" : { } , \"c\" : [ ] } \n")
        XCTAssertEqual(v, .object([
            ("a", .array([.int(1), .double(2.5), .string("x"), .bool(true), .bool(false), .null])),
            ("b", .object([])),
            ("c", .array([])),
        ]))
        XCTAssertEqual(parse("[[[]]]"), .array([.array([.array([])])]))
    }

    func testObjectLookup() {
        let v = parse(#"{"a":1,"b":{"c":"d"},"a":2}"#)!
        XCTAssertEqual(v["a"], .int(2), "last duplicate wins")
        XCTAssertEqual(v["b"]?["c"], .string("d"))
        XCTAssertNil(v["z"])
        XCTAssertNil(JSONValue.array([.int(1)])["a"])
        XCTAssertNil(JSONValue.string("a")["a"])
        if case .object(let pairs) = v {
            XCTAssertEqual(pairs.map(\.0), ["a", "b", "a"], "document order and duplicates kept")
        } else {
            XCTFail()
        }
    }

    func testStringEscapes() {
        XCTAssertEqual(parse(#""\"\\\/\b\f\n\r\t""#), .string("\"\\/\u{8}\u{C}\n\r\t"))
        XCTAssertEqual(parse(#""a\u0041\u00e9\u00E9\u20AC\u0000z""#), .string("aAéé€\u{0}z"))
        XCTAssertEqual(parse(#""\uD83D\uDE00""#), .string("😀"))
        XCTAssertEqual(parse(#""x\ud83d\ude00y\uDBFF\uDFFF""#), .string("x😀y\u{10FFFF}"))
        XCTAssertEqual(parse(#""\u2028\u2029""#), .string("\u{2028}\u{2029}"))
        // Escapes mixed with raw multi-byte text, before and after.
        XCTAssertEqual(parse("\"héllo\\n wörld 😀\\t€\""), .string("héllo\n wörld 😀\t€"))
    }

    func testRawUTF8() {
        XCTAssertEqual(parse("\"é€😀\u{10FFFF}\u{7F}\""), .string("é€😀\u{10FFFF}\u{7F}"))
        // Long enough to exercise the eight-bytes-at-a-time scan on both sides of a multi-byte character.
        let long = String(repeating: "abcdefgh", count: 9) + "é" + String(repeating: "ijklmnop", count: 5)
        XCTAssertEqual(parse("\"\(long)\""), .string(long))
    }

    func testDepthLimit() {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNotNil(parse(ok))
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        assertFails(tooDeep, "nesting deeper than the maximum of 64", at: 64)
        let objects = String(repeating: "{\"a\":", count: 65) + "1" + String(repeating: "}", count: 65)
        assertFails(objects, "nesting deeper", at: 64 * 5)
        XCTAssertNotNil(parse("[[1]]", maxDepth: 2))
        assertFails("[[1]]", "nesting deeper than the maximum of 1", at: 1, maxDepth: 1)
        assertFails("[]", "nesting deeper", at: 0, maxDepth: 0)
        XCTAssertEqual(parse("7", maxDepth: 0), .int(7))
        // A deep document is rejected without recursing through all of it.
        let huge = String(repeating: "[", count: 100_000)
        assertFails(huge, "nesting deeper", at: 64)
    }

    func testRoundTrip() {
        let docs = [
            #"{"name":"web","argv":["/bin/sh","-c","echo \"hi\"\n"],"env":{},"n":-12,"x":0.1,"big":1e+300}"#,
            #"[null,true,false,0,-1,9223372036854775807,-9223372036854775808,1.5,"é😀\u0001"]"#,
            #"{"a":{"b":{"c":[[],[{}]]}}}"#,
        ]
        for doc in docs {
            guard let v = parse(doc) else { continue }
            XCTAssertEqual(String(decoding: v.serialized(), as: UTF8.self), doc)
            XCTAssertEqual(try parseJSON(v.serialized()), v)
        }
    }

    func testUnsafeBufferOverload() throws {
        let bytes = Array(#"{"k":[1,"v"]}"#.utf8)
        let v = try bytes.withUnsafeBytes { try parseJSON($0) }
        XCTAssertEqual(v, .object([("k", .array([.int(1), .string("v")]))]))
        XCTAssertThrowsError(try parseJSON(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    // MARK: Rejected input

    func testStructureErrors() {
        assertFails("", "unexpected end of input", at: 0)
        assertFails("   ", "unexpected end of input", at: 3)
        assertFails("[1,2", "unexpected end of input in array", at: 4)
        assertFails("[1,", "unexpected end of input", at: 3)
        assertFails(#"{"a":1"#, "unexpected end of input in object", at: 6)
        assertFails(#"{"a""#, "unexpected end of input in object", at: 4)
        assertFails("[1 2]", "expected ',' or ']' in array, found character '2'", at: 3)
        assertFails(#"{"a":1 "b":2}"#, "expected ',' or '}' in object", at: 7)
        assertFails("[1,]", "trailing comma in array", at: 3)
        assertFails(#"{"a":1,}"#, "trailing comma in object", at: 7)
        assertFails("{a:1}", "expected a string key in object, found character 'a'", at: 1)
        assertFails("{1:1}", "expected a string key", at: 1)
        assertFails(#"{"a" 1}"#, "expected ':' after object key", at: 5)
        assertFails("]", "unexpected character ']'", at: 0)
        assertFails("[,1]", "unexpected character ','", at: 1)
    }

    func testTrailingGarbage() {
        assertFails("1 2", "after the JSON value", at: 2)
        assertFails("{} x", "unexpected character 'x' after the JSON value", at: 3)
        assertFails("truex", "after the JSON value", at: 4)
        assertFails("[]]", "after the JSON value", at: 2)
        assertFails([0x6E, 0x75, 0x6C, 0x6C, 0x00], "unexpected byte 0x00 after the JSON value", at: 4)
    }

    func testLiteralErrors() {
        assertFails("tru", "invalid literal (expected 'true')", at: 0)
        assertFails("nul", "invalid literal (expected 'null')", at: 0)
        assertFails("[fals]", "invalid literal (expected 'false')", at: 1)
        assertFails("True", "unexpected character 'T'", at: 0)
        assertFails("undefined", "unexpected character 'u'", at: 0)
        assertFails([0xEF, 0xBB, 0xBF, 0x31], "unexpected byte 0xEF", at: 0)   // a BOM is not JSON
        assertFails([0xFF], "unexpected byte 0xFF", at: 0)
    }

    func testNaNAndInfinity() {
        assertFails("NaN", "NaN and Infinity are not valid JSON", at: 0)
        assertFails("Infinity", "NaN and Infinity", at: 0)
        assertFails("-Infinity", "NaN and Infinity", at: 0)
        assertFails("[1,NaN]", "NaN and Infinity", at: 3)
        assertFails("1e400", "number out of range", at: 0)
        assertFails("[-1e999]", "number out of range", at: 1)
    }

    func testNumberErrors() {
        assertFails("01", "leading zeros are not allowed", at: 0)
        assertFails("-01", "leading zeros are not allowed", at: 0)
        assertFails("[00]", "leading zeros are not allowed", at: 1)
        assertFails("1.", "expected a digit after the decimal point", at: 2)
        assertFails("1.e5", "expected a digit after the decimal point", at: 2)
        assertFails("1e", "expected a digit in the exponent", at: 2)
        assertFails("1e+", "expected a digit in the exponent", at: 3)
        assertFails("1E-x", "expected a digit in the exponent", at: 3)
        assertFails("-", "expected a digit after '-'", at: 1)
        assertFails("-a", "expected a digit after '-'", at: 1)
        assertFails(".5", "unexpected character '.'", at: 0)
        assertFails("+1", "unexpected character '+'", at: 0)
        assertFails("0x10", "after the JSON value", at: 1)
    }

    func testStringErrors() {
        assertFails(#""abc"#, "unterminated string", at: 4)
        assertFails(#"["abc\"]"#, "unterminated string", at: 8)
        assertFails(#""\"#, "unterminated string", at: 2)
        assertFails([0x22, 0x61, 0x01, 0x62, 0x22], "unescaped control character 0x01 in string", at: 2)
        assertFails("\"a\tb\"", "unescaped control character 0x09 in string", at: 2)
        assertFails("\"abcdefghijklmnop\nq\"", "unescaped control character 0x0A", at: 17)
        assertFails([0x22, 0x00, 0x22], "unescaped control character 0x00", at: 1)
    }

    func testInvalidUTF8InStrings() {
        let q: UInt8 = 0x22
        assertFails([q, 0x61, 0xFF, q], "invalid UTF-8 byte 0xFF in string", at: 2)
        assertFails([q, 0x80, q], "invalid UTF-8 byte 0x80", at: 1)            // lone continuation byte
        assertFails([q, 0xC0, 0x80, q], "invalid UTF-8 byte 0xC0", at: 1)      // overlong NUL
        assertFails([q, 0xC1, 0xBF, q], "invalid UTF-8 byte 0xC1", at: 1)      // overlong
        assertFails([q, 0xE0, 0x80, 0x80, q], "invalid UTF-8 sequence", at: 1) // overlong 3-byte
        assertFails([q, 0xED, 0xA0, 0x80, q], "invalid UTF-8 sequence", at: 1) // encoded surrogate
        assertFails([q, 0xF4, 0x90, 0x80, 0x80, q], "invalid UTF-8 sequence", at: 1) // > U+10FFFF
        assertFails([q, 0xF5, 0x80, 0x80, 0x80, q], "invalid UTF-8 byte 0xF5", at: 1)
        assertFails([q, 0x61, 0xE2, 0x82, q], "invalid UTF-8 sequence", at: 2)  // cut short by the quote
        assertFails([q, 0x61, 0xE2, 0x82], "truncated UTF-8 sequence", at: 2)   // cut short by the end
        // Found past the eight-bytes-at-a-time scan.
        assertFails([q] + Array("abcdefghijkl".utf8) + [0xFE, q], "invalid UTF-8 byte 0xFE", at: 13)
    }

    func testEscapeErrors() {
        assertFails(#""\x""#, #"invalid escape sequence '\x'"#, at: 1)
        assertFails(#""ab\'""#, "invalid escape sequence", at: 3)
        assertFails(#""\u12""#, #"invalid \u escape (expected 4 hex digits)"#, at: 1)
        assertFails(#""\u12"#, #"invalid \u escape"#, at: 1)
        assertFails(#""\uZZZZ""#, #"invalid \u escape"#, at: 1)
        assertFails(#""\u00G0""#, #"invalid \u escape"#, at: 1)
        assertFails(#""\U0041""#, "invalid escape sequence", at: 1)
    }

    func testLoneSurrogates() {
        assertFails(#""\uD800""#, "lone surrogate escape (high surrogate not followed by a low one)", at: 1)
        assertFails(#""x\uDBFFy""#, "lone surrogate escape (high", at: 2)
        assertFails(#""\uD800\u0041""#, "lone surrogate escape (high", at: 1)
        assertFails(#""\uD800\uD800""#, "lone surrogate escape (high", at: 1)
        assertFails(#""\uD800\n""#, "lone surrogate escape (high", at: 1)
        assertFails(#""\uDC00""#, "lone surrogate escape (low surrogate without a high one)", at: 1)
        assertFails(#""ab\uDFFF\uD800""#, "lone surrogate escape (low", at: 3)
        assertFails(#""\uD800\uDC0""#, #"invalid \u escape"#, at: 7)
    }

    func testErrorDescription() {
        XCTAssertEqual(JSONParseError(message: "boom", offset: 3).description, "boom at byte 3")
    }
}
