// WebSocket.swift — the RFC 6455 codec, pure like the request parser: the opening handshake (checking the
// request head, the Sec-WebSocket-Accept key from a hand-written SHA-1 + base64), a stateless frame parser
// (`parseWebSocketFrame(buffer) -> complete(frame, consumed) | incomplete | invalid(close code, reason)`),
// a small message assembler (fragmentation, control frames, size and UTF-8 rules; the only state is the
// message being assembled) and the frame writer. No I/O, no Foundation: the server's WebSocket
// connection kind (Sources/Server/WebSocketPeer.swift) drives it.

// MARK: - opcodes, frames, errors

public enum WSOpcode: UInt8, Sendable {
    case continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// One frame, payload already unmasked.
public struct WSFrame: Equatable, Sendable {
    public var fin: Bool
    public var opcode: WSOpcode
    public var payload: [UInt8]
    public init(fin: Bool, opcode: WSOpcode, payload: [UInt8]) {
        self.fin = fin; self.opcode = opcode; self.payload = payload
    }
}

/// Close status codes (RFC 6455 §7.4.1) tendd sends.
public enum WSClose {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    public static let unsupportedData: UInt16 = 1003
    public static let invalidPayload: UInt16 = 1007
    public static let policyViolation: UInt16 = 1008
    public static let messageTooBig: UInt16 = 1009
    public static let internalError: UInt16 = 1011

