// Tunnel: TCP tunnels over WebSocket (`GET /api/v1/tunnels/tcp?port=N`, protocol.md §2.16). `Tunnels`
// owns every tunnel (the limit, the open requests, the live relays); a `TunnelRelay` owns one tunnelled
// TCP socket and its `WebSocketPeer`, and moves bytes between them on the loop.
//
// Opening: the request is checked (port, handshake), then a non-blocking connect to 127.0.0.1:N runs on the
// loop while the HTTP request waits (`.pending`); connected → 101 and the socket becomes a WebSocket;
// refused or timed out → 502 and nothing is upgraded.
//
// Relay, with back-pressure both ways:
// - TCP → client: read (256 KiB at a time) only while the WebSocket's queue is under its high watermark;
//   each read becomes one binary frame;
// - client → TCP: each binary message is written to the socket; what it does not take is queued, and
//   above `highWater` the WebSocket stops parsing frames until the queue drains to `lowWater`.
// Ends: the sandbox side closing (EOF) first delivers the bytes read before it, then close 1000; the client
//   closing (its close frame, or its socket ending) first writes what was queued for the sandbox side
//   (bounded by `drainMs`), then closes the TCP socket. Text frames get close 1003.
// Memory per tunnel: ≤ 1 MiB + 14 unparsed client bytes, ≤ 1 MiB of a message being assembled,
// ≤ highWater + 1 MiB queued for the sandbox side, ≤ WebSocketPeer.highWater + 256 KiB queued for the client.
import Sys
import Reactor
import HTTP1

final class Tunnels {
    unowned let server: Server
    private(set) var relays: [ObjectIdentifier: TunnelRelay] = [:]
    private var connecting = 0
    static let connectTimeoutMs: Int64 = 10_000

    init(server: Server) { self.server = server }

    var count: Int { relays.count + connecting }

    /// The route handler: checks the request, starts the connect, answers later.
    func open(head: HTTPRequestHead, connection: Connection) -> Outcome {
        let q = parseQuery(head.query ?? "")
        let ports = q.filter { $0.name == "port" }
        guard ports.count == 1, let port = UInt16(ports[0].value), port > 0 else {
            return .error(.invalid("query parameter port must be one integer in 1..65535"))
        }
        let accept: String
        switch WebSocketHandshake.validate(head) {
        case .success(let a): accept = a
        case .failure(let e): return handshakeError(e)
        }
        guard count < server.config.maxConnections else {
            return .error(APIError(503, "LIMIT_REACHED", "too many tunnels (\(count))"))
        }
        let fd: Int32
        do { fd = try Socket.startConnect(host: "127.0.0.1", port: port) } catch {
            return .error(APIError(502, "CONNECT_FAILED", "nothing accepts connections on 127.0.0.1:\(port) (\(error))"))
        }
        let pending = PendingConnect(tunnels: self, fd: fd, port: port, accept: accept, connection: connection)
        do { try pending.start() } catch {
            FD.close(fd)
            return .error(APIError(500, "INTERNAL_ERROR", "\(error)"))
        }
        connecting += 1
        return .pending
    }

    fileprivate func connectFinished(_ p: PendingConnect, error: String?) {
        connecting -= 1
        guard let c = p.connection, !c.closed else {
            FD.close(p.fd)            // the client left while we connected
            return
        }
        if let error {
            FD.close(p.fd)
            c.complete(.error(APIError(502, "CONNECT_FAILED", "nothing accepts connections on 127.0.0.1:\(p.port) (\(error))")))
            return
        }
        let fd = p.fd, port = p.port
        c.complete(.upgrade({ [self] wsFD, leftover, queued in
            let ws = WebSocketPeer(server: server, fd: wsFD, label: "tunnel", leftover: leftover,
                                   prefix: queued + WebSocketHandshake.response(accept: p.accept))
            let relay = TunnelRelay(tunnels: self, fd: fd, port: port, ws: ws)
            do {
                try relay.start()
                try ws.start()
            } catch {
                relay.closeTCP(); ws.shut("register failed"); return
            }
            relays[ObjectIdentifier(relay)] = relay
            server.log.info("msg=\"tunnel open\" port=\(port) tunnels=\(relays.count)")
        }))
    }

