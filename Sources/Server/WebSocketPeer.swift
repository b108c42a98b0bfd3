// WebSocketPeer: the WebSocket connection kind. After a 101 the HTTP `Connection` hands over its socket
// (and any bytes it had read past the request head); this object owns it from then on: it reads and parses
// frames (HTTP1's codec), answers pings, runs the closing handshake, and writes frames from a bounded
// queue. What the messages mean belongs to its `endpoint` (a TCP tunnel, a PTY session).
//
// Back-pressure, both ways:
// - towards the client: `pendingOutput` is the queue; an endpoint stops producing above `highWater` and
//   is told `webSocketDrained` when the queue fell to `lowWater` (so it resumes reading its own fd);
// - from the client: while `endpoint.acceptsInput` is false no frame is parsed and the socket is not read
//   (the unparsed bytes stay, at most one frame + one read); the endpoint calls `resumeInput()`.
//
// States: .open -> .closeSent (our close frame is queued; waiting for the peer's, at most `closeWaitMs`)
//         -> closed.  A close from the peer is answered and the socket closes once the answer is written.
import Sys
import Reactor
import HTTP1

protocol WebSocketEndpoint: AnyObject {
    /// A complete data message (text or binary).
    func webSocket(_ ws: WebSocketPeer, received event: WSEvent)
    /// The output queue fell to the low watermark: produce more.
    func webSocketDrained(_ ws: WebSocketPeer)
    /// The peer sent its close frame or broke the protocol (no more messages will come), or the socket
    /// ended: called once, at the first of these.
    func webSocketClosed(_ ws: WebSocketPeer)
    /// The socket is closed (called once, after `webSocketClosed`).
    func webSocketFinished(_ ws: WebSocketPeer)
    /// False: stop reading frames until `resumeInput()`.
    var acceptsInput: Bool { get }
}

final class WebSocketPeer: EventHandler {
    enum State { case open, closeSent, closed }

    /// Largest frame and message accepted from a client (a bigger one gets close 1009).
    static let maxMessageBytes = 1 << 20
    /// Output queue bounds (bytes framed and not yet written).
    static let highWater = 256 << 10
    static let lowWater = 64 << 10
    /// How long to wait for the peer's close frame (or for our last bytes to leave) before closing anyway.
    static let closeWaitMs: Int64 = 2000

    unowned let server: Server
    let fd: Int32
    let label: String
    weak var endpoint: WebSocketEndpoint?
    private var reg: Registration?
    private(set) var state: State = .open
    private var inBuf: [UInt8]
    private var inStart = 0
    private var out: [UInt8]
    private var outStart = 0
    private var assembler = WSMessageAssembler(maxMessageBytes: WebSocketPeer.maxMessageBytes)
    private var peerEOF = false
    private var sawHangup = false
    private var writeBlocked = false
    private var flushQueued = false
    private var closeAfterFlush = false
    private var closeTimer: TimerID?
    private var aboveHighWater = false
    private var notifiedClosed = false
    /// After a protocol error or the peer's close frame nothing more is parsed.
    private var discardInput = false
    /// Last time the client took a byte from us or sent one (the server's tick closes a stalled peer).
    private(set) var lastProgress: Int64

    var pendingOutput: Int { out.count - outStart }
    private var unconsumed: Int { inBuf.count - inStart }
    var isClosed: Bool { state == .closed }

    /// Takes over `fd` (already registered nowhere) with the bytes the HTTP layer read past the head and
    /// the output it had queued; queues `prefix` (the 101 response) first.
    init(server: Server, fd: Int32, label: String, leftover: [UInt8], prefix: [UInt8]) {
        self.server = server
        self.fd = fd
        self.label = label
        inBuf = leftover
        out = prefix
        lastProgress = server.loop.now
    }

    func start() throws {
        reg = try server.loop.register(fd, [.input, .readHangup], handler: self)
        scheduleFlush()
        if unconsumed > 0 { server.loop.defer_ { [weak self] in self?.parseFrames() } }
    }

    // MARK: sending

    func sendBinary(_ a: UnsafeRawBufferPointer) {
        sendFrame(prefix: nil, a)
    }

    /// A binary message whose payload is `prefix` then `body` (the PTY's opcode byte + data).
    func sendBinary(prefix: UInt8, _ body: UnsafeRawBufferPointer) {
        sendFrame(prefix: prefix, body)
    }

