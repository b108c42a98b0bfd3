// RequestDecoding: the JSON bodies of the process API turned into validated values, as pure functions
// over the bytes (no daemon state): start and run (protocol.md §2.3, §2.13, §3.3–3.5), signal (§2.7).
// Every rejection is a 400 APIError whose message quotes at most a clipped piece of the input. The fuzz
// target fuzz/Sources/FuzzRequests and Tests/ServerTests call these directly.
import JSON
import Supervision

public enum RequestDecoding {

    static func object(_ body: [UInt8]) throws -> JSONValue {
        if body.isEmpty { throw APIError.invalid("request body must be a JSON object") }
        let v: JSONValue
        do { v = try parseJSON(body) } catch let e as JSONParseError {
            throw APIError.invalid("invalid JSON at byte \(e.offset): \(e.message)")
        }
        guard case .object = v else { throw APIError.invalid("request body must be a JSON object") }
        return v
    }

    public static func signal(_ body: [UInt8]) throws -> Int32 {
        let o = try object(body)
        guard let v = o["signal"], v != .null else { throw APIError.invalid("field 'signal' is required") }
        guard case .int(let n) = v else { throw APIError.invalid("field 'signal' must be an integer") }
        guard n >= 1 && n <= 64 else { throw APIError(400, "INVALID_SIGNAL", "signal \(n) is not between 1 and 64") }
        return Int32(n)
    }

    public static func start(_ body: [UInt8], forRun: Bool = false) throws -> StartSpec {
        let o = try object(body)
        func string(_ k: String) throws -> String? {
            guard let v = o[k], v != .null else { return nil }
            guard case .string(let s) = v else { throw APIError.invalid("field '\(k)' must be a string") }
            return s
        }
        guard let command = try string("command") else { throw APIError.invalid("field 'command' is required") }
        guard !command.isEmpty else { throw APIError.invalid("field 'command' must not be empty") }
        guard !command.utf8.contains(0) else { throw APIError.invalid("field 'command' must not contain NUL") }
        var args: [String] = []
        if let v = o["args"], v != .null {
            guard case .array(let a) = v else { throw APIError.invalid("field 'args' must be an array of strings") }
            for (i, x) in a.enumerated() {
                guard case .string(let s) = x, !s.utf8.contains(0) else { throw APIError.invalid("field 'args[\(i)]' must be a string without NUL") }
                args.append(s)
            }
        }
        var env: [(String, String)] = []
        if let v = o["env"], v != .null {
            guard case .object(let kv) = v else { throw APIError.invalid("field 'env' must be an object of strings") }
            for (k, x) in kv {
                guard case .string(let s) = x else { throw APIError.invalid("field 'env.\(Router.clip(k))' must be a string") }   // hardening: clip the key
                guard !k.isEmpty, !k.contains("="), !k.utf8.contains(0), !s.utf8.contains(0) else {
                    throw APIError.invalid("field 'env' has an invalid variable name or value: \(Router.clip(k))")
                }
                env.append((k, s))
            }
        }
        var spec = StartSpec(command: command, args: args, env: env, workingDir: try string("working_dir"), user: nil)
        if let m = try string("stdin_mode") {
            guard let mode = StdinMode(rawValue: m) else { throw APIError.invalid("field 'stdin_mode' must be \"closed\" or \"pipe\"") }
            spec.stdinMode = mode
        }
        for (k, path) in [("stdout_mode", \StartSpec.stdoutMode), ("stderr_mode", \StartSpec.stderrMode)] {
            if let m = try string(k) {
                guard let mode = OutputMode(rawValue: m) else { throw APIError.invalid("field '\(k)' must be \"capture\" or \"discard\"") }
                spec[keyPath: path] = mode
            }
        }
        if let w = spec.workingDir, w.isEmpty || w.utf8.contains(0) { throw APIError.invalid("field 'working_dir' must be a non-empty path") }
        spec.user = try user(o["user"])
        if forRun {
            for k in ["name", "restart", "health_check"] {
                if let v = o[k], v != .null { throw APIError.invalid("field '\(k)' is not allowed for a one-shot run") }
            }
            if let t = o["timeout"], t != .null {
                let secs: Double
                switch t {
                case .int(let n): secs = Double(n)
                case .double(let d): secs = d
                default: throw APIError.invalid("field 'timeout' must be a number of seconds")
                }
                guard secs > 0, secs.isFinite, secs <= 31_536_000 else { throw APIError.invalid("field 'timeout' must be > 0 seconds") }
                spec.timeoutMs = max(1, Int64((secs * 1000).rounded(.up)))
            }
        } else {
            spec.managed = try managed(o)
        }
        return spec
    }