    func relayEnded(_ r: TunnelRelay) {
        relays[ObjectIdentifier(r)] = nil
        server.log.info("msg=\"tunnel closed\" port=\(r.port) to_sandbox=\(r.bytesIn) from_sandbox=\(r.bytesOut) tunnels=\(relays.count)")
    }
}

/// The answer to a request that cannot be upgraded: 426 carries the version tendd speaks.
func handshakeError(_ e: HTTPParseError) -> Outcome {
    let err = APIError(e.status, e.code, e.message)
    if e.status == 426 { return .response(426, err.json, [("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")]) }
    return .error(err)
}

/// A connect in progress: writable → ask SO_ERROR.
private final class PendingConnect: EventHandler {
    unowned let tunnels: Tunnels
    let fd: Int32
    let port: UInt16
    let accept: String
    weak var connection: Connection?
    private var reg: Registration?
    private var timer: TimerID?
    private var done = false

    init(tunnels: Tunnels, fd: Int32, port: UInt16, accept: String, connection: Connection) {
        self.tunnels = tunnels; self.fd = fd; self.port = port; self.accept = accept; self.connection = connection
    }

    func start() throws {
        let loop = tunnels.server.loop
        reg = try loop.register(fd, [.output], handler: self)
        timer = loop.schedule(afterMs: Tunnels.connectTimeoutMs) { [self] in finish("connect timed out") }
    }

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        finish(Socket.pendingError(fd).map { "\($0)" })
    }

    private func finish(_ error: String?) {
        guard !done else { return }
        done = true
        let loop = tunnels.server.loop
        loop.cancel(timer); timer = nil
        if let reg { loop.deregister(reg) }
        reg = nil
        tunnels.connectFinished(self, error: error)
    }
}

final class TunnelRelay: EventHandler, WebSocketEndpoint {
    static let highWater = 256 << 10
    static let lowWater = 64 << 10
    /// One read of the tunnelled socket, sent as one frame: the whole shared read buffer (256 KiB), like the
    /// raw relay it is measured against (fewer syscalls and frames per MiB than 64 KiB reads).
    static let readBytes = 256 << 10
    static let drainMs: Int64 = 10_000

    unowned let tunnels: Tunnels
    let fd: Int32
    let port: UInt16
    let ws: WebSocketPeer
    private var reg: Registration?
    private var toTCP: [UInt8] = []
    private var toTCPStart = 0
    private var tcpEOF = false
    private var tcpClosed = false
    private var wsEnded = false
    private var drainTimer: TimerID?
    private var inputHeld = false    // the WebSocket was told to stop parsing (toTCP over highWater)
    private(set) var bytesIn = 0     // client → sandbox side
    private(set) var bytesOut = 0    // sandbox side → client
    private var server: Server { tunnels.server }
    private var queued: Int { toTCP.count - toTCPStart }

    init(tunnels: Tunnels, fd: Int32, port: UInt16, ws: WebSocketPeer) {
        self.tunnels = tunnels; self.fd = fd; self.port = port; self.ws = ws
        ws.endpoint = self
    }

    func start() throws {
        reg = try server.loop.register(fd, [.input, .readHangup], handler: self)
    }

