// Fuzz target: the HTTP/1.1 request-head parser (HTTP1.parseRequestHead).
// Properties checked beyond "does not crash":
//  - feeding the bytes in growing prefixes (as a connection does) gives .incomplete until the first
//    definite answer, and that answer equals the answer for the whole input (byte-order errors);
//  - a complete head's `consumed` is within the input and the header limit; path/query split the target.
import HTTP1

let limits = HTTPLimits(maxHeaderBytes: 1024, maxHeaderCount: 16)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPHead(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let whole = parseRequestHead(bytes, limits: limits)
    if case .complete(let head, let consumed) = whole {
        precondition(consumed > 0 && consumed <= bytes.count && consumed <= limits.maxHeaderBytes, "consumed out of range")
        precondition(head.versionMinor == 0 || head.versionMinor == 1)
        let rebuilt = head.query.map { head.path + "?" + $0 } ?? head.path
        precondition(rebuilt == head.target, "path/query do not rebuild the target")
        precondition(head.headers.count <= limits.maxHeaderCount)
        if case .contentLength(let n) = head.framing { precondition(n >= 0) }
        // The same head with anything appended parses to the same result (the body is not looked at).
        let more = parseRequestHead(bytes + [0x00, 0xFF, 0x0A], limits: limits)
        precondition(more == whole, "bytes after the head changed the result")
    }
    // Growing prefixes: every split point when short, a sample otherwise.
    let step = bytes.count <= 256 ? 1 : max(1, bytes.count / 97)
    var k = 0
    while k < bytes.count {
        let r = parseRequestHead(bytes[0..<k], limits: limits)
        if case .incomplete = r {} else {
            precondition(r == whole, "prefix \(k) of \(bytes.count) gave \(r), whole gave \(whole)")
            break
        }
        k += step
    }
    return 0
}
