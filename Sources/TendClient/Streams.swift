// Streams: following a process's output with transparent resume (Last-Event-ID), and `tend run`
// (one-shot run over POST /processes/run, or start + follow + status when the daemon lacks it).
import Sys
import JSON

/// Where output lines go: stdout lines to fd 1, stderr lines to fd 2 (or NDJSON on fd 1 with --json).
public final class OutputSink {
    public var json: Bool
    public var showStdout = true, showStderr = true
    private var out: [UInt8] = [], err: [UInt8] = []

    public init(json: Bool) { self.json = json }

    public func line(_ text: String, stream: String?, id: UInt64?, timestamp: Int64) {
        let isErr = stream == "stderr"
        if isErr ? !showStderr : !showStdout { return }
        if json {
            var o: [(String, JSONValue)] = []
            if let id { o.append(("id", .int(Int64(id)))) }
            o.append(("stream", .string(stream ?? "stdout")))
            o.append(("line", .string(text)))
            o.append(("timestamp", .int(timestamp)))
            JSONValue.object(o).serialize(into: &out)
            out.append(0x0A)
        } else if isErr {
            err += Array(text.utf8); err.append(0x0A)
        } else {
            out += Array(text.utf8); out.append(0x0A)
        }
    }

    public func jsonRecord(_ v: JSONValue) {
        v.serialize(into: &out)
        out.append(0x0A)
    }

    public func flush() {
        if !out.isEmpty { try? FD.writeFully(1, out); out.removeAll(keepingCapacity: true) }
        if !err.isEmpty { try? FD.writeFully(2, err); err.removeAll(keepingCapacity: true) }
    }
}

public enum FollowEnd: Equatable { case eof, interrupted, timeout, stopped }

/// Follows `/output/follow` of `process`, calling `onEvent` for each event; reconnects after a dropped
/// connection with `Last-Event-ID: <last id seen>` and skips anything at or below it, so no line is
/// duplicated or lost. `onEvent` returns false to stop. Gives up after `retryForMs` without progress.
public func followOutput(_ client: TendClient, process: String, after: UInt64?, interruptFD: Int32 = -1,
                         deadline: Int64? = nil, retryForMs: Int64 = 30_000,
                         reconnected: ((Int) -> Void)? = nil,
                         onEvent: (StreamEvent) throws -> Bool) throws -> FollowEnd {
    var lastID = after
    var failingSince: Int64? = nil
    var backoff: Int64 = 100
    var attempts = 0
    let path = "/api/v1/processes/\(pathSegment(process))/output/follow"
    while true {
        var headers = [("Accept", "text/event-stream")]
        if let lastID { headers.append(("Last-Event-ID", String(lastID))) }
        var problem: ClientError
        do {
            if attempts > 0 { reconnected?(attempts) }
            attempts += 1
            let ex = try client.send("GET", path, headers: headers)
            ex.interruptFD = interruptFD
            let head: ResponseHead
            do { head = try ex.readHead(deadline: deadline) } catch is Interrupted { return .interrupted }
            if head.status == 503 {
                throw ClientError.transport("daemon busy (503)")
            }
            guard (200..<300).contains(head.status) else {
                let body = (try? ex.readAll(deadline: Clock.monotonicMs() + 5000)) ?? []
                throw client.apiError(Response(head: head, body: body))
            }
            var parser = SSEParser()
            failingSince = nil
            backoff = 100
            reading: while true {
                switch try ex.readBody(deadline: deadline) {
                case .bytes(let b):
                    for e in parser.feed(b) {
                        let ev = StreamEvent.from(e)
                        if case .output(let id?, _, _, _) = ev {
                            if let l = lastID, id <= l { continue }  // already delivered before a reconnect
                            lastID = id
                        }
                        if ev == .eof { _ = try onEvent(ev); return .eof }
                        if try !onEvent(ev) { return .stopped }
                    }
                case .end:
                    problem = .transport("the stream ended before its eof event")
                    break reading
                case .timeout: return .timeout
                case .interrupted: return .interrupted
                }
            }
        } catch let e as ClientError {
            if case .api = e { throw e }
            problem = e
        }
        // Dropped or refused: wait and resume after the last id seen.
        let now = Clock.monotonicMs()
        if failingSince == nil { failingSince = now }
        if now - failingSince! > retryForMs { throw problem }
        if let d = deadline, now >= d { return .timeout }
        var wait = backoff
        if let d = deadline { wait = min(wait, max(0, d - now)) }
        if interruptFD >= 0 {
            if (try? Poll.wait([interruptFD], events: Poll.readable, timeoutMs: Int32(wait)))?.first == true { return .interrupted }
        } else {
            _ = try? Poll.wait([], events: Poll.readable, timeoutMs: Int32(wait))
        }
        backoff = min(backoff * 2, 1000)
    }
}

