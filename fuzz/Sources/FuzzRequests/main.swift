// Fuzz target: the request decoding of every route, with the daemon's own pure functions (Router,
// RequestDecoding; no daemon instance):
// the router (method + path, percent-decoding, 404/405 and Allow), and the JSON bodies of
// POST /processes, POST /processes/run and POST /processes/{id}/signal.
// Input: [selector byte][payload]. Selector % 4: 0 start, 1 run, 2 signal, 3 router ("METHOD path").
// Properties: no crash; every rejection is a 4xx/5xx API error with a bounded message; the router
// answers only 0 (matched), 400, 404 or 405.
import HTTP1
import JSON
import Server

/// Decodes `body` as the JSON body of selector `kind` (0 start, 1 run, 2 signal). Returns the error status
/// and code, or (0, "") when the body was accepted. Error messages must stay bounded.
func decode(_ kind: UInt8, _ body: [UInt8]) -> (status: Int, code: String) {
    do {
        switch kind {
        case 0: _ = try RequestDecoding.start(body)
        case 1: _ = try RequestDecoding.start(body, forRun: true)
        default: _ = try RequestDecoding.signal(body)
        }
        return (0, "")
    } catch let e as APIError {
        precondition(e.message.utf8.count <= 1024, "unbounded error message: \(e.message.utf8.count) bytes")
        return (e.status, e.code)
    } catch {
        preconditionFailure("decoder threw a non-API error: \(error)")
    }
}

/// 0 when a route matched, else the error status (and the Allow header of a 405 is computed).
func route(_ method: String, _ path: String) -> Int {
    switch Router.route(method: method, path: path) {
    case .success: _ = Router.allowed(path); return 0
    case .failure(let e): return e.status
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequests(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let payload = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 4 {
    case 3:
        let text = String(decoding: payload, as: UTF8.self)
        let method: String, path: String
        if let sp = text.firstIndex(of: " ") {
            method = String(text[..<sp]); path = String(text[text.index(after: sp)...])
        } else {
            method = "GET"; path = text
        }
        let status = route(method, path)
        precondition([0, 400, 404, 405].contains(status), "router answered \(status)")
    default:
        let (status, code) = decode(data[0] % 4, payload)
        if status != 0 {
            precondition(status >= 400 && status < 600 && !code.isEmpty, "bad error \(status) \(code)")
            precondition(status == 400, "a body alone must only give 400, got \(status) \(code)")
        }
    }
    return 0
}
