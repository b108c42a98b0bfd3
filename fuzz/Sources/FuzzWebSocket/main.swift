// Fuzz target: the WebSocket frame parser and message assembler (HTTP1/WebSocket.swift).
// Input: [limit byte][split seed byte][bytes from a client]. Properties:
//  - parsing a stream of frames whole and in pieces (sizes from the seed, the caller's pattern: keep the
//    unconsumed bytes, append, parse again) gives the same frames and the same final result;
//  - a frame is never longer than the limit, `consumed` never exceeds the bytes given;
//  - the assembler never holds more than its message limit and never yields a message over it;
//  - re-encoding a parsed frame (masked again) and parsing it gives the same frame.
import HTTP1

private enum End: Equatable { case incomplete, invalid(UInt16) }

private func run(_ input: [UInt8], limit: Int, seed: UInt8) -> ([WSFrame], End) {
    var frames: [WSFrame] = []
    var buf: [UInt8] = []
    var asm = WSMessageAssembler(maxMessageBytes: limit * 2)
    var rng = UInt32(seed) &* 2654435761 &+ 1
    var at = 0
    while at < input.count {
        var n = input.count - at
        if seed != 0 { rng = rng &* 1103515245 &+ 12345; n = min(n, Int((rng >> 16) % 9) + 1) }
        buf.append(contentsOf: input[at..<(at + n)])
        at += n
        while true {
            let r = buf.withUnsafeBytes { parseWebSocketFrame($0, maxPayload: limit) }
            switch r {
            case .incomplete: break
            case .invalid(let e): return (frames, .invalid(e.code))
            case .complete(let f, let c):
                precondition(c <= buf.count && c >= 2, "consumed \(c) of \(buf.count)")
                precondition(f.payload.count <= limit, "frame over the limit")
                var again: [UInt8] = []
                encodeWebSocketFrame(f.opcode, payload: f.payload, fin: f.fin, mask: (1, 2, 3, 4), into: &again)
                let rr = again.withUnsafeBytes { parseWebSocketFrame($0, maxPayload: limit) }
                precondition(rr == .complete(f, consumed: again.count), "re-encoded frame differs")
                buf.removeSubrange(0..<c)
                frames.append(f)
                switch asm.push(f) {
                case .success(let ev):
                    if case .binary(let m)? = ev { precondition(m.count <= limit * 2) }
                    if case .text(let m)? = ev { precondition(m.count <= limit * 2) }
                case .failure(let e): return (frames, .invalid(e.code))
                }
                precondition(asm.bufferedBytes <= limit * 2, "assembler over its limit")
                continue
            }
            break
        }
    }
    return (frames, .incomplete)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocket(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let limit = Int(data[0]) * 13
    let seed = data[1] | 1
    let input = Array(UnsafeBufferPointer(start: data + 2, count: size - 2))
    let whole = run(input, limit: limit, seed: 0)
    let split = run(input, limit: limit, seed: seed)
    precondition(whole.0 == split.0 && whole.1 == split.1, "split changed the outcome: \(whole.1) vs \(split.1)")
    return 0
}
