// Pty: interactive terminal sessions (protocol.md §2.15). `PtySessions` owns the table of sessions and
// answers the routes (`POST/GET /api/v1/pty`, `GET/DELETE /api/v1/pty/{id}`, `POST …/resize`,
// `GET …/ws`); a `PtySession` owns one pty master, the process on its slave and the WebSocket clients
// attached to it.
//
// The child is started through the ordinary spawn path (`Server.startProcess`: its cgroup leaf, pidfd,
// tree kill, a record in the process table) with the pty slave as stdin/stdout/stderr and controlling
// terminal (new session + TIOCSCTTY in the C child side). The master is read on the loop.
//
// Wire (binary frames, first byte the opcode): client → server 0x00 input, 0x01 cols u16 BE + rows u16 BE,
// 0x02 READY; server → client 0x00 output, 0x03 exit code i32 BE (128+N for a signal), then close 1000
// `exit:<code>` (after a DELETE or the idle reaper: close 1001 `session terminated`).
//
// Output: while no client is READY it is kept (up to `backlogBytes`; then the master is not read, so the
// child waits on its terminal, nothing is dropped) and the first READY client gets it; afterwards every
// READY client gets every byte. Back-pressure: the master is read only while every READY client's queue is
// under WebSocketPeer.highWater; input for the child is queued up to `inputBytes`, then the clients'
// frames wait (their WebSocket is not read).
// Lifetime: the exit is reported after the master is drained (EIO: no slave left) or `drainMs` after the
// leader's exit; an exited session stays listed `ptyKeepExitedMs`; a session with no client for `ptyIdleMs`
// is killed like a DELETE (SIGHUP to the tree, SIGKILL after `killGraceMs`).
import Sys
import Reactor
import HTTP1
import JSON

final class PtySessions {
    static let maxSessions = 64
    static let maxKept = 256

    unowned let server: Server
    private(set) var sessions: [String: PtySession] = [:]

    init(server: Server) { self.server = server }

    var live: Int { sessions.values.filter { !$0.ended }.count }

    // MARK: routes

    func create(_ body: [UInt8]) throws -> Outcome {
        var spec = try RequestDecoding.start(body)
        let o: JSONValue
        do { o = try parseJSON(body) } catch { throw APIError.invalid("body is not valid JSON") }
        func size(_ k: String, _ dflt: Int, _ hi: Int) throws -> UInt16 {
            guard let v = o[k], v != .null else { return UInt16(dflt) }
            guard case .int(let n) = v else { throw APIError.invalid("field '\(k)' must be an integer") }
            return UInt16(min(max(Int(clamping: n), 1), hi))
        }
        let rows = try size("rows", 24, 500), cols = try size("cols", 80, 1000)
        guard live < Self.maxSessions else {
            throw APIError(429, "TOO_MANY_SESSIONS", "PTY session limit reached (\(Self.maxSessions))")
        }
        if !spec.env.contains(where: { $0.0 == "TERM" }) { spec.env.append(("TERM", "xterm-256color")) }
        spec.stdinMode = .closed
        spec.stdoutMode = .discard
        spec.stderrMode = .discard
        let pair: (master: Int32, slave: Int32)
        do { pair = try PTY.open() } catch let e as SysError {
            if e.errno == EMFILE_ || e.errno == ENFILE_ { throw APIError(503, "LIMIT_REACHED", "out of file descriptors (\(e.reason))") }
            throw APIError(500, "PTY_FAILED", "cannot open a pty: \(e.reason)")
        }
        try? PTY.setSize(pair.master, rows: rows, cols: cols)
        spec.ptySlave = pair.slave
        let record: ProcessRecord
        do {
            record = try server.startProcess(spec)
        } catch {
            FD.close(pair.master); FD.close(pair.slave)
            throw error
        }
        FD.close(pair.slave)     // the child holds it now; the master reads EIO once the last holder is gone
        let id = Self.newID()
        let token = Self.hex(Random.bytes(32))
        // Crash and upgrade survival: the master and the backlog's memfd go where the process's fds go.
        var region: SharedRegion? = nil
        if let persistence = server.persistence {
            region = try? SharedRegion(name: "tendd-pty\(record.handle)", size: PtyBacklog.size)
            persistence.store(pair.master, record.handle, "pty")
            if let region { persistence.store(region.fd, record.handle, "ptyb") }
        }
        let s = PtySession(sessions: self, id: id, token: Array(token.utf8), record: record, master: pair.master, rows: rows, cols: cols,
                           backlog: PtyBacklog(region: region))
        do { try s.start() } catch {
            server.ownership.signalTree(record, Signal.kill)
            FD.close(pair.master)
            throw APIError(500, "INTERNAL_ERROR", "\(error)")
        }
        sessions[id] = s
        server.markStateDirty(record)
        evictExited()
        server.log.info("msg=\"pty session created\" session=\(id) pid=\(record.pid) rows=\(rows) cols=\(cols)")
        return .response(201, .object([("session_id", .string(id)), ("token", .string(token))]), [])
    }

