// Fuzz target: the chunked body decoder (HTTP1.ChunkedDecoder).
// Input: [limit byte][split seed byte][body bytes]. Properties:
//  - decoding whole and decoding in pieces (sizes from the seed) give the same bytes, the same result
//    and the same number of consumed bytes (nothing after the terminating blank line is consumed);
//  - the decoded size never exceeds the limit, and `.done` implies `isDone`.
import HTTP1

private func run(_ body: [UInt8], limit: Int, pieces seed: UInt8) -> ([UInt8], ChunkedDecoder.Result, Int, Int) {
    var dec = ChunkedDecoder(maxBodyBytes: limit)
    var out: [UInt8] = []
    var consumed = 0
    var result = ChunkedDecoder.Result.needMore
    var rng = UInt32(seed) &* 2654435761 &+ 1
    var at = 0
    while at < body.count || (at == 0 && body.isEmpty) {
        var n = body.count - at
        if seed != 0 {
            rng = rng &* 1103515245 &+ 12345
            n = min(n, Int((rng >> 16) % 7) + 1)
        }
        let (c, r) = body[at..<(at + n)].withUnsafeBytes { dec.decode($0, into: &out) }
        precondition(c <= n, "consumed more than given")
        consumed += c
        result = r
        if r != .needMore { break }
        precondition(c == n, "needMore without consuming everything")
        at += n
        if body.isEmpty { break }
    }
    if result == .done { precondition(dec.isDone) }
    precondition(dec.decodedBytes == out.count, "decodedBytes \(dec.decodedBytes) != output \(out.count)")
    precondition(out.count <= limit, "decoded past the limit")
    return (out, result, consumed, dec.decodedBytes)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChunked(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let limit = Int(data[0]) * 37
    let seed = data[1] | 1
    let body = Array(UnsafeBufferPointer(start: data + 2, count: size - 2))
    let whole = run(body, limit: limit, pieces: 0)
    let split = run(body, limit: limit, pieces: seed)
    precondition(whole.0 == split.0 && whole.1 == split.1 && whole.2 == split.2,
                 "split changed the outcome: whole=\(whole.1) consumed \(whole.2), split=\(split.1) consumed \(split.2)")
    return 0
}
