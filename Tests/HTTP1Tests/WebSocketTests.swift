// WebSocketTests.swift — the RFC 6455 codec: accept key (RFC's own example), SHA-1 and base64 against
// known vectors, the frame parser on a table of valid and invalid frames fed whole and on every prefix
// (every shorter prefix must be `.incomplete` unless the error is visible in it, and the first decisive
// prefix must give the whole-buffer result), the message assembler's fragmentation rules, and the writer
// round-tripping through the parser.

import XCTest
import HTTP1

private let key: (UInt8, UInt8, UInt8, UInt8) = (0x37, 0xFA, 0x21, 0x3D)

private func frame(_ op: WSOpcode, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) -> [UInt8] {
    var out: [UInt8] = []
    encodeWebSocketFrame(op, payload: payload, fin: fin, mask: masked ? key : nil, into: &out)
    return out
}

private func parse(_ b: [UInt8], max: Int = 1 << 20, mask: Bool = true) -> WSFrameParseResult {
    b.withUnsafeBytes { parseWebSocketFrame($0, maxPayload: max, requireMask: mask) }
}

final class WebSocketTests: XCTestCase {
    func testAcceptKeyFromTheRFC() {
        XCTAssertEqual(WebSocketHandshake.acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    func testSHA1Vectors() {
        func hex(_ b: [UInt8]) -> String { b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
        XCTAssertEqual(hex(sha1([])), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(hex(sha1(Array("abc".utf8))), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(hex(sha1(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))),
                       "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(hex(sha1([UInt8](repeating: 0x61, count: 1_000_000))), "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    func testBase64() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            XCTAssertEqual(base64(Array(plain.utf8)), enc)
            XCTAssertEqual(base64Decode(enc), Array(plain.utf8))
        }
        for bad in ["Zg=", "Z===", "Zm9v\n", "Zm=v", "Zm9v====", "!!!!"] { XCTAssertNil(base64Decode(bad), bad) }
    }

    func testHandshakeValidation() {
        func head(_ extra: [(String, String)], method: String = "GET", minor: Int = 1) -> HTTPRequestHead {
            var h: [(name: String, value: String)] = [("Host", "x")]
            for (k, v) in extra { h.append((k, v)) }
            return HTTPRequestHead(method: method, target: "/ws", path: "/ws", query: nil, versionMinor: minor,
                                   headers: HTTPHeaders(h), keepAlive: true, framing: .none, expectsContinue: false)
        }
        let good: [(String, String)] = [("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"),
                                        ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
        XCTAssertEqual(try WebSocketHandshake.validate(head(good)).get(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        func status(_ h: HTTPRequestHead) -> Int? {
            if case .failure(let e) = WebSocketHandshake.validate(h) { return e.status }
            return nil
        }
        XCTAssertEqual(status(head(good, method: "POST")), 400)
        XCTAssertEqual(status(head(good, minor: 0)), 400)
        XCTAssertEqual(status(head(good.filter { $0.0 != "Upgrade" })), 426)
        XCTAssertEqual(status(head(good.filter { $0.0 != "Connection" })), 400)
        XCTAssertEqual(status(head(good.filter { $0.0 != "Sec-WebSocket-Version" } + [("Sec-WebSocket-Version", "8")])), 426)
        XCTAssertEqual(status(head(good.filter { $0.0 != "Sec-WebSocket-Key" })), 400)
        XCTAssertEqual(status(head(good.filter { $0.0 != "Sec-WebSocket-Key" } + [("Sec-WebSocket-Key", "c2hvcnQ=")])), 400)
        XCTAssertEqual(String(decoding: WebSocketHandshake.response(accept: "abc"), as: UTF8.self),
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc\r\n\r\n")
    }

    /// Cases: input, the whole-buffer result.
    private var cases: [(String, [UInt8], WSFrameParseResult)] {
        let big = [UInt8](repeating: 7, count: 300)
        let huge = [UInt8](repeating: 9, count: 70_000)
        var c: [(String, [UInt8], WSFrameParseResult)] = [
            ("empty binary", frame(.binary, []), .complete(WSFrame(fin: true, opcode: .binary, payload: []), consumed: 6)),
            ("text", frame(.text, Array("héllo".utf8)), .complete(WSFrame(fin: true, opcode: .text, payload: Array("héllo".utf8)), consumed: 12)),
            ("16-bit length", frame(.binary, big), .complete(WSFrame(fin: true, opcode: .binary, payload: big), consumed: 8 + 300)),
            ("64-bit length", frame(.binary, huge), .complete(WSFrame(fin: true, opcode: .binary, payload: huge), consumed: 14 + 70_000)),
            ("fragment", frame(.text, [0x61], fin: false), .complete(WSFrame(fin: false, opcode: .text, payload: [0x61]), consumed: 7)),
            ("ping", frame(.ping, [1, 2]), .complete(WSFrame(fin: true, opcode: .ping, payload: [1, 2]), consumed: 8)),
            ("close", frame(.close, [0x03, 0xE8]), .complete(WSFrame(fin: true, opcode: .close, payload: [0x03, 0xE8]), consumed: 8)),
            ("unmasked", frame(.binary, [1], masked: false), .invalid(WSProtocolError(1002, "client frames must be masked"))),
            ("rsv bit", [0xC2, 0x80, 0, 0, 0, 0], .invalid(WSProtocolError(1002, "reserved bits set (no extension was negotiated)"))),
            ("opcode 3", [0x83, 0x80], .invalid(WSProtocolError(1002, "unknown opcode 3"))),
            ("opcode 0xB", [0x8B, 0x80], .invalid(WSProtocolError(1002, "unknown opcode 11"))),
            ("fragmented ping", frame(.ping, [], fin: false), .invalid(WSProtocolError(1002, "fragmented control frame"))),
            ("long ping", frame(.ping, big), .invalid(WSProtocolError(1002, "control frame payload over 125 bytes"))),
            ("non-minimal 16", [0x82, 0xFE, 0x00, 0x05], .invalid(WSProtocolError(1002, "payload length not minimally encoded"))),
            ("non-minimal 64", [0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0x01, 0x00], .invalid(WSProtocolError(1002, "payload length not minimally encoded"))),
            ("top bit", [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], .invalid(WSProtocolError(1002, "payload length has its top bit set"))),
        ]
        // Oversized: refused from the header alone, before any payload arrives.
        c.append(("too big", Array(frame(.binary, huge).prefix(14)), .invalid(WSProtocolError(1009, "frame of 70000 bytes exceeds the limit of 65536 bytes"))))
        return c
    }

    func testFramesWholeAndOneByteAtATime() {
        for (name, input, want) in cases {
            let max = name == "too big" ? 65536 : 1 << 20
            XCTAssertEqual(parse(input, max: max), want, name)
            var decided = false
            for n in 0...input.count {
                let r = parse(Array(input.prefix(n)), max: max)
                if r == .incomplete { XCTAssertFalse(decided, "\(name): incomplete after a decision at \(n)"); continue }
                XCTAssertEqual(r, want, "\(name): prefix of \(n) bytes")
                decided = true
            }
            XCTAssertTrue(decided, name)
        }
    }

    func testTrailingBytesAreNotConsumed() {
        let two = frame(.binary, [1, 2, 3]) + frame(.text, [0x41])
        guard case .complete(let f, let n) = parse(two) else { return XCTFail() }
        XCTAssertEqual(f.payload, [1, 2, 3])
        XCTAssertEqual(n, 9)
        guard case .complete(let g, _) = parse(Array(two[n...])) else { return XCTFail() }
        XCTAssertEqual(g.opcode, .text)
    }

    func testServerFramesAreUnmaskedAndRoundTrip() {
        for n in [0, 1, 125, 126, 65535, 65536, 200_000] {
            let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let f = frame(.binary, payload, masked: false)
            XCTAssertEqual(f[1] & 0x80, 0)
            XCTAssertEqual(parse(f, mask: false), .complete(WSFrame(fin: true, opcode: .binary, payload: payload), consumed: f.count), "\(n)")
            XCTAssertEqual(parse(f, mask: true), .invalid(WSProtocolError(1002, "client frames must be masked")))
        }
        var c: [UInt8] = []
        encodeWebSocketClose(code: 1000, reason: String(repeating: "é", count: 100), into: &c)
        guard case .complete(let f, _) = parse(c, mask: false) else { return XCTFail() }
        XCTAssertEqual(f.payload.count, 124)   // 2 code bytes + 61 whole 2-byte scalars: never a cut scalar
    }

    func testAssemblerFragmentationAndControlFrames() {
        var a = WSMessageAssembler(maxMessageBytes: 10)
        XCTAssertEqual(try a.push(WSFrame(fin: false, opcode: .binary, payload: [1, 2])).get(), nil)
        XCTAssertEqual(try a.push(WSFrame(fin: true, opcode: .ping, payload: [9])).get(), .ping([9]))   // between fragments
        XCTAssertEqual(try a.push(WSFrame(fin: false, opcode: .continuation, payload: [3])).get(), nil)
        XCTAssertEqual(a.bufferedBytes, 3)
        XCTAssertEqual(try a.push(WSFrame(fin: true, opcode: .continuation, payload: [4])).get(), .binary([1, 2, 3, 4]))
        XCTAssertEqual(a.bufferedBytes, 0)
        // Text split inside a UTF-8 sequence is fine as long as the whole is valid.
        let e = Array("é".utf8)
        XCTAssertEqual(try a.push(WSFrame(fin: false, opcode: .text, payload: [e[0]])).get(), nil)
        XCTAssertEqual(try a.push(WSFrame(fin: true, opcode: .continuation, payload: [e[1]])).get(), .text(e))
        func code(_ r: Result<WSEvent?, WSProtocolError>) -> UInt16? { if case .failure(let x) = r { return x.code }; return nil }
        XCTAssertEqual(code(a.push(WSFrame(fin: true, opcode: .continuation, payload: []))), 1002)
        XCTAssertEqual(code(a.push(WSFrame(fin: true, opcode: .text, payload: [0xFF]))), 1007)
        XCTAssertEqual(code(a.push(WSFrame(fin: true, opcode: .binary, payload: [UInt8](repeating: 0, count: 11)))), 1009)
        var b = WSMessageAssembler(maxMessageBytes: 10)
        _ = b.push(WSFrame(fin: false, opcode: .binary, payload: [1]))
        XCTAssertEqual(code(b.push(WSFrame(fin: true, opcode: .text, payload: [1]))), 1002)
        var d = WSMessageAssembler(maxMessageBytes: 10)
        _ = d.push(WSFrame(fin: false, opcode: .binary, payload: [UInt8](repeating: 0, count: 6)))
        XCTAssertEqual(code(d.push(WSFrame(fin: false, opcode: .continuation, payload: [UInt8](repeating: 0, count: 6)))), 1009)
        // Close payloads.
        XCTAssertEqual(try a.push(WSFrame(fin: true, opcode: .close, payload: [])).get(), .close(code: nil, reason: []))
        XCTAssertEqual(try a.push(WSFrame(fin: true, opcode: .close, payload: [0x03, 0xE9, 0x62])).get(), .close(code: 1001, reason: [0x62]))
        XCTAssertEqual(code(a.push(WSFrame(fin: true, opcode: .close, payload: [0x03]))), 1002)
        XCTAssertEqual(code(a.push(WSFrame(fin: true, opcode: .close, payload: [0x03, 0xED]))), 1002)   // 1005 is never sent
        XCTAssertEqual(code(a.push(WSFrame(fin: true, opcode: .close, payload: [0x03, 0xE8, 0xC3]))), 1007)
    }
}