    func list() -> Outcome {
        let all = sessions.values.sorted { $0.createdAt < $1.createdAt || $0.createdAt == $1.createdAt && $0.id < $1.id }
        return .response(200, .object([("sessions", .array(all.map { $0.info }))]), [])
    }

    func get(_ id: String) throws -> Outcome {
        .response(200, try find(id).info, [])
    }

    func resize(_ id: String, _ body: [UInt8]) throws -> Outcome {
        let s = try find(id)
        let o: JSONValue
        do { o = try parseJSON(body) } catch { throw APIError.invalid("body is not valid JSON") }
        guard case .int(let r)? = o["rows"], case .int(let c)? = o["cols"] else {
            throw APIError.invalid("fields 'rows' and 'cols' are required integers")
        }
        s.resize(rows: Int(clamping: r), cols: Int(clamping: c))
        return .noContent
    }

    func kill(_ id: String) throws -> Outcome {
        try find(id).terminate(reason: "delete")
        return .noContent
    }

    /// `GET /api/v1/pty/{id}/ws`: the session's token (header `X-PTY-Token` or `?token=`), then the upgrade.
    func attach(_ id: String, head: HTTPRequestHead) -> Outcome {
        guard let s = sessions[id] else { return .error(APIError(404, "SESSION_NOT_FOUND", "PTY session \(Router.clip(id)) not found")) }
        let given = head.headers["X-PTY-Token"] ?? queryValue(parseQuery(head.query ?? ""), "token")
        guard let given, constantTimeEqual(Array(given.utf8), s.token) else {
            return .error(APIError(403, "INVALID_TOKEN", "missing or wrong PTY session token"))
        }
        guard s.clientCount < PtySession.maxClients else {
            return .error(APIError(429, "TOO_MANY_CLIENTS", "PTY session \(Router.clip(id)) already has \(PtySession.maxClients) clients"))
        }
        switch WebSocketHandshake.validate(head) {
        case .failure(let e): return handshakeError(e)
        case .success(let accept):
            return .upgrade({ [weak s, server] fd, leftover, queued in
                let ws = WebSocketPeer(server: server, fd: fd, label: "pty", leftover: leftover,
                                       prefix: queued + WebSocketHandshake.response(accept: accept))
                guard let s else { ws.close(code: WSClose.goingAway, reason: "session terminated"); try? ws.start(); return }
                s.attach(ws)
            })
        }
    }

    // MARK: crash and upgrade survival

    /// The record `p` had a PTY session (`meta` from its state file): serve it again with the master and the
    /// backlog that survived (either may be missing: then the session is reported as ended).
    func adopt(_ p: ProcessRecord, _ meta: JSONValue, master: Int32?, backlog: Int32?) {
        guard case .string(let id)? = meta["session_id"], case .string(let token)? = meta["token"] else {
            if let master { FD.close(master) }
            if let backlog { FD.close(backlog) }
            return
        }
        func int(_ k: String, _ d: Int64) -> Int64 { if case .int(let n)? = meta[k] { return n }; return d }
        var region: SharedRegion? = nil
        if let backlog { region = try? SharedRegion(adopting: backlog) }
        if region == nil, let backlog { FD.close(backlog) }
        if let r = region, r.size != PtyBacklog.size { server.log.warn("msg=\"pty backlog of another size, dropped\" session=\(id)"); region = nil }
        if let persistence = server.persistence {
            if let master { persistence.store(master, p.handle, "pty") }
            if let region { persistence.store(region.fd, p.handle, "ptyb") }
        }
        if master == nil && p.isRunning {
            server.log.error("msg=\"pty master lost across the restart, hanging the session up\" session=\(id) pid=\(p.pid)")
            server.ownership.signalTree(p, Signal.hup)
        }
        let s = PtySession(sessions: self, id: id, token: Array(token.utf8), record: p, master: master ?? -1,
                           rows: UInt16(clamping: int("rows", 24)), cols: UInt16(clamping: int("cols", 80)),
                           backlog: PtyBacklog(region: region), createdAt: int("created_at", Clock.wallMs()))
        if case .bool(true)? = meta["killed"] { s.markKilled() }
        do { try s.start() } catch { if let master { FD.close(master) }; return }
        sessions[id] = s
        server.log.info("msg=\"pty session adopted\" session=\(id) pid=\(p.pid) backlog=\(s.backlogCount) running=\(p.isRunning)")
    }