    /// Codes a peer may put in a close frame (§7.4: 1004–1006 and 1015 are never sent; 1012–1014 are
    /// registered since; 3000–4999 belong to applications).
    public static func isValidReceived(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}

/// A violation that ends the connection with a close frame carrying `code`.
public struct WSProtocolError: Error, Equatable, Sendable {
    public let code: UInt16
    public let reason: String
    public init(_ code: UInt16, _ reason: String) { self.code = code; self.reason = reason }
}

public enum WSFrameParseResult: Equatable, Sendable {
    case complete(WSFrame, consumed: Int)
    case incomplete
    case invalid(WSProtocolError)
}

// MARK: - frame parser

/// Parses one frame at the start of `buf`. Stateless: call again with the same bytes extended after
/// `.incomplete`. `maxPayload` is checked as soon as the length field is complete, so an oversized frame
/// is refused before its payload is buffered. A server requires masked frames (`requireMask`).
public func parseWebSocketFrame(_ buf: UnsafeRawBufferPointer, maxPayload: Int, requireMask: Bool = true) -> WSFrameParseResult {
    guard buf.count >= 2 else { return .incomplete }
    let b0 = buf[0], b1 = buf[1]
    let fin = b0 & 0x80 != 0
    if b0 & 0x70 != 0 { return .invalid(WSProtocolError(WSClose.protocolError, "reserved bits set (no extension was negotiated)")) }
    guard let opcode = WSOpcode(rawValue: b0 & 0x0F) else {
        return .invalid(WSProtocolError(WSClose.protocolError, "unknown opcode \(b0 & 0x0F)"))
    }
    let masked = b1 & 0x80 != 0
    if requireMask && !masked { return .invalid(WSProtocolError(WSClose.protocolError, "client frames must be masked")) }
    if !requireMask && masked { return .invalid(WSProtocolError(WSClose.protocolError, "server frames must not be masked")) }
    var length = UInt64(b1 & 0x7F)
    var at = 2
    if length == 126 {
        guard buf.count >= 4 else { return .incomplete }
        length = UInt64(buf[2]) << 8 | UInt64(buf[3])
        at = 4
        if length < 126 { return .invalid(WSProtocolError(WSClose.protocolError, "payload length not minimally encoded")) }
    } else if length == 127 {
        guard buf.count >= 10 else { return .incomplete }
        length = 0
        for i in 2..<10 { length = length << 8 | UInt64(buf[i]) }
        at = 10
        if length >> 63 != 0 { return .invalid(WSProtocolError(WSClose.protocolError, "payload length has its top bit set")) }
        if length <= 0xFFFF { return .invalid(WSProtocolError(WSClose.protocolError, "payload length not minimally encoded")) }
    }
    if opcode.isControl {
        if !fin { return .invalid(WSProtocolError(WSClose.protocolError, "fragmented control frame")) }
        if length > 125 { return .invalid(WSProtocolError(WSClose.protocolError, "control frame payload over 125 bytes")) }
    }
    if length > UInt64(maxPayload) {
        return .invalid(WSProtocolError(WSClose.messageTooBig, "frame of \(length) bytes exceeds the limit of \(maxPayload) bytes"))
    }
    var key: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
    if masked {
        guard buf.count >= at + 4 else { return .incomplete }
        key = (buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
        at += 4
    }
    let n = Int(length)
    guard buf.count - at >= n else { return .incomplete }
    var payload = Array(UnsafeRawBufferPointer(rebasing: buf[at..<(at + n)]))
    if masked { applyWebSocketMask(&payload, key: key) }
    return .complete(WSFrame(fin: fin, opcode: opcode, payload: payload), consumed: at + n)
}

/// XORs `bytes` with the 4-byte masking key (masking and unmasking are the same operation), starting at
/// key position `phase`.
public func applyWebSocketMask(_ bytes: inout [UInt8], key: (UInt8, UInt8, UInt8, UInt8), phase: Int = 0) {
    let k = [key.0, key.1, key.2, key.3]
    bytes.withUnsafeMutableBufferPointer { p in
        for i in 0..<p.count { p[i] ^= k[(i + phase) & 3] }
    }
}

// MARK: - message assembler

/// What a complete frame means once fragmentation is resolved.
public enum WSEvent: Equatable, Sendable {
    case text([UInt8])
    case binary([UInt8])
    case ping([UInt8])
    case pong([UInt8])
    /// The peer's close frame: its code (nil when it sent none) and reason.
    case close(code: UInt16?, reason: [UInt8])
}

/// Joins fragmented messages and checks the rules that span frames: continuation only inside a message,
/// no new message inside one, the total under `maxMessageBytes`, text valid UTF-8, close payloads valid.
/// Control frames may arrive between fragments and pass straight through.
public struct WSMessageAssembler: Sendable {
    public let maxMessageBytes: Int
    private var kind: WSOpcode? = nil
    private var parts: [UInt8] = []

    public init(maxMessageBytes: Int) { self.maxMessageBytes = maxMessageBytes }

    /// Bytes of the message being assembled (bounded by `maxMessageBytes`).
    public var bufferedBytes: Int { parts.count }

    /// Returns the event a frame completes (nil for a fragment that is not the last), or the violation.
    public mutating func push(_ f: WSFrame) -> Result<WSEvent?, WSProtocolError> {
        switch f.opcode {
        case .ping: return .success(.ping(f.payload))
        case .pong: return .success(.pong(f.payload))
        case .close:
            if f.payload.isEmpty { return .success(.close(code: nil, reason: [])) }
            if f.payload.count == 1 { return .failure(WSProtocolError(WSClose.protocolError, "close payload of 1 byte")) }
            let code = UInt16(f.payload[0]) << 8 | UInt16(f.payload[1])
            guard WSClose.isValidReceived(code) else { return .failure(WSProtocolError(WSClose.protocolError, "invalid close code \(code)")) }
            let reason = Array(f.payload[2...])
            guard isValidUTF8(reason) else { return .failure(WSProtocolError(WSClose.invalidPayload, "close reason is not UTF-8")) }
            return .success(.close(code: code, reason: reason))
        case .text, .binary:
            if kind != nil { return .failure(WSProtocolError(WSClose.protocolError, "new message before the previous one ended")) }
            if f.fin { return finish(f.opcode, f.payload) }
            guard f.payload.count <= maxMessageBytes else { return tooBig(f.payload.count) }
            kind = f.opcode
            parts = f.payload
            return .success(nil)
        case .continuation:
            guard let k = kind else { return .failure(WSProtocolError(WSClose.protocolError, "continuation frame outside a message")) }
            guard parts.count + f.payload.count <= maxMessageBytes else {
                let n = parts.count + f.payload.count
                kind = nil; parts = []
                return tooBig(n)
            }
            parts.append(contentsOf: f.payload)
            if !f.fin { return .success(nil) }
            let whole = parts
            kind = nil
            parts = []
            return finish(k, whole)
        }
    }

    private func tooBig(_ n: Int) -> Result<WSEvent?, WSProtocolError> {
        .failure(WSProtocolError(WSClose.messageTooBig, "message of \(n) bytes exceeds the limit of \(maxMessageBytes) bytes"))
    }

    private func finish(_ k: WSOpcode, _ bytes: [UInt8]) -> Result<WSEvent?, WSProtocolError> {
        guard bytes.count <= maxMessageBytes else { return tooBig(bytes.count) }
        if k == .text {
            guard isValidUTF8(bytes) else { return .failure(WSProtocolError(WSClose.invalidPayload, "text message is not UTF-8")) }
            return .success(.text(bytes))
        }
        return .success(.binary(bytes))
    }
}

func isValidUTF8(_ bytes: [UInt8]) -> Bool {
    var it = bytes.makeIterator()
    var dec = UTF8()
    while true {
        switch dec.decode(&it) {
        case .scalarValue: continue
        case .emptyInput: return true
        case .error: return false
        }
    }
}

// MARK: - frame writer

/// Appends a frame header for `payloadLength` bytes. A client's frames carry a masking key (`mask`),
/// a server's do not.
public func encodeWebSocketFrameHeader(_ opcode: WSOpcode, payloadLength n: Int, fin: Bool = true,
                                       mask: (UInt8, UInt8, UInt8, UInt8)? = nil, into out: inout [UInt8]) {
    out.append((fin ? 0x80 : 0) | opcode.rawValue)
    let m: UInt8 = mask == nil ? 0 : 0x80
    if n < 126 {
        out.append(m | UInt8(n))
    } else if n <= 0xFFFF {
        out.append(m | 126); out.append(UInt8(n >> 8)); out.append(UInt8(n & 0xFF))
    } else {
        out.append(m | 127)
        for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(n) >> UInt64(s)) & 0xFF)) }
    }
    if let k = mask { out.append(k.0); out.append(k.1); out.append(k.2); out.append(k.3) }
}

