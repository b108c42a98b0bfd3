// Fuzz target: the request decoding of every route, with the daemon's own code (Server.FuzzProbe):
// the router (method + path, percent-decoding, 404/405 and Allow), and the JSON bodies of
// POST /processes, POST /processes/run and POST /processes/{id}/signal.
// Input: [selector byte][payload]. Selector % 4: 0 start, 1 run, 2 signal, 3 router ("METHOD path").
// Properties: no crash; every rejection is a 4xx/5xx API error with a bounded message; the router
// answers only 0 (matched), 400, 404 or 405.
import HTTP1
import JSON
import Server

let server: Server = {
    var c = Config()
    c.noCgroup = true          // never touch cgroups from a fuzzer
    c.logLevel = .error
    return try! Server(config: c)
}()

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
        let status = FuzzProbe.route(method: method, path: path)
        precondition([0, 400, 404, 405].contains(status), "router answered \(status)")
    default:
        let kind = FuzzProbe.Body(rawValue: data[0] % 4)!
        let (status, code) = FuzzProbe.decode(kind, payload, server: server)
        if status != 0 {
            precondition(status >= 400 && status < 600 && !code.isEmpty, "bad error \(status) \(code)")
            precondition(status == 400, "a body alone must only give 400, got \(status) \(code)")
        }
    }
    return 0
}
