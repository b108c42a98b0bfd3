// API: the handlers of the process API (protocol.md §2, §12): request decoding and validation,
// start/list/get/kill/signal/stdin/output/follow, and ProcessInfo encoding.
import Sys
import Reactor
import HTTP1
import JSON
import Supervision

enum Outcome {
    case response(Int, JSONValue, [(String, String)])
    case rawJSON(Int, [UInt8])
    case noContent
    case error(APIError)
    case bytes(Int, String, [UInt8], [(String, String)])   // status, content type, body, headers
    case streaming(StreamProducer)
    /// The answer comes later through `Connection.complete(_:)`.
    case pending
    // websocket: the connection lets go of its socket; the closure gets (fd, bytes read past the request head,
    // output still queued) and owns them from then on (it writes the 101 itself).
    case upgrade((Int32, [UInt8], [UInt8]) -> Void)
}

extension Server {
    var httpLimits: HTTPLimits { HTTPLimits(maxHeaderBytes: config.maxHeaderBytes, maxHeaderCount: 64) }

    // MARK: connections

    func accepted(_ fd: Int32) {
        if connections.count >= config.maxConnections || stopping {
            let body = "{\"error\":\"too many connections\",\"code\":\"LIMIT_REACHED\"}\n"
            let resp = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nRetry-After: 1\r\nConnection: close\r\n\r\n\(body)"
            _ = try? FD.write(fd, Array(resp.utf8), from: 0)
            metrics?.connectionsRefused &+= 1   // metrics: refusals
            FD.close(fd)
            log.warn("msg=\"connection refused\" reason=limit connections=\(connections.count)")
            return
        }
        Socket.setNoDelay(fd)
        let c = Connection(server: self, fd: fd)
        do {
            try c.io.watch([.input, .readHangup], handler: c)
        } catch {
            log.warn("msg=\"cannot watch a new connection, closing it\" error=\(Log.q("\(error)"))")
            c.io.close()
            return
        }
        connections[ObjectIdentifier(c)] = c
    }

    func connectionClosed(_ c: Connection) {
        connections[ObjectIdentifier(c)] = nil
        // perf(request): a closed connection still in `dirtyConnections` is skipped by its flush (`closed`)
        // and dropped with the list at the end of this turn.
    }

    /// `Authorization: Bearer <token>`, compared in constant time.
    func authorized(_ head: HTTPRequestHead) -> Bool {
        BearerAuth.matches(head.headers["Authorization"], token: token)   // issue17-perf: no copies per request
    }

    /// perf(request): the /info answer (with its newline), rebuilt only when one of its figures changed
    /// (uptime once a second): the same bytes as serializing it per request, which was a tenth of the
    /// daemon's user time at 5·10^4 req/s.
    func infoBody() -> [UInt8] {
        let key = InfoKey(uptimeSecs: (loop.now - startedAtMono) / 1000,   // this turn's clock
                          running: table.runningCount, total: table.processes.count)
        if key != infoCache.key || infoCache.body.isEmpty {
            var b = JSONValue.object([
                ("version", .string(tendVersion)),
                ("uptime_secs", .int(key.uptimeSecs)),
                ("running_processes", .int(Int64(key.running))),
                ("total_processes", .int(Int64(key.total))),
            ]).serialized()
            b.append(0x0A)
            infoCache = (key, b)
        }
        return infoCache.body
    }

    // MARK: routing