/// Appends a whole frame (masked with `mask` when given).
public func encodeWebSocketFrame(_ opcode: WSOpcode, payload: UnsafeRawBufferPointer, fin: Bool = true,
                                 mask: (UInt8, UInt8, UInt8, UInt8)? = nil, into out: inout [UInt8]) {
    encodeWebSocketFrameHeader(opcode, payloadLength: payload.count, fin: fin, mask: mask, into: &out)
    let start = out.count
    out.append(contentsOf: payload)
    if let k = mask {
        let key = [k.0, k.1, k.2, k.3]
        for i in 0..<payload.count { out[start + i] ^= key[i & 3] }
    }
}

public func encodeWebSocketFrame(_ opcode: WSOpcode, payload: [UInt8], fin: Bool = true,
                                 mask: (UInt8, UInt8, UInt8, UInt8)? = nil, into out: inout [UInt8]) {
    payload.withUnsafeBytes { encodeWebSocketFrame(opcode, payload: $0, fin: fin, mask: mask, into: &out) }
}

/// A close frame: the code, then the reason cut to fit a control frame (125 bytes) at a scalar boundary.
public func encodeWebSocketClose(code: UInt16, reason: String, into out: inout [UInt8]) {
    var p: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
    for u in reason.unicodeScalars {
        if p.count + UTF8.width(u) > 125 { break }
        UTF8.encode(u) { p.append($0) }
    }
    encodeWebSocketFrame(.close, payload: p, into: &out)
}

// MARK: - opening handshake

public enum WebSocketHandshake {
    static let guid = Array("258EAFA5-E914-47DA-95CA-C5AB0DC85B11".utf8)

    /// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
    public static func acceptKey(_ key: String) -> String {
        base64(sha1(Array(key.utf8) + guid))
    }

    /// Checks an upgrade request (RFC 6455 §4.2.1) and returns the accept key. The error's status is
    /// 426 (with `Sec-WebSocket-Version: 13` to be sent) for a missing upgrade or another version, else 400.
    public static func validate(_ head: HTTPRequestHead) -> Result<String, HTTPParseError> {
        func bad(_ m: String) -> Result<String, HTTPParseError> { .failure(HTTPParseError(status: 400, code: "BAD_HANDSHAKE", message: m)) }
        func upgradeRequired(_ m: String) -> Result<String, HTTPParseError> { .failure(HTTPParseError(status: 426, code: "UPGRADE_REQUIRED", message: m)) }
        guard head.method == "GET" else { return bad("a WebSocket handshake must be a GET") }
        guard head.versionMinor >= 1 else { return bad("a WebSocket handshake needs HTTP/1.1") }
        guard head.headers.values("Upgrade").contains(where: { hasToken($0, "websocket") }) else {
            return upgradeRequired("this endpoint is a WebSocket: send Upgrade: websocket")
        }
        guard head.headers.values("Connection").contains(where: { hasToken($0, "upgrade") }) else {
            return bad("a WebSocket handshake needs Connection: Upgrade")
        }
        guard head.headers["Sec-WebSocket-Version"] == "13" else {
            return upgradeRequired("unsupported Sec-WebSocket-Version (13 is supported)")
        }
        guard let key = head.headers["Sec-WebSocket-Key"], let raw = base64Decode(key), raw.count == 16 else {
            return bad("Sec-WebSocket-Key must be the base64 of 16 bytes")
        }
        guard head.framing == .none || head.framing == .contentLength(0) else { return bad("a WebSocket handshake has no body") }
        return .success(acceptKey(key))
    }