/// `tend logs --raw`: copies one stream's bytes, exactly as written, to fd 1 from byte `offset`. With
/// `follow`, until the stream is complete: a follow body that ends while the stream is not (the reader fell
/// behind the daemon's ring) is resumed at the next offset, and the bytes the ring no longer had are
/// reported on stderr. Returns the offset after the last byte copied.
@discardableResult
public func copyRawOutput(_ client: TendClient, process: String, stream: String, follow: Bool, from offset: UInt64) throws -> UInt64 {
    let path = "/api/v1/processes/\(pathSegment(process))/\(stream)/raw"
    var offset = offset
    var followNext = follow
    while true {
        let ex = try client.send("GET", path + "?offset=\(offset)" + (followNext ? "&follow=true" : ""))
        let head = try ex.readHead()
        guard (200..<300).contains(head.status) else {
            throw client.apiError(Response(head: head, body: (try? ex.readAll(deadline: Clock.monotonicMs() + 5000)) ?? []))
        }
        if let s = head.header("X-Tend-Offset"), let start = UInt64(s), start > offset {
            warn("\(start - offset) bytes of \(stream) (offsets \(offset)..<\(start)) were no longer kept by the daemon")
            offset = start
        }
        reading: while true {
            switch try ex.readBody() {
            case .bytes(let b):
                try FD.writeAll(1, b)
                offset += UInt64(b.count)
            case .end: break reading
            case .timeout, .interrupted: return offset
            }
        }
        if !follow { return offset }
        if !followNext {
            // The snapshot after a follow body ended: done when the stream is complete and all copied.
            if head.header("X-Tend-Complete") == "true" { return offset }
            followNext = true
        } else {
            followNext = false
        }
    }
}

/// What `tend run` asks for.
public struct RunSpec {
    public var command: String
    public var args: [String]
    public var env: [(String, String)] = []
    public var cwd: String?
    public var user: String?
    public var timeout: Double?

    public init(command: String, args: [String]) { self.command = command; self.args = args }

    public func body(includeTimeout: Bool) -> JSONValue {
        var o: [(String, JSONValue)] = [("command", .string(command)), ("args", .array(args.map { .string($0) }))]
        if !env.isEmpty { o.append(("env", .object(env.map { ($0.0, .string($0.1)) }))) }
        if let cwd { o.append(("working_dir", .string(cwd))) }
        if let user { o.append(("user", .string(user))) }
        if includeTimeout, let timeout { o.append(("timeout", .double(timeout))) }
        return .object(o)
    }
}

public struct RunResult: Equatable {
    public var pid: Int64?
    public var exitCode: Int64?
    public var signal: Int64?
    public var reason: String?
    public var timedOut = false
    public var interrupted = false
    public var usedRunEndpoint = false

    public var status: Int32 {
        if interrupted { return 130 }
        return runExitStatus(exitCode: exitCode, signal: signal, timedOut: timedOut)
    }
}

/// Runs a command to completion, streaming its output into `sink`.
public func runToCompletion(_ client: TendClient, _ spec: RunSpec, sink: OutputSink, interruptFD: Int32,
                            forceFallback: Bool = false) throws -> RunResult {
    if !forceFallback, let r = try runViaRunEndpoint(client, spec, sink: sink, interruptFD: interruptFD) { return r }
    return try runViaFollow(client, spec, sink: sink, interruptFD: interruptFD)
}

/// POST /api/v1/processes/run. nil when the daemon does not have the route (404/405/501).
func runViaRunEndpoint(_ client: TendClient, _ spec: RunSpec, sink: OutputSink, interruptFD: Int32) throws -> RunResult? {
    let started = Clock.monotonicMs()
    let ex = try client.send("POST", "/api/v1/processes/run",
                             headers: [("Accept", "text/event-stream"), ("Content-Type", "application/json")],
                             body: spec.body(includeTimeout: true).serialized())
    ex.interruptFD = interruptFD
    var result = RunResult()
    result.usedRunEndpoint = true
    let head: ResponseHead
    do { head = try ex.readHead() } catch is Interrupted {
        result.interrupted = true
        return result
    }
    if [404, 405, 501].contains(head.status) { return nil }
    guard (200..<300).contains(head.status) else {
        let body = (try? ex.readAll(deadline: Clock.monotonicMs() + 5000)) ?? []
        throw client.apiError(Response(head: head, body: body))
    }
    // A client-side backstop in case the daemon does not enforce the timeout.
    let deadline = spec.timeout.map { started + Int64($0 * 1000) + 5000 }
    var parser = SSEParser()
    var sawExit = false
    var lastID: UInt64? = nil
    var printedWithoutID = false
    // A broken run stream is resumed like a follow (output ids are the process's journal ids).
    func resume(_ why: ClientError) throws -> RunResult {
        guard let pid = result.pid, lastID != nil || !printedWithoutID else { throw why }
        sink.flush()
        var r = try followRunToEnd(client, pid: pid, after: lastID, deadline: spec.timeout.map { started + Int64($0 * 1000) },
                                   sink: sink, interruptFD: interruptFD)
        r.usedRunEndpoint = true
        if r.signal == 9 && !r.timedOut && !r.interrupted {
            warn("the run stream broke (\(why)); tendd ended process \(pid) with the connection")
        }
        return r
    }
    loop: while true {
        let piece: ReadOutcome
        do { piece = try ex.readBody(deadline: deadline) } catch let e as ClientError { return try resume(e) }
        switch piece {
        case .bytes(let b):
            for e in parser.feed(b) {
                switch StreamEvent.from(e) {
                case .output(let id, let line, let stream, let ts):
                    if let id { lastID = id } else { printedWithoutID = true }
                    sink.line(line, stream: stream, id: id, timestamp: ts)
                case .started(let pid): result.pid = pid
                case .exit(let code, let sig, let reason):
                    if code != nil || sig != nil { sawExit = true }
                    result.exitCode = code; result.signal = sig; result.reason = reason
                case .gap(let l, _): sink.flush(); warn("\(l) output lines were dropped by the daemon (retention limit)")
                case .eof, .other: break
                }
            }
            sink.flush()
        case .end: break loop
        case .timeout:
            if let pid = result.pid { _ = try? client.call("DELETE", "/api/v1/processes/\(pid)") }
            result.timedOut = true
            return result
        case .interrupted:
            if let pid = result.pid { _ = try? client.call("DELETE", "/api/v1/processes/\(pid)") }
            result.interrupted = true
            return result
        }
    }
    sink.flush()
    guard sawExit else { return try resume(.transport("the run stream ended without an exit event")) }
    if result.reason == "timed_out" { result.timedOut = true }
    if let t = spec.timeout, result.reason == nil, result.signal == 9, Double(Clock.monotonicMs() - started) >= t * 1000 {
        result.timedOut = true
    }
    return result
}