    /// One binary frame. With nothing queued it goes straight from the caller's buffer to the socket in one
    /// gather write (header, payload); only what the socket does not take is copied into the queue. (Through
    /// the queue, a tunnel's relay CPU per MiB was 1.6× the raw relay's: one more copy of every byte.)
    private func sendFrame(prefix: UInt8?, _ body: UnsafeRawBufferPointer) {
        guard state == .open else { return }
        var head: [UInt8] = []
        encodeWebSocketFrameHeader(.binary, payloadLength: (prefix == nil ? 0 : 1) + body.count, into: &head)
        if let prefix { head.append(prefix) }
        var sent = 0
        if pendingOutput == 0 && !writeBlocked {
            let empty = UnsafeRawBufferPointer(start: nil, count: 0)
            do {
                sent = try head.withUnsafeBytes { try Socket.send(fd, $0, body, empty, empty) }
            } catch { shut("write error"); return }
            if sent > 0 { lastProgress = server.loop.now }
        }
        head.withUnsafeBytes { h in
            var skip = sent
            for part in [h, body] {
                if skip >= part.count { skip -= part.count; continue }
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: part[skip...]))
                skip = 0
            }
        }
        if pendingOutput >= Self.highWater { aboveHighWater = true }
        if pendingOutput > 0 { scheduleFlush() }
    }

    /// Starts the closing handshake (after everything queued so far).
    func close(code: UInt16, reason: String) {
        guard state == .open else { return }
        encodeWebSocketClose(code: code, reason: reason, into: &out)
        state = .closeSent
        closeTimer = server.loop.schedule(afterMs: Self.closeWaitMs) { [weak self] in self?.shut("close timeout") }
        scheduleFlush()
        updateInterest()
    }

    private func scheduleFlush() {
        guard !flushQueued, state != .closed else { return }
        flushQueued = true
        server.loop.defer_ { [weak self] in
            guard let self else { return }
            self.flushQueued = false
            self.flush()
        }
    }

    // MARK: events

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        if events.contains(.output) { flush() }
        if state == .closed { return }
        if events.contains(.input) { readAvailable() }
        else if events.contains(.readHangup) { sawHangup = true; updateInterest() }   // paused: read it later
        if state == .closed { return }
        if events.contains(.error) || (events.contains(.hangup) && !events.contains(.input)) { shut("hangup"); return }
    }

    func resumeInput() {
        guard state != .closed else { return }
        server.loop.defer_ { [weak self] in
            guard let self, self.state != .closed else { return }
            self.parseFrames()
            self.updateInterest()
        }
    }

    private var wantsInput: Bool {
        state != .closed && !peerEOF && (endpoint?.acceptsInput ?? true) && unconsumed <= Self.maxMessageBytes + 14
    }

    private func readAvailable() {
        var reads = 0
        while wantsInput && reads < 4 {
            if inStart > 0 && inStart == inBuf.count { inBuf.removeAll(keepingCapacity: true); inStart = 0 }
            let r: IOResult
            do {
                r = try server.readBuffer.withUnsafeMutableBytes { raw in
                    try FD.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<(64 << 10)]))
                }
            } catch { shut("read error"); return }
            reads += 1
            switch r {
            case .bytes(let n):
                inBuf.append(contentsOf: server.readBuffer[0..<n])
                lastProgress = server.loop.now
                parseFrames()
                if state == .closed { return }
                if n < 64 << 10 { updateInterest(); return }
            case .wouldBlock:
                updateInterest(); return
            case .eof:
                peerEOF = true
                parseFrames()
                // The client went away (with or without its close frame): nothing more can be said to it.
                shut(state == .closeSent ? nil : "eof without close")
                return
            }
        }
        updateInterest()
    }

    private func parseFrames() {
        if discardInput { inStart = inBuf.count; compact(); return }
        while state != .closed && (endpoint?.acceptsInput ?? true) && unconsumed > 0 {
            let r = inBuf.withUnsafeBytes { raw in
                parseWebSocketFrame(UnsafeRawBufferPointer(rebasing: raw[inStart...]), maxPayload: Self.maxMessageBytes)
            }
            switch r {
            case .incomplete:
                compact(); return
            case .invalid(let e):
                protocolError(e); return
            case .complete(let f, let consumed):
                inStart += consumed
                switch assembler.push(f) {
                case .failure(let e): protocolError(e); return
                case .success(nil): continue
                case .success(let ev?): dispatch(ev)
                }
                if discardInput { inStart = inBuf.count; break }
            }
        }
        compact()
    }

    private func compact() {
        if inStart == inBuf.count { inBuf.removeAll(keepingCapacity: inBuf.capacity <= (128 << 10)); inStart = 0 }
        else if inStart > (64 << 10) { inBuf.removeSubrange(0..<inStart); inStart = 0 }
    }

    private func dispatch(_ ev: WSEvent) {
        switch ev {
        case .ping(let p):
            if state == .open { encodeWebSocketFrame(.pong, payload: p, into: &out); scheduleFlush() }
        case .pong:
            break
        case .close(let code, _):
            if state == .open {
                // Echo the code (RFC 6455 §5.5.1); no code: a normal close.
                encodeWebSocketClose(code: code ?? WSClose.normal, reason: "", into: &out)
            }
            state = .closeSent
            closeAfterFlush = true
            discardInput = true
            inStart = inBuf.count
            notifyClosed()
            if closeTimer == nil { closeTimer = server.loop.schedule(afterMs: Self.closeWaitMs) { [weak self] in self?.shut("close timeout") } }
            scheduleFlush()
        case .text, .binary:
            if state == .open { endpoint?.webSocket(self, received: ev) }
        }
    }

    private func protocolError(_ e: WSProtocolError) {
        server.log.info("msg=\"websocket protocol error\" kind=\(label) code=\(e.code) detail=\(Log.q(e.reason))")
        discardInput = true
        inStart = inBuf.count
        if state == .open {
            encodeWebSocketClose(code: e.code, reason: e.reason, into: &out)
            state = .closeSent
        }
        closeAfterFlush = true
        notifyClosed()
        if closeTimer == nil { closeTimer = server.loop.schedule(afterMs: Self.closeWaitMs) { [weak self] in self?.shut("close timeout") } }
        scheduleFlush()
        updateInterest()
    }

    // MARK: output

    func flush() {
        guard state != .closed else { return }
        while outStart < out.count {
            let n: Int
            do {
                n = try out.withUnsafeBytes { try Socket.send(fd, UnsafeRawBufferPointer(rebasing: $0[outStart...])) }
            } catch { shut("write error"); return }
            if n == 0 { break }
            outStart += n
            lastProgress = server.loop.now
        }
        writeBlocked = outStart < out.count
        if writeBlocked && stallTimer == nil { armStallCheck() }
        if !writeBlocked {
            out.removeAll(keepingCapacity: out.capacity <= (512 << 10))
            outStart = 0
            if closeAfterFlush { shut(nil); return }
        } else if outStart > (256 << 10) {
            out.removeSubrange(0..<outStart); outStart = 0
        }
        if pendingOutput >= Self.highWater { aboveHighWater = true }
        else if aboveHighWater && pendingOutput <= Self.lowWater {
            aboveHighWater = false
            if state == .open { endpoint?.webSocketDrained(self) }
        }
        updateInterest()
    }

    private func updateInterest() {
        guard let reg, state != .closed else { return }
        var want: EpollEvents = []
        if wantsInput { want.insert(.input) }
        if !sawHangup && !peerEOF { want.insert(.readHangup) }
        if wantsInput { want.insert(.readHangup) }
        if writeBlocked { want.insert(.output) }
        server.loop.setInterest(reg, want)
    }

    /// Hardening (like SSE streams): a client that took no byte for `--idle-timeout-ms` while output was
    /// queued has stopped reading for good; it is dropped, which frees its queue and its session's back-pressure.
    private var stallTimer: TimerID?
    private func armStallCheck() {
        let idle = server.config.idleTimeoutMs
        stallTimer = server.loop.schedule(afterMs: max(1, lastProgress + idle - server.loop.now)) { [weak self] in
            guard let self, self.state != .closed else { return }
            self.stallTimer = nil
            guard self.pendingOutput > 0 else { return }
            if self.server.loop.now - self.lastProgress >= idle {
                self.server.log.info("msg=\"websocket reader stalled, closing\" kind=\(self.label) queued=\(self.pendingOutput)")
                self.shut("stalled reader")
            } else {
                self.armStallCheck()
            }
        }
    }

    private func notifyClosed() {
        guard !notifiedClosed else { return }
        notifiedClosed = true
        endpoint?.webSocketClosed(self)
    }

    /// Closes the socket now (reason nil: an orderly end).
    func shut(_ reason: String?) {
        guard state != .closed else { return }
        state = .closed
        if let reason { server.log.debug("msg=\"websocket closed\" kind=\(label) reason=\(Log.q(reason))") }
        server.loop.cancel(closeTimer); closeTimer = nil
        server.loop.cancel(stallTimer); stallTimer = nil
        if let reg { server.loop.deregister(reg) }
        reg = nil
        FD.close(fd)
        out = []; inBuf = []
        notifyClosed()
        endpoint?.webSocketFinished(self)
    }
}
