// FuzzProbe: hardening entry points for the fuzz targets in fuzz/ (a separate package built with
// -sanitize=fuzzer). They expose the request decoding of every route (router, JSON bodies of start, run
// and signal, the follow resume point) without a socket. Nothing here runs in the daemon.
import HTTP1
import JSON

public enum FuzzProbe {
    /// The routes whose bodies are JSON, in the order the fuzz target selects them.
    public enum Body: UInt8, CaseIterable, Sendable { case start = 0, run, signal }

    /// Routes `method path`; returns the error status, or 0 when a route matched.
    public static func route(method: String, path: String) -> Int {
        switch Router.route(method: method, path: path) {
        case .success: _ = Router.allowed(path); return 0
        case .failure(let e): return e.status
        }
    }

    /// Router.clip, for the regression tests.
    public static func clippedForTests(_ s: String) -> String { Router.clip(s) }

    /// Decodes `body` as the JSON body of `kind` with the daemon's own decoders. Returns the error
    /// status and code, or (0, "") when the body was accepted. Never throws; a crash is a bug.
    public static func decode(_ kind: Body, _ body: [UInt8], server: Server) -> (status: Int, code: String) {
        do {
            switch kind {
            case .start: _ = try server.decodeStart(body)
            case .run: _ = try server.decodeStart(body, forRun: true)
            case .signal: _ = try server.decodeSignal(body)
            }
            return (0, "")
        } catch let e as APIError {
            // Error messages must stay bounded (they quote at most a clipped piece of the input).
            precondition(e.message.utf8.count <= 1024, "unbounded error message: \(e.message.utf8.count) bytes")
            return (e.status, e.code)
        } catch {
            preconditionFailure("decoder threw a non-API error: \(error)")
        }
    }
}