    /// The 101 response head.
    public static func response(accept: String) -> [UInt8] {
        Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \(accept)\r\n\r\n".utf8)
    }

    static func hasToken(_ value: String, _ token: String) -> Bool {
        value.split(separator: ",").contains { part in
            var s = Substring(part)
            while s.first == " " || s.first == "\t" { s = s.dropFirst() }
            while s.last == " " || s.last == "\t" { s = s.dropLast() }
            return asciiCaseInsensitiveEquals(s, token)
        }
    }
}

// MARK: - SHA-1 (FIPS 180-4) and base64, for the accept key only

public func sha1(_ message: [UInt8]) -> [UInt8] {
    var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
    var m = message
    let bitLength = UInt64(message.count) &* 8
    m.append(0x80)
    while m.count % 64 != 56 { m.append(0) }
    for s in stride(from: 56, through: 0, by: -8) { m.append(UInt8((bitLength >> UInt64(s)) & 0xFF)) }
    var w = [UInt32](repeating: 0, count: 80)
    for block in stride(from: 0, to: m.count, by: 64) {
        for i in 0..<16 {
            let b = block + i * 4
            w[i] = UInt32(m[b]) << 24 | UInt32(m[b + 1]) << 16 | UInt32(m[b + 2]) << 8 | UInt32(m[b + 3])
        }
        for i in 16..<80 { w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1) }
        var (a, b, c, d, e) = h
        for i in 0..<80 {
            let f: UInt32, k: UInt32
            switch i {
            case 0..<20: f = (b & c) | (~b & d); k = 0x5A827999
            case 20..<40: f = b ^ c ^ d; k = 0x6ED9EBA1
            case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC
            default: f = b ^ c ^ d; k = 0xCA62C1D6
            }
            let t = rotl(a, 5) &+ f &+ e &+ k &+ w[i]
            e = d; d = c; c = rotl(b, 30); b = a; a = t
        }
        h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
    }
    var out: [UInt8] = []
    for v in [h.0, h.1, h.2, h.3, h.4] { for s in stride(from: 24, through: 0, by: -8) { out.append(UInt8((v >> UInt32(s)) & 0xFF)) } }
    return out
}

@inline(__always) private func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }

private let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

public func base64(_ bytes: [UInt8]) -> String {
    var out: [UInt8] = []
    var i = 0
    while i + 3 <= bytes.count {
        let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
        for s in [18, 12, 6, 0] { out.append(base64Alphabet[Int((v >> UInt32(s)) & 63)]) }
        i += 3
    }
    let rest = bytes.count - i
    if rest > 0 {
        let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
        out.append(base64Alphabet[Int((v >> 18) & 63)])
        out.append(base64Alphabet[Int((v >> 12) & 63)])
        out.append(rest == 2 ? base64Alphabet[Int((v >> 6) & 63)] : UInt8(ascii: "="))
        out.append(UInt8(ascii: "="))
    }
    return String(decoding: out, as: UTF8.self)
}

/// Strict base64 (padding required, no whitespace); nil when malformed.
public func base64Decode(_ s: String) -> [UInt8]? {
    let b = Array(s.utf8)
    guard b.count % 4 == 0 else { return nil }
    var out: [UInt8] = []
    var i = 0
    while i < b.count {
        var v: UInt32 = 0
        var pad = 0
        for j in 0..<4 {
            let c = b[i + j]
            let d: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): d = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): d = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): d = 62
            case UInt8(ascii: "/"): d = 63
            case UInt8(ascii: "="):
                guard i + 4 == b.count, j >= 2 else { return nil }
                pad += 1; d = 0
            default: return nil
            }
            if pad > 0 && c != UInt8(ascii: "=") { return nil }
            v = v << 6 | d
        }
        out.append(UInt8(v >> 16))
        if pad < 2 { out.append(UInt8((v >> 8) & 0xFF)) }
        if pad < 1 { out.append(UInt8(v & 0xFF)) }
        i += 4
    }
    return out
}
