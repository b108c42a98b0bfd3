// URLCodingTests.swift — tests for percentDecode and parseQuery: escapes, UTF-8 validation,
// '+' handling and skipping of malformed query pairs.

import XCTest
import HTTP1

final class URLCodingTests: XCTestCase {

    func testPercentDecode() {
        let cases: [(String, String?)] = [
            ("", ""),
            ("plain", "plain"),
            ("a%20b", "a b"),
            ("a+b", "a+b"),
            ("%2B", "+"),
            ("%2F", "/"),
            ("%2f%3A", "/:"),
            ("h%C3%A9llo", "h\u{E9}llo"),
            ("h%c3%a9llo", "h\u{E9}llo"),
            ("%F0%9F%98%80", "\u{1F600}"),
            ("caf\u{E9}", "caf\u{E9}"),
            ("100%25", "100%"),
            ("%zz", nil),
            ("%", nil),
            ("%2", nil),
            ("abc%", nil),
            ("a%g1", nil),
            ("%C3", nil),              // truncated UTF-8 sequence
            ("%FF", nil),              // never valid in UTF-8
            ("%C0%AF", nil),           // overlong encoding of '/'
            ("%ED%A0%80", nil),        // UTF-16 surrogate
            ("%00", "\u{0}"),
        ]
        for (input, expected) in cases {
            XCTAssertEqual(percentDecode(input), expected, "percentDecode(\(input.debugDescription))")
        }
        let s = "xx/a%20b/yy"
        let segment = s.split(separator: "/")[1]
        XCTAssertEqual(percentDecode(segment), "a b")
    }

    func testParseQuery() {
        func pairs(_ q: String) -> [String] { parseQuery(q).map { "\($0.name)=\($0.value)" } }
        XCTAssertEqual(pairs(""), [])
        XCTAssertEqual(pairs("a=1"), ["a=1"])
        XCTAssertEqual(pairs("a=1&b=x+y&c=%2B&d&g=h%C3%A9"), ["a=1", "b=x y", "c=+", "d=", "g=h\u{E9}"])
        XCTAssertEqual(pairs("a=b=c"), ["a=b=c"])
        XCTAssertEqual(pairs("&&a=1&&"), ["a=1"])
        XCTAssertEqual(pairs("=x&y="), ["y="])
        XCTAssertEqual(pairs("bad=%zz&ok=1&%=2&t=%"), ["ok=1"])
        XCTAssertEqual(pairs("n%20a+me=v%26w"), ["n a me=v&w"])
        XCTAssertEqual(pairs("a=1&a=2"), ["a=1", "a=2"])
        XCTAssertEqual(pairs("u=%FF"), [])

        let q = parseQuery("lines=20&follow=true")
        XCTAssertEqual(queryValue(q, "lines"), "20")
        XCTAssertEqual(queryValue(q, "follow"), "true")
        XCTAssertNil(queryValue(q, "Lines"))
    }
}
