// Router: maps (method, path) to a Route, or to 404/405. Process segments are percent-decoded.
import HTTP1
import Supervision

public enum Route {
    case health, info
    case metrics   // metrics: GET /metrics (Prometheus text format)
    case listProcesses, startProcess, run
    case getProcess(String), deleteProcess(String)
    case signal(String), restart(String)
    case stdin(String), stdinClose(String)
    case output(String, StreamFilter, tagged: Bool)
    case follow(String, StreamFilter, tagged: Bool)
    case raw(String, OutputStream)
    case files(FileOp)   // files: Files.swift
    case tunnelTCP   // websocket: GET /api/v1/tunnels/tcp?port=N (Tunnel.swift)
    // pty: PTY sessions (Pty.swift)
    case ptyList, ptyCreate, ptyGet(String), ptyDelete(String), ptyResize(String), ptyWS(String)

    enum BodyKind { case none, json, stdin, file }
    var bodyKind: BodyKind {
        switch self {
        case .startProcess, .run, .signal, .ptyCreate, .ptyResize: return .json   // pty: create and resize take JSON
        case .stdin: return .stdin
        case .files(.write): return .file   // files: streamed into a FileUpload
        default: return .none
        }
    }
}

public enum Router {
    public static func route(method: String, path: String) -> Result<Route, APIError> {
        if path == "/metrics" { return method == "GET" ? .success(.metrics) : .failure(APIError(405, "METHOD_NOT_ALLOWED", "method \(method) not allowed on /metrics")) }   // metrics: the route
        // perf(request): the segments after the common prefix, split once (one array per request).
        guard path.hasPrefix("/api/v1/") else {
            return .failure(.notFound("no route for \(method) \(clip(path))"))
        }
        let parts = path.dropFirst(8).split(separator: "/", omittingEmptySubsequences: false)
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
            case "files":   // files: GET/PUT/DELETE /api/v1/files?path=P
                switch method {
                case "GET": return .success(.files(.read))
                case "PUT": return .success(.files(.write))
                default: return need("DELETE", .files(.delete))
                }
            case "pty":   // pty
                if method == "GET" { return .success(.ptyList) }
                return need("POST", .ptyCreate)
            default: break
            }
        case 2 where parts[0] == "tunnels" && parts[1] == "tcp":   // websocket: TCP tunnels
            return need("GET", .tunnelTCP)
        case 2 where parts[0] == "pty":   // pty
            guard let id = segment(parts[1]) else { return .failure(.invalid("malformed percent-encoding in session id")) }
            if method == "GET" { return .success(.ptyGet(id)) }
            return need("DELETE", .ptyDelete(id))
        case 3 where parts[0] == "pty":   // pty
            guard let id = segment(parts[1]) else { return .failure(.invalid("malformed percent-encoding in session id")) }
            switch parts[2] {
            case "resize": return need("POST", .ptyResize(id))
            case "ws": return need("GET", .ptyWS(id))
            default: break
            }
        case 2 where parts[0] == "files" && parts[1] == "list":   // files: GET /api/v1/files/list?path=P
            return need("GET", .files(.list))
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
        for m in ["GET", "POST", "PUT", "DELETE"] {   // files: PUT
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
