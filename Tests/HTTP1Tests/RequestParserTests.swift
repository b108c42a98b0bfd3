// RequestParserTests.swift — table-driven tests for `parseRequestHead`. Every case is parsed
// whole and then re-parsed on every prefix (the caller's one-byte-at-a-time pattern); the first
// non-incomplete prefix result, and every result after it, must equal the whole-buffer result.

import XCTest
import HTTP1

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// What a case expects.
private enum Expect {
    case incomplete
    case error(status: Int, code: String, message: String? = nil)
    case head(Head)
}

private struct Head {
    var method = "GET"
    var target = "/"
    var path = "/"
    var query: String? = nil
    var minor = 1
    var keepAlive = true
    var framing = BodyFraming.none
    var expectsContinue = false
    /// nil: not checked.
    var headers: [(String, String)]? = nil
    /// nil: the whole input.
    var consumed: Int? = nil
}

private struct Case {
    let name: String
    let input: [UInt8]
    var limits = HTTPLimits()
    let expect: Expect

    init(_ name: String, _ input: String, limits: HTTPLimits = HTTPLimits(), _ expect: Expect) {
        self.name = name
        self.input = bytes(input)
        self.limits = limits
        self.expect = expect
    }

    init(_ name: String, raw: [UInt8], limits: HTTPLimits = HTTPLimits(), _ expect: Expect) {
        self.name = name
        self.input = raw
        self.limits = limits
        self.expect = expect
    }
}

private func describe(_ r: HeadParseResult) -> String {
    switch r {
    case .incomplete: return "incomplete"
    case .invalid(let e): return "invalid(\(e.status) \(e.code): \(e.message))"
    case .complete(let h, let consumed):
        return "complete(\(h.method) \(h.target) 1.\(h.versionMinor), consumed: \(consumed))"
    }
}

/// Parses whole and prefix by prefix; asserts agreement and returns the whole-buffer result.
private func parseBothWays(_ input: [UInt8], _ limits: HTTPLimits, _ name: String,
                           file: StaticString = #filePath, line: UInt = #line) -> HeadParseResult {
    let whole = parseRequestHead(input, limits: limits)
    var decided: HeadParseResult? = nil
    for k in 0...input.count {
        let r = parseRequestHead(input[0..<k], limits: limits)
        if let d = decided {
            XCTAssertEqual(r, d, "\(name): prefix \(k) changed a decided result: \(describe(r)) vs \(describe(d))",
                           file: file, line: line)
        } else if r != .incomplete {
            decided = r
        }
    }
    XCTAssertEqual(decided ?? .incomplete, whole,
                   "\(name): byte-at-a-time \(describe(decided ?? .incomplete)) != whole \(describe(whole))",
                   file: file, line: line)
    // The raw-pointer entry point agrees with the array one.
    let viaPointer = input.withUnsafeBytes { parseRequestHead($0, limits: limits) }
    XCTAssertEqual(viaPointer, whole, "\(name): pointer vs array", file: file, line: line)
    return whole
}