    func handle(_ route: Route, head: HTTPRequestHead, body: [UInt8], connection: Connection) -> Outcome {
        do {
            switch route {
            case .health:
                return .response(200, .object([("healthy", .bool(true))]), [])
            case .info:
                return .rawJSON(200, infoBody())
            case .metrics:
                return try metricsResponse(head, connection)   // metrics: GET /metrics (Metrics.swift)
            case .listProcesses:
                // resources: each tree's usage, read a batch per loop turn (Resources.swift)
                let records = table.processes.values.sorted { $0.handle < $1.handle }
                return withResources(records, connection) { [unowned self] usages in
                    .response(200, .object([("processes", .array(zip(records, usages).map { self.processInfo($0, usage: $1) }))]), [])
                }
            case .startProcess:
                let spec = try RequestDecoding.start(body)
                return try answerWhenStarted(spec, connection) { [unowned self] p, _ in
                    .response(201, self.processInfo(p), [])
                }
            case .run:
                var spec = try RequestDecoding.start(body, forRun: true)
                spec.stdinMode = .closed
                spec.stdoutMode = .capture
                spec.stderrMode = .capture
                return try answerWhenStarted(spec, connection) { [unowned self] p, connection in
                    p.isRun = true
                    guard let connection, !connection.closed else {
                        // The client left before the child had exec'd: the run owns its tree (Follower.detach).
                        self.log.info("msg=\"run client disconnected, killing\" pid=\(p.pid)")
                        self.send(p, .clientLeft)
                        return .noContent
                    }
                    connection.beginStream(headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                                     ("X-Accel-Buffering", "no")])
                    let f = Follower(connection: connection, process: p, filter: .both, tagStream: true, after: nil, run: true)
                    p.followers.insert(f)
                    p.runReader = f
                    return .streaming(f)
                }
            case .getProcess(let id):
                let p = try lookup(id)
                var reader = ResourceReader()   // resources: usage of its tree, read now (Resources.swift)
                return .response(200, processInfo(p, usage: reader.read(p)), [])
            case .deleteProcess(let id):
                let p = try lookup(id)
                // A managed process: TERM, KILL after its stop_grace_ms; a plain one: KILL at once.
                let grace = p.managed?.spec.stopGraceMs ?? 0
                if p.managed == nil && p.isRunning { metrics?.treeKillRequested(p) }   // metrics: its exit counts as "killed"
                send(p, .stopRequested(Teardown(graceMs: grace)))
                guard p.isRunning else { return .noContent }
                if let m = p.managed {
                    log.info("msg=\"managed process stopping\" id=\(Log.q(m.id)) pid=\(p.pid) grace_ms=\(grace)")
                } else {
                    log.info("msg=\"process killed\" pid=\(p.pid) handle=\(p.handle)")
                }
                waitForExit(p, connection: connection, timeoutMs: grace + 2000) { .noContent }
                return .pending
            case .signal(let id):
                let p = try lookup(id)
                let sig = try RequestDecoding.signal(body)
                guard p.isRunning else { throw APIError(400, "PROCESS_NOT_RUNNING", "process \(p.pid) is not running") }
                // Like terminal job control: the process group; SIGKILL also reaches setsid'd descendants.
                if sig == Signal.kill { metrics?.treeKillRequested(p); ownership.signalTree(p, sig) } else { ownership.signalGroup(p, sig) }
                log.info("msg=\"signal sent\" pid=\(p.pid) signal=\(sig)")
                return .response(200, .object([("success", .bool(true))]), [])
            case .restart(let id):
                let p = try lookup(id)
                guard let m = p.managed else {
                    throw APIError(400, "NOT_MANAGED", "process \(p.pid) is not a managed process; only managed processes (started with name, restart or health_check) can be restarted")
                }
                if stopping { throw APIError(503, "LIMIT_REACHED", "tendd is shutting down") }
                if p.machine.isRetired, let n = m.spec.name, let other = table.names[n], other !== p, !other.machine.isRetired {
                    throw APIError(409, "NAME_IN_USE", "another managed process named \(Router.clip(n)) is running")
                }
                let before = p.machine.restartCount
                m.restartWaiters.append { [unowned self, weak connection, weak p] in
                    guard let connection, let p else { return }
                    if p.machine.restartCount > before, p.isRunning {
                        connection.complete(.response(200, self.processInfo(p), []))
                    } else {
                        connection.complete(.error(APIError(500, "SPAWN_FAILED", "restart failed: \(p.managed?.lastError ?? p.machine.stopReason ?? "unknown error")")))
                    }
                }
                if p.machine.isRetired, let n = m.spec.name { table.names[n] = p; m.nameReleased = false }
                log.info("msg=\"restart requested\" id=\(Log.q(m.id))")
                send(p, .restartRequested)
                return .pending
            case .stdin(let id):
                let p = try lookup(id)
                guard let s = p.stdin, !s.closed || s.queued > 0 || p.isRunning else {
                    throw APIError(400, "STDIN_NOT_WRITABLE", "stdin of process \(p.pid) is not writable")
                }
                if s.fd < 0 { throw APIError(400, "STDIN_NOT_WRITABLE", "stdin of process \(p.pid) was closed before all input was written") }
                return .noContent
            case .stdinClose(let id):
                let p = try lookup(id)
                guard let s = p.stdin else {
                    throw APIError(400, "STDIN_NOT_WRITABLE", "process \(p.pid) was not started with stdin_mode \"pipe\"")
                }
                s.requestClose()
                return .noContent
            case .output(let id, let filter, _):
                let p = try lookup(id)
                // retention (issue 13): output that reaches into the disk tier is streamed (OutputList.swift).
                if p.journal.oldestSeq < p.journal.headSeq {
                    connection.beginStream(headers: [("Content-Type", "application/json")])
                    return .streaming(OutputList(connection: connection, process: p, filter: filter))
                }
                return .rawJSON(200, outputResponse(p, filter))
            case .raw(let id, let stream):
                return try rawOutput(try lookup(id), stream, head, connection)
            case .files(let op):   // files: Files.swift
                return filesRequest(op, head, connection)
            case .follow(let id, let filter, let tagged):
                let p = try lookup(id)
                let after = try resumePoint(head)
                connection.beginStream(headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                                 ("X-Accel-Buffering", "no")])
                let f = Follower(connection: connection, process: p, filter: filter, tagStream: tagged, after: after)
                p.followers.insert(f)
                return .streaming(f)
            case .tunnelTCP:   // websocket: TCP tunnels (Tunnel.swift)
                return tunnels.open(head: head, connection: connection)
            case .ptyList: return ptys.list()                            // pty: PTY sessions (Pty.swift)
            case .ptyCreate: return try ptys.create(body)                // pty
            case .ptyGet(let id): return try ptys.get(id)                // pty
            case .ptyDelete(let id): return try ptys.kill(id)            // pty
            case .ptyResize(let id): return try ptys.resize(id, body)    // pty
            case .ptyWS(let id): return ptys.attach(id, head: head)      // pty
            }
        } catch let e as APIError {
            return .error(e)
        } catch {
            return .error(APIError(500, "INTERNAL_ERROR", "\(error)"))
        }
    }

    /// Starts `spec` for a request and answers with `answer(record, connection)` once the child has exec'd:
    /// now (a synchronous spawn) or later through `Connection.complete` (`.pending` now; the connection
    /// may be gone by then). A failure is answered as an error either way.
    func answerWhenStarted(_ spec: StartSpec, _ connection: Connection,
                           _ answer: @escaping (ProcessRecord, Connection?) -> Outcome) throws -> Outcome {
        var now: Outcome? = nil
        var returned = false
        try startProcess(spec) { [unowned self, weak connection] result in
            let outcome: Outcome
            switch result {
            case .success(let p):
                if let connection {   // metrics: request to exec
                    self.metrics?.startLatency(ns: Clock.monotonicNs() - connection.requestStartedNs)
                }
                outcome = answer(p, connection)
            case .failure(let e as APIError): outcome = .error(e)
            case .failure(let e): outcome = .error(APIError(500, "INTERNAL_ERROR", "\(e)"))
            }
            if returned { connection?.complete(outcome) } else { now = outcome }
        }
        returned = true
        return now ?? .pending
    }

    /// The stdin sink for a stdin route, checked before the body is read.
    func stdinTarget(_ route: Route) -> Result<StdinSink, APIError> {
        guard case .stdin(let id) = route else { return .failure(APIError(500, "INTERNAL_ERROR", "not a stdin route")) }
        do {
            let p = try lookup(id)
            guard let s = p.stdin else {
                return .failure(APIError(400, "STDIN_NOT_WRITABLE", "process \(p.pid) was not started with stdin_mode \"pipe\""))
            }
            guard p.isRunning, !s.closed else {
                return .failure(APIError(400, "STDIN_NOT_WRITABLE", "stdin of process \(p.pid) is closed"))
            }
            return .success(s)
        } catch let e as APIError { return .failure(e) } catch { return .failure(APIError(500, "INTERNAL_ERROR", "\(error)")) }
    }

    /// Finds a process by PID (all digits) or by managed name.
    func lookup(_ id: String) throws -> ProcessRecord {
        if let p = table.lookup(id) { return p }
        throw APIError.processNotFound(Router.clip(id))
    }

    /// Answers `connection` once `p` has been reaped (or after `timeoutMs`).
    func waitForExit(_ p: ProcessRecord, connection: Connection, timeoutMs: Int64, _ outcome: @escaping () -> Outcome) {
        var done = false
        var timer: TimerID?
        let finish: () -> Void = { [weak connection] in
            guard !done else { return }
            done = true
            if let timer { self.loop.cancel(timer) }
            connection?.complete(outcome())
        }
        p.exitWaiters.append(finish)
        timer = loop.schedule(afterMs: timeoutMs, finish)
    }

    // Hardening: the parsing moved to HTTP1.parseResumePoint (pure, unit-tested and fuzzed); same behaviour.
    private func resumePoint(_ head: HTTPRequestHead) throws -> UInt64? {
        switch parseResumePoint(lastEventID: head.headers["Last-Event-ID"], query: head.query) {
        case .success(let v): return v
        case .failure(.invalidLastEventID): throw APIError.invalid("Last-Event-ID must be a non-negative integer")
        case .failure(.invalidAfter): throw APIError.invalid("after must be a non-negative integer")
        }
    }

    private func outputResponse(_ p: ProcessRecord, _ filter: StreamFilter) -> [UInt8] {
        var out: [UInt8] = Array("{\"pid\":".utf8)
        appendJSONInt(Int64(p.pid), to: &out)
        out.append(contentsOf: ",\"lines\":[".utf8)
        var n: Int64 = 0
        var seq = p.journal.headSeq
        while seq < p.journal.nextSeq {
            let next = p.journal.read(from: seq, filter: filter, maxLines: 4096) { e in
                if n > 0 { out.append(0x2C) }
                appendJSONString(e.text, to: &out)
                n += 1
                return true
            }
            if next == seq { break }
            seq = next
        }
        out.append(contentsOf: "],\"line_count\":".utf8)
        appendJSONInt(n, to: &out)
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    // MARK: ProcessInfo

    func processInfo(_ p: ProcessRecord) -> JSONValue {
        var exitCode: JSONValue = .null, signal: JSONValue = .null
        switch p.status {
        case .running: break
        case .exited(let c): exitCode = .int(Int64(c))
        case .signaled(let s): signal = .int(Int64(s))
        case .oomKilled: signal = .int(9)
        case .exitUnknown: break   // exit-status: no code is invented (exit_status_unknown below)
        }
        var fields: [(String, JSONValue)] = [
            ("pid", .int(Int64(p.pid))),
            ("handle", .int(Int64(p.handle))),
            ("status", .string(p.status.name)),
            ("exit_code", exitCode),
            ("signal", signal),
            ("oom_killed", .bool(p.status == .oomKilled)),
            ("stdin_writable", .bool(p.stdinWritable)),
            ("command", .string(p.spec.command)),
            ("args", .array(p.spec.args.map { .string($0) })),
            ("started_at", .int(p.startedAt)),
            ("ended_at", p.endedAt.map { .int($0) } ?? .null),
            ("managed", p.managed?.json(p.machine) ?? .null),
        ]
        if p.status == .exitUnknown { fields.append(("exit_status_unknown", .bool(true))) }   // exit-status
        return .object(fields)
    }
}

let tendVersion = "0.1.0"

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