    static func user(_ v: JSONValue?) throws -> UserSpec? {
        guard let v, v != .null else { return nil }
        switch v {
        case .string(let s):
            let t = s.trimmingSpaces
            guard !t.isEmpty else { throw APIError.invalid("field 'user' must not be blank") }
            if let colon = t.firstIndex(of: ":") {
                guard let u = UInt32(t[..<colon]), let g = UInt32(t[t.index(after: colon)...]) else {
                    throw APIError.invalid("field 'user' must be a name, a uid or uid:gid")
                }
                return .uid(u, gid: g)
            }
            if let u = UInt32(t) { return .uid(u, gid: nil) }
            return .name(t)
        case .object:
            let name = v["name"], uid = v["uid"], gid = v["gid"]
            var g: UInt32? = nil
            if let gid, gid != .null {
                guard case .int(let n) = gid, n >= 0, n <= Int64(UInt32.max) else { throw APIError.invalid("field 'user.gid' must be a non-negative integer") }
                g = UInt32(n)
            }
            if let uid, uid != .null {
                if let name, name != .null { throw APIError.invalid("field 'user' may not set both 'name' and 'uid'") }
                guard case .int(let n) = uid, n >= 0, n <= Int64(UInt32.max) else { throw APIError.invalid("field 'user.uid' must be a non-negative integer") }
                return .uid(UInt32(n), gid: g)
            }
            if let name, name != .null {
                guard case .string(let s) = name, !s.trimmingSpaces.isEmpty else { throw APIError.invalid("field 'user.name' must be a non-empty string") }
                return .name(s.trimmingSpaces)
            }
            throw APIError.invalid("field 'user' must set 'name' or 'uid'")
        default:
            throw APIError.invalid("field 'user' must be a string or an object")
        }
    }

    /// `name`, `restart`, `health_check`, `stop_grace_ms` of a start request. nil: not managed.
    static func managed(_ o: JSONValue) throws -> ManagedSpec? {
        func present(_ k: String) -> JSONValue? { if let v = o[k], v != .null { return v }; return nil }
        let nameV = present("name"), restartV = present("restart"), healthV = present("health_check")
        let graceV = present("stop_grace_ms")
        guard nameV != nil || restartV != nil || healthV != nil else {
            if graceV != nil { throw APIError.invalid("field 'stop_grace_ms' applies to managed processes only (set name, restart or health_check)") }
            return nil
        }
        var m = ManagedSpec()
        if let v = nameV {
            guard case .string(let n) = v else { throw APIError.invalid("field 'name' must be a string") }
            guard !n.isEmpty else { throw APIError.invalid("field 'name': managed process name must not be empty") }
            guard !n.contains("/") else { throw APIError.invalid("field 'name': managed process name must not contain '/'") }
            guard !n.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw APIError.invalid("field 'name': managed process name must not be all digits (it would read as a pid)")
            }
            guard n.utf8.count <= 256, !n.utf8.contains(where: { $0 < 0x20 }) else {
                throw APIError.invalid("field 'name': at most 256 bytes and no control characters")
            }
            m.name = n
        }
        func int(_ obj: JSONValue, _ k: String, _ field: String, min lo: Int64 = 0) throws -> Int64? {
            guard let v = obj[k], v != .null else { return nil }
            guard case .int(let n) = v, n >= lo else { throw APIError.invalid("field '\(field).\(k)' must be an integer >= \(lo)") }
            return n
        }
        if let v = restartV {
            guard case .object = v else { throw APIError.invalid("field 'restart' must be an object") }
            if let p = v["policy"], p != .null {
                guard case .string(let s) = p, let k = RestartPolicyKind(rawValue: s) else {
                    throw APIError.invalid("field 'restart.policy' must be \"never\", \"on_failure\" or \"always\"")
                }
                m.restart.kind = k
            }
            if let n = try int(v, "max_restarts", "restart") { m.restart.maxRestarts = Int(n) }
            if let n = try int(v, "initial_backoff_ms", "restart") { m.restart.initialBackoffMs = n }
            if let n = try int(v, "max_backoff_ms", "restart") { m.restart.maxBackoffMs = n }
        }
        if let v = healthV {
            guard case .object = v else { throw APIError.invalid("field 'health_check' must be an object") }
            guard case .string(let t)? = v["type"], let kind = HealthKind(rawValue: t) else {
                throw APIError.invalid("field 'health_check.type' must be \"http\" or \"tcp\"")
            }
            guard let port = try int(v, "port", "health_check", min: 1), port <= 65535 else {
                throw APIError.invalid("field 'health_check.port' is required (1-65535)")
            }
            var h = HealthCheckConfig(kind: kind, port: UInt16(port))
            if let p = v["path"], p != .null {
                guard case .string(let s) = p, s.hasPrefix("/"), !s.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
                    throw APIError.invalid("field 'health_check.path' must be a path starting with '/'")
                }
                h.path = s
            }
            if let n = try int(v, "initial_delay_ms", "health_check") { h.initialDelayMs = n }
            if let n = try int(v, "interval_ms", "health_check", min: 1) { h.intervalMs = n }
            if let n = try int(v, "timeout_ms", "health_check", min: 1) { h.timeoutMs = n }
            if let n = try int(v, "failure_threshold", "health_check", min: 1) { h.failureThreshold = Int(n) }
            m.health = h
        }
        if let v = graceV {
            guard case .int(let n) = v, n >= 0 else { throw APIError.invalid("field 'stop_grace_ms' must be an integer >= 0") }
            m.stopGraceMs = n
        }
        return m
    }
}