    /// Every session fd a re-executed image must inherit.
    var handOverFDs: [(Int32, String)] { sessions.values.flatMap { $0.handOverFDs } }

    /// The state-file entry of `p` (null when it is no PTY session's process).
    func persistedState(_ p: ProcessRecord) -> JSONValue {
        guard !sessions.isEmpty else { return .null }      // (a save of thousands of records stays cheap)
        return sessions.values.first { $0.record === p }?.persistedState ?? .null
    }

    // MARK: table

    private func find(_ id: String) throws -> PtySession {
        guard let s = sessions[id] else { throw APIError(404, "SESSION_NOT_FOUND", "PTY session \(Router.clip(id)) not found") }
        return s
    }

    func forget(_ s: PtySession) {
        if sessions[s.id] === s { sessions[s.id] = nil }
    }

    private func evictExited() {
        guard sessions.count > Self.maxKept else { return }
        let exited = sessions.values.filter { $0.ended }.sorted { ($0.endedAt ?? 0) < ($1.endedAt ?? 0) }
        for s in exited.prefix(sessions.count - Self.maxKept) { s.forgetNow() }
    }

    /// 21 characters of [A-Za-z0-9_-] (a nanoid's shape), 126 random bits.
    static func newID() -> String {
        let alphabet = Array("useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict".utf8)
        return String(decoding: Random.bytes(21).map { alphabet[Int($0 & 63)] }, as: UTF8.self)
    }