    // MARK: sandbox side (TCP)

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        if events.contains(.output) { writeTCP() }
        if tcpClosed { return }
        if events.contains(.input) || events.contains(.readHangup) { readTCP() }
        if tcpClosed { return }
        if events.contains(.error) || events.contains(.hangup) && !events.contains(.input) {
            tcpFailed("hangup")
        }
    }

    private func readTCP() {
        var reads = 0
        while !tcpEOF && !tcpClosed && ws.pendingOutput < WebSocketPeer.highWater && reads < 4 {
            let r: IOResult
            do {
                r = try server.readBuffer.withUnsafeMutableBytes { raw in
                    try FD.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<Self.readBytes]))
                }
            } catch { tcpFailed("read: \(error)"); return }
            reads += 1
            switch r {
            case .bytes(let n):
                bytesOut += n
                server.readBuffer.withUnsafeBytes { ws.sendBinary(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                if n < Self.readBytes { updateInterest(); return }
            case .wouldBlock:
                updateInterest(); return
            case .eof:
                // The sandbox side is done sending: its last bytes are queued ahead of the close.
                tcpEOF = true
                ws.close(code: WSClose.normal, reason: "")
                if queued == 0 && wsEnded { closeTCP() } else { updateInterest() }
                return
            }
        }
        updateInterest()
    }

    private func writeTCP() {
        while queued > 0 {
            let n: Int
            do {
                n = try toTCP.withUnsafeBytes { try Socket.send(fd, UnsafeRawBufferPointer(rebasing: $0[toTCPStart...])) }
            } catch { tcpFailed("write: \(error)"); return }
            if n == 0 { break }
            toTCPStart += n
            bytesIn += n
        }
        if queued == 0 {
            toTCP.removeAll(keepingCapacity: toTCP.capacity <= (256 << 10)); toTCPStart = 0
            if wsEnded { closeTCP(); return }
        } else if toTCPStart > (256 << 10) {
            toTCP.removeSubrange(0..<toTCPStart); toTCPStart = 0
        }
        if inputHeld && queued <= Self.lowWater { inputHeld = false; ws.resumeInput() }
        updateInterest()
    }

    private func updateInterest() {
        guard let reg, !tcpClosed else { return }
        var want: EpollEvents = []
        if !tcpEOF && !wsEnded && ws.pendingOutput < WebSocketPeer.highWater { want.insert(.input); want.insert(.readHangup) }
        if queued > 0 { want.insert(.output) }
        server.loop.setInterest(reg, want)
    }

    /// The sandbox side failed (reset, error): tell the client and stop.
    private func tcpFailed(_ why: String) {
        server.log.debug("msg=\"tunnel socket failed\" port=\(port) error=\(Log.q(why))")
        toTCP = []; toTCPStart = 0
        ws.close(code: WSClose.internalError, reason: "tunnelled connection failed")
        closeTCP()
    }

    func closeTCP() {
        guard !tcpClosed else { return }
        tcpClosed = true
        server.loop.cancel(drainTimer); drainTimer = nil
        if let reg { server.loop.deregister(reg) }
        reg = nil
        FD.close(fd)
        if !ws.isClosed { ws.close(code: WSClose.normal, reason: "") }
        maybeEnded()
    }

    private var ended = false
    private func maybeEnded() {
        guard tcpClosed && ws.isClosed && !ended else { return }
        ended = true
        tunnels.relayEnded(self)
    }

    // MARK: client side (WebSocketEndpoint)

    var acceptsInput: Bool { !tcpClosed && queued <= Self.highWater }

    func webSocket(_ ws: WebSocketPeer, received event: WSEvent) {
        switch event {
        case .binary(let bytes):
            guard !tcpClosed, !bytes.isEmpty else { return }
            toTCP.append(contentsOf: bytes)
            writeTCP()
            if queued > Self.highWater { inputHeld = true }
        case .text:
            ws.close(code: WSClose.unsupportedData, reason: "text frames are not supported; send binary")
        case .ping, .pong, .close:
            break
        }
    }

    func webSocketDrained(_ ws: WebSocketPeer) {
        guard !tcpClosed else { return }
        updateInterest()
        server.loop.defer_ { [weak self] in self?.readTCPIfOpen() }
    }

    func webSocketFinished(_ ws: WebSocketPeer) { maybeEnded() }

    private func readTCPIfOpen() { if !tcpClosed && !tcpEOF { readTCP() } }

    func webSocketClosed(_ ws: WebSocketPeer) {
        wsEnded = true
        if tcpClosed { return }
        // No more bytes for the sandbox side: write what is queued, then close (bounded in time).
        if queued == 0 { closeTCP(); return }
        drainTimer = server.loop.schedule(afterMs: Self.drainMs) { [weak self] in self?.closeTCP() }
        updateInterest()
    }
}
