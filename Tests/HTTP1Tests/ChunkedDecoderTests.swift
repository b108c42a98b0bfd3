// ChunkedDecoderTests.swift — table-driven tests for `ChunkedDecoder`. Every case is decoded
// whole, one byte at a time, and split in two at every byte position; all must agree on the
// payload, the number of bytes consumed and the final result.

import XCTest
import HTTP1

private struct Outcome: Equatable, CustomStringConvertible {
    var payload: [UInt8]
    var consumed: Int
    var result: ChunkedDecoder.Result
    var decodedBytes: Int

    var description: String {
        "payload=\(String(decoding: payload, as: UTF8.self).debugDescription) consumed=\(consumed) result=\(result) decoded=\(decodedBytes)"
    }
}

/// Feeds `input` in the given pieces, the way a connection would: after each call the
/// unconsumed bytes are kept and the next piece appended. Stops at the first non-needMore result.
private func run(_ input: [UInt8], pieces: [Range<Int>], maxBody: Int) -> Outcome {
    var decoder = ChunkedDecoder(maxBodyBytes: maxBody)
    var out: [UInt8] = []
    var pending: [UInt8] = []
    var consumed = 0
    var result = ChunkedDecoder.Result.needMore
    for piece in pieces {
        pending.append(contentsOf: input[piece])
        let (n, r) = pending.withUnsafeBytes { decoder.decode($0, into: &out) }
        consumed += n
        pending.removeFirst(n)
        result = r
        if r != .needMore { break }
    }
    return Outcome(payload: out, consumed: consumed, result: result, decodedBytes: decoder.decodedBytes)
}

