// Router: maps (method, path) to a Route, or to 404/405. Process segments are percent-decoded.
import HTTP1
import Supervision

public enum Route {
    case health, info
    case listProcesses, startProcess, run
    case getProcess(String), deleteProcess(String)
    case signal(String), restart(String)
    case stdin(String), stdinClose(String)
    case output(String, StreamFilter, tagged: Bool)
    case follow(String, StreamFilter, tagged: Bool)
    case raw(String, OutputStream)

    enum BodyKind { case none, json, stdin }
    var bodyKind: BodyKind {
        switch self {
        case .startProcess, .run, .signal: return .json
        case .stdin: return .stdin
        default: return .none
        }
    }
}

public enum Router {
    public static func route(method: String, path: String) -> Result<Route, APIError> {
        var segs = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()  // leading ""
        guard path.hasPrefix("/"), segs.count >= 3, segs[1] == "api", segs[2] == "v1" else {
            return .failure(.notFound("no route for \(method) \(clip(path))"))
        }
        segs = segs.dropFirst(2)
        let parts = Array(segs)
        func need(_ m: String, _ r: Route) -> Result<Route, APIError> {
            method == m ? .success(r) : .failure(APIError(405, "METHOD_NOT_ALLOWED", "method \(method) not allowed on \(clip(path))"))
        }
        switch parts.count {
        case 1:
            switch parts[0] {
            case "health": return need("GET", .health)
            case "info": return need("GET", .info)
            case "processes":
                if method == "GET" { return .success(.listProcesses) }
                return need("POST", .startProcess)
            default: break
            }
        case 2 where parts[0] == "processes":
            if parts[1] == "run" && method == "POST" { return .success(.run) }
            guard let p = segment(parts[1]) else { return .failure(.invalid("malformed percent-encoding in process")) }
            if method == "GET" { return .success(.getProcess(p)) }
            return need("DELETE", .deleteProcess(p))
        case 3 where parts[0] == "processes":
            guard let p = segment(parts[1]) else { return .failure(.invalid("malformed percent-encoding in process")) }
            switch parts[2] {
            case "signal": return need("POST", .signal(p))
            case "restart": return need("POST", .restart(p))
            case "stdin": return need("POST", .stdin(p))
            case "stdout": return need("GET", .output(p, .stdout, tagged: false))
            case "stderr": return need("GET", .output(p, .stderr, tagged: false))
            case "output": return need("GET", .output(p, .both, tagged: true))
            default: break
            }
        case 4 where parts[0] == "processes":
            guard let p = segment(parts[1]) else { return .failure(.invalid("malformed percent-encoding in process")) }
            switch (parts[2], parts[3]) {
            case ("stdin", "close"): return need("POST", .stdinClose(p))
            case ("stdout", "follow"): return need("GET", .follow(p, .stdout, tagged: false))
            case ("stderr", "follow"): return need("GET", .follow(p, .stderr, tagged: false))
            case ("output", "follow"): return need("GET", .follow(p, .both, tagged: true))
            case ("stdout", "raw"): return need("GET", .raw(p, .stdout))
            case ("stderr", "raw"): return need("GET", .raw(p, .stderr))
            default: break
            }
        default: break
        }
        return .failure(.notFound("no route for \(method) \(clip(path))"))
    }

    /// The Allow header for a 405.
    public static func allowed(_ path: String) -> String {
        var methods: [String] = []
        for m in ["GET", "POST", "DELETE"] {
            if case .success = route(method: m, path: path) { methods.append(m) }
        }
        return methods.joined(separator: ", ")
    }

    private static func segment(_ s: Substring) -> String? {
        guard let d = percentDecode(s), !d.isEmpty else { return nil }
        return d
    }

    // Hardening: bounded in UTF-8 bytes, not Characters (one Character can hold any number of combining
    // marks, so a 200-Character prefix could be megabytes). Cut at a scalar boundary.
    public static func clip(_ s: String) -> String {
        guard s.utf8.count > 200 else { return s }
        var out = String.UnicodeScalarView()
        var n = 0
        for u in s.unicodeScalars {
            n += UTF8.width(u)
            if n > 200 { break }
            out.append(u)
        }
        return String(out) + "…"
    }
}