/// start + /output/follow + GET status; DELETE when the timeout expires or on Ctrl-C.
func runViaFollow(_ client: TendClient, _ spec: RunSpec, sink: OutputSink, interruptFD: Int32) throws -> RunResult {
    let started = Clock.monotonicMs()
    let info = try client.call("POST", "/api/v1/processes", json: spec.body(includeTimeout: false)).json()
    guard case .int(let pid)? = info["pid"] else { throw ClientError.transport("the start answer has no pid") }
    return try followRunToEnd(client, pid: pid, after: nil, deadline: spec.timeout.map { started + Int64($0 * 1000) },
                              sink: sink, interruptFD: interruptFD)
}

/// Follows a started process to its end (resuming after `after`), enforcing `deadline` with DELETE, then
/// reads its final status.
func followRunToEnd(_ client: TendClient, pid: Int64, after: UInt64?, deadline: Int64?, sink: OutputSink,
                    interruptFD: Int32) throws -> RunResult {
    var result = RunResult()
    result.pid = pid
    var deadline = deadline
    var end: FollowEnd
    var lastSeen: UInt64? = after
    repeat {
        end = try followOutput(client, process: String(pid), after: lastSeen, interruptFD: interruptFD, deadline: deadline) { ev in
            switch ev {
            case .output(let id, let line, let stream, let ts):
                if let id { lastSeen = id }
                sink.line(line, stream: stream, id: id, timestamp: ts); sink.flush()
            case .gap(let l, _): sink.flush(); warn("\(l) output lines were dropped by the daemon (retention limit)")
            default: break
            }
            return true
        }
        switch end {
        case .interrupted:
            _ = try? client.call("DELETE", "/api/v1/processes/\(pid)")
            result.interrupted = true
            return result
        case .timeout where !result.timedOut:
            _ = try? client.call("DELETE", "/api/v1/processes/\(pid)")
            result.timedOut = true
            deadline = Clock.monotonicMs() + 5000  // collect what is left of the output
            end = .stopped
        default: break
        }
    } while end == .stopped
    sink.flush()
    // The eof event comes after the reap, so the status is final; poll briefly just in case.
    for _ in 0..<50 {
        let p = try client.call("GET", "/api/v1/processes/\(pid)").json()
        if case .string(let s)? = p["status"], s != "running" {
            if case .int(let c)? = p["exit_code"] { result.exitCode = c }
            if case .int(let s)? = p["signal"] { result.signal = s }
            if case .string(let s)? = p["status"] { result.reason = s }
            return result
        }
        _ = try? Poll.wait([], events: Poll.readable, timeoutMs: 100)
    }
    throw ClientError.transport("process \(pid) still running after its output ended")
}

/// Prints `tend: MESSAGE` on stderr.
public func warn(_ message: String) {
    let colored = Style.yellow.wrap("tend:", useColor(2))
    try? FD.writeFully(2, Array("\(colored) \(message)\n".utf8))
}

/// Colors only on a terminal, and never with NO_COLOR set or TERM=dumb.
public func useColor(_ fd: Int32) -> Bool {
    if let nc = Proc.getenv("NO_COLOR"), !nc.isEmpty { return false }
    if Proc.getenv("TERM") == "dumb" { return false }
    return Terminal.isTerminal(fd)
}