/// Decodes whole, byte by byte and split at every position; asserts they agree; returns the whole outcome.
private func decodeAllWays(_ input: [UInt8], maxBody: Int, _ name: String,
                           file: StaticString = #filePath, line: UInt = #line) -> Outcome {
    let n = input.count
    let whole = run(input, pieces: [0..<n], maxBody: maxBody)
    let bytewise = run(input, pieces: (0..<n).map { $0..<($0 + 1) }, maxBody: maxBody)
    XCTAssertEqual(bytewise, whole, "\(name): byte at a time", file: file, line: line)
    // Every split position for ordinary inputs; a sample (plus both ends) for the multi-KiB ones.
    let positions = n <= 2048 ? Array(0...n) : Array(stride(from: 0, through: n, by: 61)) + Array((n - 64)...n)
    for k in positions {
        let split = run(input, pieces: [0..<k, k..<n], maxBody: maxBody)
        XCTAssertEqual(split, whole, "\(name): split at \(k)", file: file, line: line)
    }
    return whole
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private enum Expect {
    case done(payload: String, consumed: Int? = nil)
    case needMore(payload: String)
    case invalid(status: Int, code: String, message: String)
}

private struct Case {
    let name: String
    let input: [UInt8]
    var maxBody = 1 << 20
    let expect: Expect

    init(_ name: String, _ input: String, maxBody: Int = 1 << 20, _ expect: Expect) {
        self.name = name
        self.input = bytes(input)
        self.maxBody = maxBody
        self.expect = expect
    }
}

private func bad(_ message: String) -> Expect { .invalid(status: 400, code: "BAD_REQUEST", message: message) }

private func check(_ c: Case, file: StaticString = #filePath, line: UInt = #line) {
    let o = decodeAllWays(c.input, maxBody: c.maxBody, c.name, file: file, line: line)
    switch c.expect {
    case let .done(payload, consumed):
        XCTAssertEqual(o.result, .done, "\(c.name): result", file: file, line: line)
        XCTAssertEqual(o.payload, bytes(payload), "\(c.name): payload", file: file, line: line)
        XCTAssertEqual(o.consumed, consumed ?? c.input.count, "\(c.name): consumed", file: file, line: line)
        XCTAssertEqual(o.decodedBytes, payload.utf8.count, "\(c.name): decodedBytes", file: file, line: line)
    case let .needMore(payload):
        XCTAssertEqual(o.result, .needMore, "\(c.name): result", file: file, line: line)
        XCTAssertEqual(o.payload, bytes(payload), "\(c.name): payload", file: file, line: line)
        XCTAssertEqual(o.consumed, c.input.count, "\(c.name): needMore consumes everything", file: file, line: line)
    case let .invalid(status, code, message):
        XCTAssertEqual(o.result, .invalid(HTTPParseError(status: status, code: code, message: message)),
                       "\(c.name): result", file: file, line: line)
    }
}

final class ChunkedDecoderTests: XCTestCase {

    func testValidBodies() {
        let body = "3\r\nabc\r\n5\r\n12345\r\n0\r\n\r\n"
        let cases: [Case] = [
            Case("multiple chunks", body, .done(payload: "abc12345")),
            Case("empty body", "0\r\n\r\n", .done(payload: "")),
            Case("uppercase and lowercase hex", "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
                 .done(payload: "0123456789abcdefghijk")),
            Case("leading zeros", "0003\r\nabc\r\n000\r\n\r\n", .done(payload: "abc")),
            Case("extensions ignored", "3;name=val;flag\r\nabc\r\n2 ; q=\"x y\"\r\nde\r\n0;last\r\n\r\n",
                 .done(payload: "abcde")),
            Case("trailers skipped", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", .done(payload: "abc")),
            Case("bare LF line endings", "3\nabc\n0\nT: 1\n\n", .done(payload: "abc")),
            Case("payload containing CRLF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", .done(payload: "\r\n\r\n")),
            Case("pipelined request not consumed", body + "GET / HTTP/1.1\r\n\r\n",
                 .done(payload: "abc12345", consumed: body.utf8.count)),
            Case("trailer then pipelined request", "0\r\nA: b\r\n\r\nGET",
                 .done(payload: "", consumed: 11)),
            Case("exactly maxBodyBytes", "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", maxBody: 5, .done(payload: "abcde")),
            Case("zero maxBodyBytes, empty body", "0\r\n\r\n", maxBody: 0, .done(payload: "")),
        ]
        cases.forEach { check($0) }
    }

    func testIncompleteBodies() {
        let cases: [Case] = [
            Case("nothing", "", .needMore(payload: "")),
            Case("mid size", "1", .needMore(payload: "")),
            Case("mid data", "5\r\nab", .needMore(payload: "ab")),
            Case("after data", "3\r\nabc\r\n", .needMore(payload: "abc")),
            Case("after last chunk", "3\r\nabc\r\n0\r\n", .needMore(payload: "abc")),
            Case("mid trailer", "0\r\nX: y\r\n", .needMore(payload: "")),
            Case("final CR", "0\r\n\r", .needMore(payload: "")),
        ]
        cases.forEach { check($0) }
    }

    func testInvalidBodies() {
        let longExt = "3;" + String(repeating: "e", count: 4093) + "\r\nabc\r\n0\r\n\r\n"
        let maxExt = "3;" + String(repeating: "e", count: 4092) + "\r\nabc\r\n0\r\n\r\n" // line = 4096 bytes
        let bigTrailer = "0\r\n" + String(repeating: "X-Pad: " + String(repeating: "p", count: 100) + "\r\n", count: 170) + "\r\n"
        let cases: [Case] = [
            Case("non-hex size", "x\r\nabc\r\n0\r\n\r\n", bad("Invalid chunk size.")),
            Case("empty size", "\r\nabc\r\n", bad("Invalid chunk size.")),
            Case("hex then junk", "3g\r\nabc\r\n", bad("Invalid chunk size.")),
            Case("negative size", "-1\r\n", bad("Invalid chunk size.")),
            Case("0x prefix", "0x3\r\nabc\r\n", bad("Invalid chunk size.")),
            Case("leading space", " 3\r\nabc\r\n", bad("Invalid chunk size.")),
            Case("extension without size", ";x\r\n", bad("Invalid chunk size.")),
            Case("17 hex digits", "00000000000000003\r\nabc\r\n", bad("Invalid chunk size.")),
            Case("overflow", "ffffffffffffffff\r\n", bad("Invalid chunk size.")),
            Case("Int.max is too large, not invalid", "7fffffffffffffff\r\n", maxBody: 100,
                 .invalid(status: 413, code: "BODY_TOO_LARGE", message: "Request body is too large.")),
            Case("CR without LF after size", "3\rabc\r\n", bad("Invalid character in chunk size line.")),
            Case("control char in extension", "3;a\u{0}b\r\nabc\r\n", bad("Invalid character in chunk size line.")),
            Case("size line too long", longExt, bad("Chunk size line is too long.")),
            Case("size line at the limit", maxExt, .done(payload: "abc")),
            Case("missing CRLF after data", "3\r\nabcd\r\n0\r\n\r\n", bad("Missing CRLF after chunk data.")),
            Case("CR then junk after data", "3\r\nabc\rX", bad("Missing CRLF after chunk data.")),
            Case("data longer than size", "2\r\nabc\r\n", bad("Missing CRLF after chunk data.")),
            Case("too large in one chunk", "6\r\nabcdef\r\n0\r\n\r\n", maxBody: 5,
                 .invalid(status: 413, code: "BODY_TOO_LARGE", message: "Request body is too large.")),
            Case("too large across chunks", "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", maxBody: 5,
                 .invalid(status: 413, code: "BODY_TOO_LARGE", message: "Request body is too large.")),
            Case("trailer section too large", bigTrailer,
                 .invalid(status: 431, code: "HEADERS_TOO_LARGE", message: "Chunked trailer section is too large.")),
            Case("NUL in trailer", "0\r\nX: a\u{0}\r\n\r\n", bad("Invalid character in chunked trailer section.")),
            Case("CR without LF in trailer", "0\r\nX: a\rb\r\n\r\n", bad("Invalid character in chunked trailer section.")),
        ]
        cases.forEach { check($0) }
    }

    func testTooLargeRejectedBeforeDataArrives() {
        var d = ChunkedDecoder(maxBodyBytes: 10)
        var out: [UInt8] = []
        let (n, r) = bytes("100\r\n").withUnsafeBytes { d.decode($0, into: &out) }
        XCTAssertEqual(r, .invalid(HTTPParseError(status: 413, code: "BODY_TOO_LARGE", message: "Request body is too large.")))
        XCTAssertEqual(n, 4)
        XCTAssertEqual(out, [])
    }

    func testStickyFinalStates() {
        var d = ChunkedDecoder(maxBodyBytes: 100)
        var out: [UInt8] = []
        let input = bytes("2\r\nhi\r\n0\r\n\r\nNEXT")
        let first = input.withUnsafeBytes { d.decode($0, into: &out) }
        XCTAssertEqual(first.consumed, 12)
        XCTAssertEqual(first.result, .done)
        XCTAssertEqual(out, bytes("hi"))
        XCTAssertEqual(d.decodedBytes, 2)
        XCTAssertTrue(d.isDone)
        let again = bytes("NEXT").withUnsafeBytes { d.decode($0, into: &out) }
        XCTAssertEqual(again.consumed, 0)
        XCTAssertEqual(again.result, .done)
        let empty = [UInt8]().withUnsafeBytes { d.decode($0, into: &out) }
        XCTAssertEqual(empty.consumed, 0)
        XCTAssertEqual(empty.result, .done)
        XCTAssertEqual(out, bytes("hi"))

        var bad = ChunkedDecoder(maxBodyBytes: 100)
        let r1 = bytes("zz").withUnsafeBytes { bad.decode($0, into: &out) }
        XCTAssertEqual(r1.result, .invalid(HTTPParseError(status: 400, code: "BAD_REQUEST", message: "Invalid chunk size.")))
        XCTAssertEqual(r1.consumed, 0)
        let r2 = bytes("3\r\nabc").withUnsafeBytes { bad.decode($0, into: &out) }
        XCTAssertEqual(r2.consumed, 0)
        XCTAssertEqual(r2.result, r1.result)
        XCTAssertFalse(bad.isDone)
    }

    func testAppendsToExistingOutput() {
        var d = ChunkedDecoder(maxBodyBytes: 100)
        var out = bytes(">")
        let r = bytes("1\r\na\r\n0\r\n\r\n").withUnsafeBytes { d.decode($0, into: &out) }
        XCTAssertEqual(r.result, .done)
        XCTAssertEqual(out, bytes(">a"))
    }

    func testLargeChunkAcrossManyReads() {
        let payload = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var input = bytes("11170\r\n")   // 0x11170 = 70000
        input += payload
        input += bytes("\r\n0\r\n\r\n")
        var d = ChunkedDecoder(maxBodyBytes: 70_000)
        var out: [UInt8] = []
        var offset = 0
        var result = ChunkedDecoder.Result.needMore
        while offset < input.count && result == .needMore {
            let end = min(offset + 4093, input.count)
            let (n, r) = input[offset..<end].withUnsafeBytes { d.decode($0, into: &out) }
            XCTAssertEqual(n, end - offset)
            offset += n
            result = r
        }
        XCTAssertEqual(result, .done)
        XCTAssertEqual(offset, input.count)
        XCTAssertEqual(out, payload)
        XCTAssertEqual(d.decodedBytes, 70_000)
    }
}