private func check(_ c: Case, file: StaticString = #filePath, line: UInt = #line) {
    let r = parseBothWays(c.input, c.limits, c.name, file: file, line: line)
    switch (c.expect, r) {
    case (.incomplete, .incomplete):
        break
    case let (.error(status, code, message), .invalid(e)):
        XCTAssertEqual(e.status, status, "\(c.name): status", file: file, line: line)
        XCTAssertEqual(e.code, code, "\(c.name): code", file: file, line: line)
        if let m = message { XCTAssertEqual(e.message, m, "\(c.name): message", file: file, line: line) }
        XCTAssertFalse(e.message.isEmpty, "\(c.name): message must be set", file: file, line: line)
    case let (.head(x), .complete(h, consumed)):
        XCTAssertEqual(h.method, x.method, "\(c.name): method", file: file, line: line)
        XCTAssertEqual(h.target, x.target, "\(c.name): target", file: file, line: line)
        XCTAssertEqual(h.path, x.path, "\(c.name): path", file: file, line: line)
        XCTAssertEqual(h.query, x.query, "\(c.name): query", file: file, line: line)
        XCTAssertEqual(h.versionMinor, x.minor, "\(c.name): versionMinor", file: file, line: line)
        XCTAssertEqual(h.keepAlive, x.keepAlive, "\(c.name): keepAlive", file: file, line: line)
        XCTAssertEqual(h.framing, x.framing, "\(c.name): framing", file: file, line: line)
        XCTAssertEqual(h.expectsContinue, x.expectsContinue, "\(c.name): expectsContinue", file: file, line: line)
        XCTAssertEqual(consumed, x.consumed ?? c.input.count, "\(c.name): consumed", file: file, line: line)
        if let expected = x.headers {
            let got = h.headers.fields.map { "\($0.name)=\($0.value)" }
            XCTAssertEqual(got, expected.map { "\($0.0)=\($0.1)" }, "\(c.name): headers", file: file, line: line)
        }
    default:
        XCTFail("\(c.name): expected \(c.expect), got \(describe(r))", file: file, line: line)
    }
}

private let E400 = "BAD_REQUEST"

private func bad(_ message: String? = nil) -> Expect { .error(status: 400, code: E400, message: message) }

final class RequestParserTests: XCTestCase {