    static func hex(_ b: [UInt8]) -> String {
        let d = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for x in b { out.append(d[Int(x >> 4)]); out.append(d[Int(x & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
    for i in 0..<a.count { diff |= a[i] ^ b[i % max(1, b.count)] }
    return diff == 0 && !b.isEmpty
}

final class PtySession: EventHandler, WebSocketEndpoint {
    static let backlogBytes = 1 << 20
    /// Clients attached to one session at once (each costs up to ≈ 2.4 MiB of queues).
    static let maxClients = 16
    static let inputBytes = 64 << 10
    static let killGraceMs: Int64 = 5_000
    /// A client that attached but never sent READY gets the output and the exit after this long anyway.
    static let readyWaitMs: Int64 = 2_000
    static let opData: UInt8 = 0x00, opResize: UInt8 = 0x01, opReady: UInt8 = 0x02, opExit: UInt8 = 0x03

    private struct Client {
        let ws: WebSocketPeer
        var ready: Bool
        var exitSent = false
    }

    unowned let sessions: PtySessions
    let id: String
    let token: [UInt8]
    let record: ProcessRecord
    let master: Int32
    let createdAt: Int64
    private(set) var rows: UInt16
    private(set) var cols: UInt16
    private var reg: Registration?
    private var masterClosed = false
    private var clients: [ObjectIdentifier: Client] = [:]
    private let backlog: PtyBacklog
    private var toPTY: [UInt8] = []
    private var toPTYStart = 0
    private var inputHeld = false
    private(set) var exited = false          // the leader was reaped
    private(set) var ended = false           // exit reported: master drained (or drain time over)
    private(set) var endedAt: Int64? = nil
    private var exitCode: Int32 = -1
    private var killed = false
    private var idleTimer: TimerID?
    private var drainTimer: TimerID?
    private var killTimer: TimerID?
    private var forgetTimer: TimerID?
    private var server: Server { sessions.server }
    private var queued: Int { toPTY.count - toPTYStart }

    init(sessions: PtySessions, id: String, token: [UInt8], record: ProcessRecord, master: Int32, rows: UInt16, cols: UInt16,
         backlog: PtyBacklog, createdAt: Int64 = Clock.wallMs()) {
        self.sessions = sessions; self.id = id; self.token = token; self.record = record; self.master = master
        self.rows = rows; self.cols = cols; self.backlog = backlog; self.createdAt = createdAt
        masterClosed = master < 0
    }

    func start() throws {
        if !masterClosed { reg = try server.loop.register(master, [.input], handler: self) }
        if record.isRunning { record.exitWaiters.append { [weak self] in self?.childExited() } }
        armIdle()
        if !record.isRunning { childExited() }     // adopted after a restart: it ended while we were down
    }

    /// What a restarted daemon needs to serve this session again (in the record's state file).
    var persistedState: JSONValue {
        .object([("session_id", .string(id)), ("token", .string(String(decoding: token, as: UTF8.self))),
                 ("rows", .int(Int64(rows))), ("cols", .int(Int64(cols))), ("created_at", .int(createdAt)),
                 ("killed", .bool(killed))])
    }

    /// The fds a re-executed image must get (named like the fd store's).
    var handOverFDs: [(Int32, String)] {
        var fds: [(Int32, String)] = []
        if !masterClosed { fds.append((master, Persistence.name(record.handle, "pty"))) }
        if let r = backlog.region { fds.append((r.fd, Persistence.name(record.handle, "ptyb"))) }
        return fds
    }

    var info: JSONValue {
        var o: [(String, JSONValue)] = [
            ("session_id", .string(id)), ("pid", .int(Int64(record.pid))), ("command", .string(record.spec.command)),
            ("args", .array(record.spec.args.map { .string($0) })), ("rows", .int(Int64(rows))), ("cols", .int(Int64(cols))),
            ("created_at", .int(createdAt)), ("is_alive", .bool(!ended)),
        ]
        if let endedAt { o.append(("ended_at", .int(endedAt))); o.append(("exit_code", .int(Int64(exitCode)))) }
        else { o.append(("ended_at", .null)); o.append(("exit_code", .null)) }
        return .object(o)
    }

    var backlogCount: Int { backlog.count }
    var clientCount: Int { clients.count }
    func markKilled() { killed = true }

    // MARK: control

    func resize(rows r: Int, cols c: Int) {
        rows = UInt16(min(max(r, 1), 500))
        cols = UInt16(min(max(c, 1), 1000))
        if !masterClosed { try? PTY.setSize(master, rows: rows, cols: cols) }
        server.markStateDirty(record)
    }

    /// DELETE or idle: SIGHUP to the tree (a terminal hang-up), SIGKILL after the grace.
    func terminate(reason: String) {
        guard !exited else { return }
        if !killed { server.log.info("msg=\"pty session terminated\" session=\(id) pid=\(record.pid) reason=\(reason)") }
        killed = true
        server.markStateDirty(record)
        server.ownership.signalTree(record, Signal.hup)
        if killTimer == nil {
            killTimer = server.loop.schedule(afterMs: Self.killGraceMs) { [weak self] in
                guard let self, !self.exited else { return }
                self.server.ownership.signalTree(self.record, Signal.kill)
            }
        }
    }

    private func armIdle() {
        server.loop.cancel(idleTimer); idleTimer = nil
        guard clients.isEmpty, !exited else { return }
        idleTimer = server.loop.schedule(afterMs: server.config.ptyIdleMs) { [weak self] in
            guard let self, self.clients.isEmpty else { return }
            self.terminate(reason: "idle")
        }
    }

    // MARK: clients

    func attach(_ ws: WebSocketPeer) {
        ws.endpoint = self
        do { try ws.start() } catch { ws.shut("register failed"); return }
        clients[ObjectIdentifier(ws)] = Client(ws: ws, ready: false)
        server.loop.cancel(idleTimer); idleTimer = nil
        server.log.debug("msg=\"pty client attached\" session=\(id) clients=\(clients.count)")
        // A client that never says READY still gets the output (and the exit) after a while.
        server.loop.schedule(afterMs: Self.readyWaitMs) { [weak self, weak ws] in
            guard let self, let ws else { return }
            self.markReady(ws)
        }
    }

    private func markReady(_ ws: WebSocketPeer) {
        let k = ObjectIdentifier(ws)
        guard var c = clients[k], !c.ready else { return }
        c.ready = true
        clients[k] = c
        if backlog.count > 0 {
            backlog.withBytes { ws.sendBinary(prefix: Self.opData, $0) }
            backlog.clear()
        }
        if ended { sendExit(k) }
        updateInterest()
    }

    private func sendExit(_ k: ObjectIdentifier) {
        guard var c = clients[k], !c.exitSent else { return }
        c.exitSent = true
        clients[k] = c
        // The exit frame also after a kill: the sync SDK's wait() learns an exit code from nothing else.
        let v = UInt32(bitPattern: exitCode)
        let frame: [UInt8] = [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
        frame.withUnsafeBytes { c.ws.sendBinary(prefix: Self.opExit, $0) }
        if killed { c.ws.close(code: WSClose.goingAway, reason: "session terminated") }
        else { c.ws.close(code: WSClose.normal, reason: "exit:\(exitCode)") }
    }

    var acceptsInput: Bool { queued <= Self.inputBytes }

    func webSocket(_ ws: WebSocketPeer, received event: WSEvent) {
        switch event {
        case .binary(let m):
            guard let op = m.first else { return }
            switch op {
            case Self.opData:
                guard !masterClosed, !exited, m.count > 1 else { return }
                toPTY.append(contentsOf: m[1...])
                writeMaster()
                if queued > Self.inputBytes { inputHeld = true }
            case Self.opResize:
                guard m.count >= 5 else { return }
                resize(rows: Int(m[3]) << 8 | Int(m[4]), cols: Int(m[1]) << 8 | Int(m[2]))
            case Self.opReady:
                markReady(ws)
            default:
                break    // unknown opcodes are ignored (newer clients may send more)
            }
        case .text:
            ws.close(code: WSClose.unsupportedData, reason: "text frames are not supported; send binary")
        case .ping, .pong, .close:
            break
        }
    }

    func webSocketDrained(_ ws: WebSocketPeer) {
        updateInterest()
        server.loop.defer_ { [weak self] in self?.readIfOpen() }
    }

    func webSocketClosed(_ ws: WebSocketPeer) {}

    func webSocketFinished(_ ws: WebSocketPeer) {
        clients[ObjectIdentifier(ws)] = nil
        server.log.debug("msg=\"pty client detached\" session=\(id) clients=\(clients.count)")
        armIdle()
        updateInterest()
        server.loop.defer_ { [weak self] in self?.readIfOpen() }
    }

    // MARK: the master

    private var readyClients: [WebSocketPeer] { clients.values.filter { $0.ready && !$0.ws.isClosed }.map { $0.ws } }

    private var canRead: Bool {
        if masterClosed { return false }
        let ready = readyClients
        if ready.isEmpty { return backlog.count < Self.backlogBytes }
        return ready.allSatisfy { $0.pendingOutput < WebSocketPeer.highWater }
    }

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        if events.contains(.output) { writeMaster() }
        if masterClosed { return }
        if events.contains(.input) { readMaster(force: false) }
        // No slave is open any more: what is left is bounded by the pty's buffer; take it and end.
        if !masterClosed && (events.contains(.hangup) || events.contains(.error)) { readMaster(force: true) }
    }

    private func readIfOpen() { if !masterClosed { readMaster(force: false) } }

    /// `force`: read whatever is there regardless of the clients' queues (at the end: bounded by the pty buffer).
    private func readMaster(force: Bool) {
        var reads = 0
        while !masterClosed && (force || canRead) && (force || reads < 4) {
            let r: IOResult
            do {
                r = try server.readBuffer.withUnsafeMutableBytes { raw in
                    try FD.read(master, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<(64 << 10)]))
                }
            } catch let e as SysError where e.errno == EIO_ {
                r = .eof      // the last slave holder is gone
            } catch {
                r = .eof
            }
            reads += 1
            switch r {
            case .bytes(let n):
                server.readBuffer.withUnsafeBytes { deliver(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                // A short read: the terminal is (very likely) empty; epoll says when there is more. Saves a read
                // that would only say EAGAIN on every keystroke's echo.
                if !force && n < (64 << 10) { updateInterest(); return }
            case .wouldBlock:
                updateInterest(); return
            case .eof:
                closeMaster()
                if exited { finish() }
                return
            }
            if force && reads > 64 { break }   // a descendant still writing: the drain timer ends it
        }
        updateInterest()
    }

    private func deliver(_ bytes: UnsafeRawBufferPointer) {
        let ready = readyClients
        if ready.isEmpty {
            backlog.append(bytes)
            return
        }
        for ws in ready { ws.sendBinary(prefix: Self.opData, bytes) }
    }

    private func writeMaster() {
        while queued > 0 && !masterClosed {
            let r: IOResult
            do {
                r = try toPTY.withUnsafeBytes { try FD.write(master, UnsafeRawBufferPointer(rebasing: $0[toPTYStart...])) }
            } catch {
                toPTY = []; toPTYStart = 0     // EIO: the terminal has no reader any more
                break
            }
            guard case .bytes(let n) = r else { break }
            toPTYStart += n
        }
        if queued == 0 { toPTY.removeAll(keepingCapacity: toPTY.capacity <= (64 << 10)); toPTYStart = 0 }
        if inputHeld && queued <= Self.inputBytes / 4 {
            inputHeld = false
            for c in clients.values { c.ws.resumeInput() }
        }
        updateInterest()
    }

    private func updateInterest() {
        guard let reg, !masterClosed else { return }
        var want: EpollEvents = []
        if canRead { want.insert(.input) }
        if queued > 0 { want.insert(.output) }
        server.loop.setInterest(reg, want)
    }

    private func closeMaster() {
        guard !masterClosed else { return }
        masterClosed = true
        if let reg { server.loop.deregister(reg) }
        reg = nil
        FD.close(master)
        server.persistence?.drop(record.handle, "pty")
        toPTY = []; toPTYStart = 0
    }

    // MARK: exit

    private func childExited() {
        exited = true
        server.loop.cancel(idleTimer); idleTimer = nil
        server.loop.cancel(killTimer); killTimer = nil
        switch record.status {
        case .exited(let c): exitCode = c
        case .signaled(let s): exitCode = 128 + s
        case .oomKilled: exitCode = 128 + 9
        case .running, .exitUnknown: exitCode = -1   // the frame needs a code; the record says "unknown"
        }
        if !masterClosed { readMaster(force: true) }
        if masterClosed { finish(); return }
        // A descendant still holds the terminal: give it the drain time, then end.
        drainTimer = server.loop.schedule(afterMs: server.config.drainMs) { [weak self] in
            guard let self else { return }
            if !self.masterClosed { self.readMaster(force: true) }
            self.closeMaster()
            self.finish()
        }
    }

    private func finish() {
        guard !ended else { return }
        ended = true
        endedAt = Clock.wallMs()
        server.loop.cancel(drainTimer); drainTimer = nil
        server.log.info("msg=\"pty session ended\" session=\(id) pid=\(record.pid) exit_code=\(exitCode) killed=\(killed)")
        for (k, c) in clients where c.ready { sendExit(k) }
        forgetTimer = server.loop.schedule(afterMs: server.config.ptyKeepExitedMs) { [weak self] in self?.forgetNow() }
    }

    func forgetNow() {
        server.loop.cancel(forgetTimer); forgetTimer = nil
        for c in clients.values { c.ws.close(code: WSClose.goingAway, reason: "session forgotten") }
        if backlog.region != nil { server.persistence?.drop(record.handle, "ptyb") }
        sessions.forget(self)
    }
}

/// The output kept for the first READY client (`PtySession.backlogBytes`, plus one read). With a state
/// directory it lives in a memfd that survives a crash (fd store) or an upgrade (handed to the new image),
/// laid out as `[count: UInt64][bytes]`: bytes are written before the count that covers them, so a crash
/// at any point leaves a consistent prefix. Without one, on the heap.
final class PtyBacklog {
    static let size = 8 + PtySession.backlogBytes + (64 << 10)
    let region: SharedRegion?
    private var heap: [UInt8] = []
    private(set) var dropped = 0

    init(region: SharedRegion?) { self.region = region }

    var capacity: Int { Self.size - 8 }

    var count: Int {
        guard let r = region else { return heap.count }
        return min(Int(r.bytes.load(fromByteOffset: 0, as: UInt64.self)), r.size - 8)
    }

    func append(_ b: UnsafeRawBufferPointer) {
        let n = min(b.count, capacity - count)
        dropped += b.count - n
        guard n > 0 else { return }
        guard let r = region else { heap.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[0..<n])); return }
        let at = 8 + count
        UnsafeMutableRawBufferPointer(rebasing: r.bytes[at..<(at + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: b[0..<n]))
        r.bytes.storeBytes(of: UInt64(at - 8 + n), toByteOffset: 0, as: UInt64.self)   // publish after the bytes
    }

    func withBytes(_ body: (UnsafeRawBufferPointer) -> Void) {
        guard let r = region else { heap.withUnsafeBytes(body); return }
        body(UnsafeRawBufferPointer(rebasing: r.bytes[8..<(8 + count)]))
    }

    func clear() {
        if let r = region { r.bytes.storeBytes(of: UInt64(0), toByteOffset: 0, as: UInt64.self) } else { heap = [] }
    }
}
