// ResponseEncodingTests.swift — exact-byte tests for the response encoders: status line and
// header block, chunks, the last-chunk, and reason phrases.

import XCTest
import HTTP1

private func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

final class ResponseEncodingTests: XCTestCase {

    func testResponseHead() {
        var out: [UInt8] = []
        encodeResponseHead(status: 200, headers: [("Content-Type", "application/json"), ("Content-Length", "2")], into: &out)
        XCTAssertEqual(text(out), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")

        out = []
        encodeResponseHead(status: 404, headers: [], into: &out)
        XCTAssertEqual(out, Array("HTTP/1.1 404 Not Found\r\n\r\n".utf8))

        out = []
        encodeResponseHead(status: 431, headers: [("Connection", "close")], into: &out)
        XCTAssertEqual(text(out), "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")

        out = []
        encodeResponseHead(status: 299, headers: [("X", "")], into: &out)
        XCTAssertEqual(text(out), "HTTP/1.1 299 Success\r\nX: \r\n\r\n")
    }

    /// The answer head written field by field gives the same bytes as the list form, in every combination.
    func testAnswerHeadMatchesListForm() {
        let extras: [[(String, String)]] = [[], [("Allow", "GET, POST")], [("X-A", "1"), ("Bad", "a\r\nb")]]
        for status in [200, 201, 204, 405, 500] {
            for type in [nil, "application/json", "text/plain\r\nX: y"] as [String?] {
                for length in [nil, 0, 7, 1_234_567] as [Int?] {
                    for extra in extras {
                        for close in [false, true] {
                            var list: [(String, String)] = []
                            if let type { list.append(("Content-Type", type)) }
                            if let length { list.append(("Content-Length", String(length))) }
                            list += extra
                            if close { list.append(("Connection", "close")) }
                            var want = Array("prev".utf8), got = Array("prev".utf8)
                            encodeResponseHead(status: status, headers: list, into: &want)
                            encodeResponseHead(status: status, contentType: type, contentLength: length,
                                               headers: extra, close: close, into: &got)
                            XCTAssertEqual(text(got), text(want))
                        }
                    }
                }
            }
        }
        var out: [UInt8] = []
        encodeResponseHead(status: 200, contentType: "application/json", contentLength: 12, headers: [], close: true, into: &out)
        XCTAssertEqual(text(out), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n")
    }

    func testResponseHeadAppends() {
        var out = Array("prev".utf8)
        encodeResponseHead(status: 204, headers: [("A", "1"), ("A", "2")], into: &out)
        XCTAssertEqual(text(out), "prevHTTP/1.1 204 No Content\r\nA: 1\r\nA: 2\r\n\r\n")
    }

    func testResponseHeadNeutralisesLineBreaks() {
        var out: [UInt8] = []
        encodeResponseHead(status: 200, headers: [("X-Name", "a\r\nSet-Cookie: x\u{0}"), ("Y\n", "tab\tkept")], into: &out)
        XCTAssertEqual(text(out), "HTTP/1.1 200 OK\r\nX-Name: a  Set-Cookie: x \r\nY : tab\tkept\r\n\r\n")
    }

    func testNonASCIIValuesPassThrough() {
        var out: [UInt8] = []
        encodeResponseHead(status: 200, headers: [("X", "h\u{E9}")], into: &out)
        XCTAssertEqual(out, Array("HTTP/1.1 200 OK\r\nX: h".utf8) + [0xC3, 0xA9, 0x0D, 0x0A, 0x0D, 0x0A])
    }

    func testChunks() {
        var out: [UInt8] = []
        encodeChunk(Array("hello".utf8), into: &out)
        XCTAssertEqual(text(out), "5\r\nhello\r\n")

        out = []
        let p255 = [UInt8](repeating: 0x61, count: 255)
        p255.withUnsafeBytes { encodeChunk($0, into: &out) }
        XCTAssertEqual(out, Array("ff\r\n".utf8) + p255 + [0x0D, 0x0A])

        out = []
        encodeChunk([UInt8](repeating: 0, count: 4096), into: &out)
        XCTAssertEqual(Array(out.prefix(6)), Array("1000\r\n".utf8))
        XCTAssertEqual(out.count, 6 + 4096 + 2)

        out = []
        encodeChunk([UInt8](repeating: 1, count: 0x1abcd), into: &out)
        XCTAssertEqual(Array(out.prefix(7)), Array("1abcd\r\n".utf8))

        out = Array("x".utf8)
        encodeChunk([], into: &out)
        [UInt8]().withUnsafeBytes { encodeChunk($0, into: &out) }
        XCTAssertEqual(out, Array("x".utf8), "an empty payload must append nothing")

        XCTAssertEqual(lastChunk, Array("0\r\n\r\n".utf8))
    }

    func testChunksRoundTripThroughDecoder() {
        var wire: [UInt8] = []
        for piece in ["a", "", "bc", String(repeating: "z", count: 300)] {
            encodeChunk(Array(piece.utf8), into: &wire)
        }
        wire += lastChunk
        var d = ChunkedDecoder(maxBodyBytes: 1000)
        var out: [UInt8] = []
        let (n, r) = wire.withUnsafeBytes { d.decode($0, into: &out) }
        XCTAssertEqual(r, .done)
        XCTAssertEqual(n, wire.count)
        XCTAssertEqual(text(out), "abc" + String(repeating: "z", count: 300))
    }

    func testReasonPhrases() {
        let expected: [(Int, String)] = [
            (100, "Continue"), (200, "OK"), (201, "Created"), (204, "No Content"), (304, "Not Modified"),
            (400, "Bad Request"), (404, "Not Found"), (405, "Method Not Allowed"), (409, "Conflict"),
            (413, "Content Too Large"), (417, "Expectation Failed"), (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"), (501, "Not Implemented"), (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
            (199, "Informational"), (299, "Success"), (399, "Redirection"), (499, "Client Error"),
            (599, "Server Error"), (600, "Unknown"), (0, "Unknown"),
        ]
        for (status, phrase) in expected {
            XCTAssertEqual(reasonPhrase(status), phrase, "\(status)")
        }
    }
}