    func testBasicRequests() {
        let cases: [Case] = [
            Case("simple GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                 .head(Head(headers: [("Host", "x")]))),
            Case("no headers", "GET /v1/status HTTP/1.1\r\n\r\n",
                 .head(Head(target: "/v1/status", path: "/v1/status", headers: []))),
            Case("method case kept", "delete /x HTTP/1.1\r\n\r\n",
                 .head(Head(method: "delete", target: "/x", path: "/x"))),
            Case("query split", "GET /v1/procs/a%20b?x=1&y=2 HTTP/1.1\r\n\r\n",
                 .head(Head(target: "/v1/procs/a%20b?x=1&y=2", path: "/v1/procs/a%20b", query: "x=1&y=2"))),
            Case("empty query", "GET /p? HTTP/1.1\r\n\r\n",
                 .head(Head(target: "/p?", path: "/p", query: ""))),
            Case("second ? stays in query", "GET /p?a?b HTTP/1.1\r\n\r\n",
                 .head(Head(target: "/p?a?b", path: "/p", query: "a?b"))),
            Case("absolute-form target", "GET http://h:1/p?q HTTP/1.1\r\n\r\n",
                 .head(Head(target: "http://h:1/p?q", path: "http://h:1/p", query: "q"))),
            Case("asterisk-form", "OPTIONS * HTTP/1.1\r\n\r\n",
                 .head(Head(method: "OPTIONS", target: "*", path: "*"))),
            Case("header values trimmed, names kept",
                 "GET / HTTP/1.1\r\nX-A:  \t a b \t\r\nx-empty:\r\nX-Sp:   \r\nX-UTF8: h\u{E9}\r\n\r\n",
                 .head(Head(headers: [("X-A", "a b"), ("x-empty", ""), ("X-Sp", ""), ("X-UTF8", "h\u{E9}")]))),
            Case("HT inside value allowed", "GET / HTTP/1.1\r\nX: a\tb\r\n\r\n",
                 .head(Head(headers: [("X", "a\tb")]))),
            Case("HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", .head(Head(minor: 0, keepAlive: false))),
            Case("HTTP/1.2 treated as 1.1", "GET / HTTP/1.2\r\n\r\n", .head(Head(minor: 1))),
            Case("leading CRLFs", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", .head(Head(consumed: 22))),
            Case("leading bare LFs", "\n\nGET / HTTP/1.1\r\n\r\n", .head(Head(consumed: 20))),
            Case("bare LF everywhere", "GET / HTTP/1.1\nHost: x\nA: b\n\n",
                 .head(Head(headers: [("Host", "x"), ("A", "b")]))),
            Case("mixed line endings", "GET / HTTP/1.1\r\nHost: x\nA: b\r\n\n",
                 .head(Head(headers: [("Host", "x"), ("A", "b")]))),
            Case("expect 100-continue", "PUT /x HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
                 .head(Head(method: "PUT", target: "/x", path: "/x", framing: .contentLength(3), expectsContinue: true))),
            Case("expect ignored on 1.0", "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
                 .head(Head(method: "PUT", target: "/x", path: "/x", minor: 0, keepAlive: false,
                            framing: .contentLength(3), expectsContinue: false))),
            Case("other expectation ignored", "PUT /x HTTP/1.1\r\nExpect: something\r\n\r\n",
                 .head(Head(method: "PUT", target: "/x", path: "/x", expectsContinue: false))),
        ]
        cases.forEach { check($0) }
    }

    func testIncomplete() {
        let cases: [Case] = [
            Case("empty", "", .incomplete),
            Case("only CRLFs", "\r\n\r\n\r\n", .incomplete),
            Case("partial request line", "GET / HT", .incomplete),
            Case("request line only", "GET / HTTP/1.1\r\n", .incomplete),
            Case("missing final blank line", "GET / HTTP/1.1\r\nHost: x\r\n", .incomplete),
            Case("final CR without LF", "GET / HTTP/1.1\r\nHost: x\r\n\r", .incomplete),
            Case("trailing CR in method position", "GET\r", .incomplete),
        ]
        cases.forEach { check($0) }
    }

    func testKeepAlive() {
        let cases: [Case] = [
            Case("1.1 default", "GET / HTTP/1.1\r\n\r\n", .head(Head(keepAlive: true))),
            Case("1.1 close", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", .head(Head(keepAlive: false))),
            Case("1.1 CLOSE in list", "GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n",
                 .head(Head(keepAlive: false))),
            Case("1.1 close in second field", "GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
                 .head(Head(keepAlive: false))),
            Case("1.1 'closed' is not close", "GET / HTTP/1.1\r\nConnection: closed\r\n\r\n",
                 .head(Head(keepAlive: true))),
            Case("1.0 default", "GET / HTTP/1.0\r\n\r\n", .head(Head(minor: 0, keepAlive: false))),
            Case("1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                 .head(Head(minor: 0, keepAlive: true))),
            Case("1.0 Keep-Alive in list", "GET / HTTP/1.0\r\nConnection: Upgrade ,  Keep-Alive \r\n\r\n",
                 .head(Head(minor: 0, keepAlive: true))),
            Case("1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                 .head(Head(minor: 0, keepAlive: false))),
            Case("1.0 keep-alive-ish token", "GET / HTTP/1.0\r\nConnection: keep-alive2\r\n\r\n",
                 .head(Head(minor: 0, keepAlive: false))),
        ]
        cases.forEach { check($0) }
    }

    func testPipelinedConsumedCount() {
        let first = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        let post = "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
        let cases: [Case] = [
            Case("two GETs", first + "GET /b HTTP/1.1\r\n\r\n",
                 .head(Head(target: "/a", path: "/a", consumed: first.utf8.count))),
            Case("body not consumed", post + "abcGET /c HTTP/1.1\r\n\r\n",
                 .head(Head(method: "POST", target: "/b", path: "/b", framing: .contentLength(3),
                            consumed: post.utf8.count))),
            Case("garbage after head ignored", first + "\u{0}\u{1}\u{2}",
                 .head(Head(target: "/a", path: "/a", consumed: first.utf8.count))),
        ]
        cases.forEach { check($0) }

        // Feeding the remainder parses the second request.
        let all = bytes(first + "DELETE /z HTTP/1.0\r\n\r\n")
        guard case .complete(_, let n) = parseRequestHead(all, limits: HTTPLimits()) else {
            return XCTFail("first request")
        }
        guard case .complete(let h2, let n2) = parseRequestHead(all[n...], limits: HTTPLimits()) else {
            return XCTFail("second request")
        }
        XCTAssertEqual(h2.method, "DELETE")
        XCTAssertEqual(h2.path, "/z")
        XCTAssertEqual(n + n2, all.count)
    }

    func testContentLength() {
        func req(_ fields: String) -> String { "POST /x HTTP/1.1\r\n" + fields + "\r\n" }
        func len(_ n: Int) -> Expect { .head(Head(method: "POST", target: "/x", path: "/x", framing: .contentLength(n))) }
        let cases: [Case] = [
            Case("plain", req("Content-Length: 10\r\n"), len(10)),
            Case("zero", req("Content-Length: 0\r\n"), len(0)),
            Case("case-insensitive name", req("content-LENGTH: 7\r\n"), len(7)),
            Case("leading zeros", req("Content-Length: 007\r\n"), len(7)),
            Case("OWS trimmed", req("Content-Length:   12  \r\n"), len(12)),
            Case("repeated identical", req("Content-Length: 5\r\nContent-Length: 5\r\n"), len(5)),
            Case("identical list", req("Content-Length: 5, 5,5\r\n"), len(5)),
            Case("max Int", req("Content-Length: 9223372036854775807\r\n"), len(Int.max)),
            Case("conflicting fields", req("Content-Length: 5\r\nContent-Length: 6\r\n"),
                 bad("Conflicting Content-Length values.")),
            Case("conflicting list", req("Content-Length: 5, 6\r\n"), bad("Conflicting Content-Length values.")),
            Case("negative", req("Content-Length: -1\r\n"), bad("Invalid Content-Length.")),
            Case("plus sign", req("Content-Length: +5\r\n"), bad("Invalid Content-Length.")),
            Case("overflow", req("Content-Length: 9223372036854775808\r\n"), bad("Invalid Content-Length.")),
            Case("huge", req("Content-Length: 99999999999999999999999999\r\n"), bad("Invalid Content-Length.")),
            Case("non-digit", req("Content-Length: 12a\r\n"), bad("Invalid Content-Length.")),
            Case("hex", req("Content-Length: 0x10\r\n"), bad("Invalid Content-Length.")),
            Case("inner space", req("Content-Length: 1 2\r\n"), bad("Invalid Content-Length.")),
            Case("empty", req("Content-Length:\r\n"), bad("Invalid Content-Length.")),
            Case("empty list element", req("Content-Length: 5,\r\n"), bad("Invalid Content-Length.")),
            Case("valid then invalid", req("Content-Length: 5\r\nContent-Length: x\r\n"), bad("Invalid Content-Length.")),
        ]
        cases.forEach { check($0) }
    }

    /// The framing fields are recognised by their bytes: any letter case, and only the exact name (a name
    /// one byte longer or shorter, or differing in one byte, is an ordinary field).
    func testFramingFieldNames() {
        func req(_ fields: String) -> String { "POST /x HTTP/1.1\r\n" + fields + "\r\n" }
        let plain = Expect.head(Head(method: "POST", target: "/x", path: "/x"))
        let cases: [Case] = [
            Case("CONTENT-LENGTH", req("CONTENT-LENGTH: 3\r\n"),
                 .head(Head(method: "POST", target: "/x", path: "/x", framing: .contentLength(3)))),
            Case("Transfer-ENCODING", req("Transfer-ENCODING: chunked\r\n"),
                 .head(Head(method: "POST", target: "/x", path: "/x", framing: .chunked))),
            Case("CONNECTION", req("CONNECTION: Close\r\n"),
                 .head(Head(method: "POST", target: "/x", path: "/x", keepAlive: false))),
            Case("EXPECT", req("EXPECT: 100-Continue\r\nContent-Length: 1\r\n"),
                 .head(Head(method: "POST", target: "/x", path: "/x", framing: .contentLength(1), expectsContinue: true))),
            Case("longer name", req("Content-Lengths: x\r\n"), plain),
            Case("shorter name", req("Content-Lengt: x\r\n"), plain),
            Case("one byte off", req("Content_Length: x\r\nTransfer-Encodinh: x\r\nConnectiom: close\r\nExpecT1: x\r\n"), plain),
            Case("same length, other name", req("Xontent-Length: x\r\nXransfer-Encoding: x\r\nXonnection: close\r\nXxpect: 100-continue\r\n"), plain),
            Case("invalid after ordinary fields", req("Host: a\r\nX: y\r\ncontent-length: z\r\n"), bad("Invalid Content-Length.")),
        ]
        cases.forEach { check($0) }
    }

    func testTransferEncoding() {
        func req(_ fields: String, minor: Int = 1) -> String { "POST /x HTTP/1.\(minor)\r\n" + fields + "\r\n" }
        let chunked = Expect.head(Head(method: "POST", target: "/x", path: "/x", framing: .chunked))
        let notImpl = Expect.error(status: 501, code: "NOT_IMPLEMENTED")
        let cases: [Case] = [
            Case("chunked", req("Transfer-Encoding: chunked\r\n"), chunked),
            Case("CHUNKED", req("transfer-encoding: CHUNKED\r\n"), chunked),
            Case("chunked with OWS", req("Transfer-Encoding:  chunked \r\n"), chunked),
            Case("empty elements ignored", req("Transfer-Encoding: , chunked\r\n"), chunked),
            Case("gzip", req("Transfer-Encoding: gzip\r\n"), notImpl),
            Case("gzip, chunked", req("Transfer-Encoding: gzip, chunked\r\n"), notImpl),
            Case("split over fields", req("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), notImpl),
            Case("identity", req("Transfer-Encoding: identity\r\n"), notImpl),
            Case("chunked with params", req("Transfer-Encoding: chunked;q=1\r\n"), notImpl),
            Case("chunked not final", req("Transfer-Encoding: chunked, gzip\r\n"), bad("Invalid Transfer-Encoding.")),
            Case("chunked twice", req("Transfer-Encoding: chunked, chunked\r\n"), bad("Invalid Transfer-Encoding.")),
            Case("empty", req("Transfer-Encoding:\r\n"), bad("Invalid Transfer-Encoding.")),
            Case("TE + CL", req("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
                 bad("Both Transfer-Encoding and Content-Length are present.")),
            Case("CL + TE", req("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
                 bad("Both Transfer-Encoding and Content-Length are present.")),
            Case("CL + unsupported TE is still smuggling", req("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n"),
                 bad("Both Transfer-Encoding and Content-Length are present.")),
            Case("TE on HTTP/1.0", req("Transfer-Encoding: chunked\r\n", minor: 0),
                 bad("Transfer-Encoding is not allowed in HTTP/1.0.")),
        ]
        cases.forEach { check($0) }
    }

    func testHeaderLimits() {
        let small = HTTPLimits(maxHeaderBytes: 64, maxHeaderCount: 3)
        let tooLarge = Expect.error(status: 431, code: "HEADERS_TOO_LARGE", message: "Request header section is too large.")
        let tooMany = Expect.error(status: 431, code: "HEADERS_TOO_LARGE", message: "Too many header fields.")
        // A complete head of exactly 64 bytes: 16 (request line) + 46 + 2.
        let line = "X: " + String(repeating: "a", count: 41) + "\r\n"   // 46 bytes
        let exact = "GET / HTTP/1.1\r\n" + line + "\r\n"
        XCTAssertEqual(exact.utf8.count, 64)
        let cases: [Case] = [
            Case("exactly at the limit", exact, limits: small, .head(Head(consumed: 64))),
            Case("exactly at the limit, body follows", exact + "xyz", limits: small, .head(Head(consumed: 64))),
            Case("one byte over", "GET / HTTP/1.1\r\n" + "X: " + String(repeating: "a", count: 42) + "\r\n\r\n",
                 limits: small, tooLarge),
            Case("incomplete oversized buffer", "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 100),
                 limits: small, tooLarge),
            Case("endless leading CRLFs", String(repeating: "\r\n", count: 40), limits: small, tooLarge),
            Case("leading CRLFs count toward the limit", "\r\n" + exact, limits: small, tooLarge),
            Case("error beyond the limit reports size", "GET / HTTP/1.1\r\n" + String(repeating: "b", count: 60) + "\u{0}\r\n\r\n",
                 limits: small, tooLarge),
            Case("error within the limit reports the error", "GET / HTTP/1.1\r\nX\u{0}: y\r\n" + String(repeating: "b", count: 60),
                 limits: small, bad("Invalid header field name.")),
            Case("exactly max fields", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits: small,
                 .head(Head(headers: [("A", "1"), ("B", "2"), ("C", "3")]))),
            Case("too many fields", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits: small, tooMany),
            Case("too many fields, head unfinished", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n", limits: small, tooMany),
        ]
        cases.forEach { check($0) }

        // Default limits: 16 KiB.
        let big = "GET / HTTP/1.1\r\nX: " + String(repeating: "z", count: 16 * 1024)
        if case .invalid(let e) = parseRequestHead(bytes(big), limits: HTTPLimits()) {
            XCTAssertEqual(e.status, 431)
        } else {
            XCTFail("16 KiB unterminated head must be rejected")
        }
        let fields = (0..<65).map { "H\($0): v\r\n" }.joined()
        if case .invalid(let e) = parseRequestHead(bytes("GET / HTTP/1.1\r\n" + fields + "\r\n"), limits: HTTPLimits()) {
            XCTAssertEqual(e.message, "Too many header fields.")
        } else {
            XCTFail("65 fields must be rejected by default")
        }
        let fields64 = (0..<64).map { "H\($0): v\r\n" }.joined()
        guard case .complete(let h, _) = parseRequestHead(bytes("GET / HTTP/1.1\r\n" + fields64 + "\r\n"),
                                                          limits: HTTPLimits()) else {
            return XCTFail("64 fields are allowed by default")
        }
        XCTAssertEqual(h.headers.count, 64)
        XCTAssertEqual(h.headers["h63"], "v")
    }

    func testHeaderSyntaxErrors() {
        func req(_ fields: String) -> String { "GET / HTTP/1.1\r\n" + fields + "\r\n" }
        let cases: [Case] = [
            Case("obs-fold", req("X: a\r\n  b\r\n"), bad("Obsolete header line folding is not allowed.")),
            Case("obs-fold with HT", req("X: a\r\n\tb\r\n"), bad("Obsolete header line folding is not allowed.")),
            Case("first field line folded", req(" X: a\r\n"), bad("Obsolete header line folding is not allowed.")),
            Case("space before colon", req("Host : x\r\n"),
                 bad("Whitespace between header field name and colon is not allowed.")),
            Case("tab before colon", req("Host\t: x\r\n"),
                 bad("Whitespace between header field name and colon is not allowed.")),
            Case("no colon", req("NoColon\r\n"), bad("Invalid header field name.")),
            Case("empty name", req(": x\r\n"), bad("Invalid header field name.")),
            Case("non-token name", req("Ho@st: x\r\n"), bad("Invalid header field name.")),
            Case("space inside name", req("X Y: z\r\n"),
                 bad("Whitespace between header field name and colon is not allowed.")),
            Case("NUL in value", req("X: a\u{0}b\r\n"), bad("Invalid character in header field value.")),
            Case("bare CR in value", req("X: a\rb\r\n"), bad("Invalid character in header field value.")),
            Case("DEL in value", req("X: a\u{7F}\r\n"), bad("Invalid character in header field value.")),
            Case("ESC in value", req("X: \u{1B}[0m\r\n"), bad("Invalid character in header field value.")),
            Case("first error wins", req("X: \u{0}\r\nBad Name: y\r\n"), bad("Invalid character in header field value.")),
            Case("syntax error before framing error", req("Content-Length: x\r\nY : z\r\n"),
                 bad("Whitespace between header field name and colon is not allowed.")),
        ]
        cases.forEach { check($0) }
    }

    func testRequestLineErrors() {
        let cases: [Case] = [
            Case("bad method char", "G(T / HTTP/1.1\r\n\r\n", bad("Invalid request method.")),
            Case("bad method rejected before line ends", "G{T / HT", bad("Invalid request method.")),
            Case("binary garbage (TLS hello)", raw: [0x16, 0x03, 0x01, 0x02, 0x00, 0x01], bad("Invalid request method.")),
            Case("CR inside method", "GE\rT / HTTP/1.1\r\n\r\n", bad("Invalid request method.")),
            Case("CR inside method rejected before line ends", "GE\rT / HT", bad("Invalid request method.")),
            Case("double CR", "GET\r\r\n\r\n", bad("Invalid request method.")),
            Case("empty method", " / HTTP/1.1\r\n\r\n", bad("Malformed request line.")),
            Case("method only", "GET\r\n\r\n", bad("Malformed request line.")),
            Case("HTTP/0.9 style", "GET /\r\n\r\n", bad("Malformed request line.")),
            Case("double space", "GET  / HTTP/1.1\r\n\r\n", bad("Malformed request line.")),
            Case("tab separator", "GET\t/ HTTP/1.1\r\n\r\n", bad("Invalid request method.")),
            Case("control char in target", "GET /a\u{1}b HTTP/1.1\r\n\r\n", bad("Invalid request target.")),
            Case("tab in target", "GET /a\tb HTTP/1.1\r\n\r\n", bad("Invalid request target.")),
            Case("DEL in target", "GET /a\u{7F} HTTP/1.1\r\n\r\n", bad("Invalid request target.")),
            Case("non-ASCII target", "GET /h\u{E9} HTTP/1.1\r\n\r\n", bad("Invalid request target.")),
            Case("trailing space after version", "GET / HTTP/1.1 \r\n\r\n", bad("Malformed HTTP version.")),
            Case("CR inside the line", "GET / HTTP/1.1\rX\r\n\r\n", bad("Malformed HTTP version.")),
            Case("lowercase version", "GET / http/1.1\r\n\r\n", bad("Malformed HTTP version.")),
            Case("version without minor", "GET / HTTP/1\r\n\r\n", bad("Malformed HTTP version.")),
            Case("two-digit minor", "GET / HTTP/1.10\r\n\r\n", bad("Malformed HTTP version.")),
            Case("junk after version", "GET / HTTP/1.1x\r\n\r\n", bad("Malformed HTTP version.")),
            Case("not HTTP", "GET / FTP/1.1\r\n\r\n", bad("Malformed HTTP version.")),
            Case("empty version", "GET / \r\n\r\n", bad("Malformed HTTP version.")),
            Case("HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", .error(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED")),
            Case("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                 .error(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED")),
            Case("HTTP/3", "GET / HTTP/3\r\n\r\n", .error(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED")),
            Case("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", .error(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED")),
            Case("HTTP/11.1", "GET / HTTP/11.1\r\n\r\n", .error(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED")),
            Case("505 reported before the head ends", "GET / HTTP/2.0\r\nHost: x\r\n",
                 .error(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED")),
        ]
        cases.forEach { check($0) }
    }

    func testHeadersLookup() {
        guard case .complete(let h, _) = parseRequestHead(
            bytes("GET / HTTP/1.1\r\nAccept: a\r\nX-Tag: 1\r\nACCEPT: b\r\n\r\n"), limits: HTTPLimits()) else {
            return XCTFail("parse")
        }
        XCTAssertEqual(h.headers["accept"], "a")
        XCTAssertEqual(h.headers["X-TAG"], "1")
        XCTAssertNil(h.headers["missing"])
        XCTAssertNil(h.headers["Accep"])
        XCTAssertEqual(h.headers.values("Accept"), ["a", "b"])
        XCTAssertEqual(h.headers.values("nope"), [])
        XCTAssertTrue(h.headers.contains("x-tag"))
        XCTAssertFalse(h.headers.contains("x-ta"))
        XCTAssertEqual(h.headers.fields.map(\.name), ["Accept", "X-Tag", "ACCEPT"])
        XCTAssertEqual(h.headers, HTTPHeaders([("Accept", "a"), ("X-Tag", "1"), ("ACCEPT", "b")]))
        XCTAssertNotEqual(h.headers, HTTPHeaders([("Accept", "a"), ("X-Tag", "1"), ("Accept", "b")]))
    }
}
