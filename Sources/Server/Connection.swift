// Connection: one HTTP/1.1 client. Reads requests (keep-alive, pipelining: one request in flight,
// answered in order), reads bodies (Content-Length or chunked, streamed into a sink with
// back-pressure), writes responses from a bounded output queue, and hosts at most one SSE stream.
//
// The connection machine (State):
//   readingHead      waiting for / parsing a request head (header deadline, idle timeout)
//   readingBody      a body is streamed into its sink (idle timeout per stalled body; stdin back-pressure)
//   awaitingHandler  the handler answers later (DELETE, restart, stdin): no timeout applies here, the
//                    handler bounds its own wait; the peer leaving is noticed and the answer dropped
//   streaming        an SSE or raw stream: the peer's close (EPOLLRDHUP, a 0-byte read, RST) is watched
//                    whether or not there is output to write, and ends the stream (a run's tree dies)
//   closing          the last response is being flushed, then the fd closes (close timeout)
// readingHead -> readingBody -> awaitingHandler -> readingHead | streaming | closing; streaming ->
// readingHead | closing. While a response or a stream is being produced no further request is parsed;
// bytes of a pipelined request wait in the input buffer.
//
// Closing is two steps: `close(reason:)` takes the fd out of epoll and detaches the stream at once; the fd
// is closed and the server drops the connection in the loop's deferred phase, so a handler (a follower
// pumping, a waiter answering) that caused the close is never running on a freed connection.
//
// No weak references on the request path (issue 17): a weakly referenced object keeps its reference
// counts in a side table, and every retain/release of it takes the slow path (8 % of an /info profile).
// Deferred work captures the connection strongly, for at most one loop turn, and checks `closed` first;
// a request answered inside `process()` needs no deferred call at all (its loop parses the next one).
// The server is held strongly too (an `unowned` reference costs a checked retain on every access); the
// cycle ends when the server drops the closed connection.
import Sys
import Reactor
import HTTP1
import JSON
import Supervision

final class Connection: EventHandler {
    enum State { case readingHead, readingBody, awaitingHandler, streaming, closing }
    enum BodySink { case buffer, discard, stdin(StdinSink), file(FileUpload) }   // files: .file (Files.swift)

    let server: Server
    /// The socket and its registration: out of epoll at `close(reason:)`, closed in the deferred phase.
    var io: WatchedFD
    var fd: Int32 { io.fd }
    private(set) var state: State = .readingHead
    private(set) var closed = false
    /// In the server's list of connections to flush before the loop sleeps (`Server.markDirty`).
    var dirty = false
    /// `process()` is on the stack: an answer given now is followed by the next request without deferring.
    private var processing = false

    private var inBuf: [UInt8] = []
    private var inStart = 0
    private var out: [UInt8] = []
    private var outStart = 0
    private var peerClosed = false
    private var writeBlocked = false
    private var closeAfterFlush = false
    private var headStartedAt: Int64? = nil
    private(set) var lastActivity: Int64
    private(set) var lastWriteAt: Int64
    private let acceptedAt: Int64
    private var servedAny = false

    // The request in flight.
    private var head: HTTPRequestHead?
    /// The request's keep-alive, kept apart from `head`: a stream drops the head (see releaseRequestStorage).
    private var keepAlive = false
    private var route: Route?
    private var requestStartedAt: Int64 = 0
    private(set) var requestStartedNs: Int64 = 0   // metrics: request durations and start latency
    private var contentRemaining = 0
    /// perf(memory): boxed, so that a connection carries 8 bytes for it, not the decoder's 104, when the
    /// request is not chunked (nearly always; and never while a stream holds the connection).
    private var chunked: ChunkedBody?
    private var sink: BodySink = .discard
    private var body: [UInt8] = []
    private var scratch: [UInt8] = []
    private var paused = false
    var follower: StreamProducer?
    // files: a fixed-length streaming body (no chunk framing, no SSE keep-alive) and a producer that
    // writes straight to the socket (sendfile) and waits for EPOLLOUT with nothing queued.
    private var fixedBody = false
    private var wantWritable = false
    // files: a refused or failed upload is answered before its body was read; closing then (unread input)
    // would send an RST that can destroy the answer in the client's buffer (the SDK then reports
    // "connection reset" instead of the error). Instead: shut down writing, discard input until the client
    // closes, at most `lingerMs` / `lingerBytes`, then close.
    private var bodyStatus = 200
    private var lingerOnClose = false
    private var lingerDeadline: Int64? = nil
    private var lingerDiscarded = 0
    private static let lingerMs: Int64 = 2000
    private static let lingerBytes = 64 << 20

    init(server: Server, fd: Int32) {
        self.server = server
        io = WatchedFD(fd, loop: server.loop)
        lastActivity = server.loop.now
        lastWriteAt = server.loop.now
        acceptedAt = server.loop.now
    }

    var pendingOutput: Int { out.count - outStart }
    private var unconsumed: Int { inBuf.count - inStart }

    // MARK: events

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        if lingerDeadline != nil { return linger() }   // files: discarding a refused upload's body
        // A stream's reader left (FIN: EPOLLRDHUP, even while its bytes have no room to be read).
        if state == .streaming && events.contains(.readHangup) { close(reason: "peer closed the stream"); return }
        if events.contains(.input) || events.contains(.readHangup) { readAvailable() }
        if closed { return }
        if peerClosed && state == .streaming { close(reason: "peer closed the stream"); return }
        if events.contains(.output) { flush() }
        if closed { return }
        if events.contains(.error) || (events.contains(.hangup) && !events.contains(.input)) { close(reason: "hangup"); return }
        process()
    }

    private func readAvailable() {
        let maxBuffered = server.config.maxHeaderBytes + (64 << 10)
        while unconsumed < maxBuffered && !peerClosed {
            if inStart > 0 && inStart == inBuf.count { inBuf.removeAll(keepingCapacity: true); inStart = 0 }
            let r: IOResult
            do {
                r = try server.readBuffer.withUnsafeMutableBytes { raw in
                    try FD.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<min(raw.count, 64 << 10)]))
                }
            } catch {
                close(reason: "read error"); return
            }
            switch r {
            case .bytes(let n):
                if unconsumed == 0 && state == .readingHead { headStartedAt = server.loop.now }
                inBuf.append(contentsOf: server.readBuffer[0..<n])
                lastActivity = server.loop.now
                if n < 16 << 10 { updateInterest(); return }   // a short read: the socket is (very likely) drained
            case .wouldBlock:
                updateInterest(); return
            case .eof:
                peerClosed = true
            }
        }
        updateInterest()
    }

    /// Reads while there is room and the state wants input; writes interest while output is blocked.
    private func updateInterest() {
        guard !closed else { return }
        var want: EpollEvents = []
        let maxBuffered = server.config.maxHeaderBytes + (64 << 10)
        if !peerClosed && unconsumed < maxBuffered { want.insert(.input) }
        // The peer's close is watched in every state, with or without room for its bytes.
        if !peerClosed { want.insert(.readHangup) }
        // EPOLLOUT only after a write would have blocked; queued output is otherwise written in the
        // loop's before-sleep phase without an epoll_ctl round trip.
        if writeBlocked && pendingOutput > 0 { want.insert(.output) }
        if wantWritable { want.insert(.output) }   // files: a sendfile producer waits for room
        io.setInterest(want)
    }

    // MARK: request processing

    /// Parses and handles as many buffered requests as the state allows.
    func process() {
        processing = true
        defer { processing = false }
        while !closed {
            switch state {
            case .readingHead:
                if pendingOutput >= server.config.writeHighWater { return }    // let the client catch up first
                if unconsumed == 0 {
                    if peerClosed { closeAfterFlush = true; flushOrClose() }
                    compact(); return
                }
                let result = inBuf.withUnsafeBytes { raw in
                    parseRequestHead(UnsafeRawBufferPointer(rebasing: raw[inStart...]), limits: server.httpLimits)
                }
                switch result {
                case .incomplete:
                    if peerClosed { close(reason: "eof mid-request") }
                    compact(); return
                case .invalid(let e):
                    let err = APIError(e.status, e.code, e.message)
                    server.log.info("msg=\"bad request\" status=\(e.status) code=\(e.code) detail=\(Log.q(e.message))")
                    sendError(err, close: true)
                    return
                case .complete(let h, let consumed):
                    inStart += consumed
                    headStartedAt = nil
                    begin(h)
                }
            case .readingBody:
                if paused { return }
                readBody()
                if state == .readingBody { compact(); return }
            case .awaitingHandler, .streaming, .closing:
                return
            }
        }
    }

    private func compact() {
        if inStart == inBuf.count { inBuf.removeAll(keepingCapacity: inBuf.capacity <= 65536); inStart = 0 }
        else if inStart > 32768 { inBuf.removeSubrange(0..<inStart); inStart = 0 }
        updateInterest()
    }

    private func begin(_ h: HTTPRequestHead) {
        head = h
        keepAlive = h.keepAlive
        requestStartedAt = server.loop.now   // this turn's clock (read after epoll_wait): no clock read per request
        if server.metrics != nil { requestStartedNs = Clock.monotonicNs() }   // metrics: request start
        body.removeAll(keepingCapacity: true)
        guard server.authorized(h) else { return finishEarly(.unauthorized) }
        let r: Route
        switch Router.route(method: h.method, path: h.path) {
        case .success(let x): r = x
        case .failure(let e): return finishEarly(e)
        }
        lingerOnClose = r.bodyKind == .file   // files: see `linger()`
        route = r
        // Where the body goes.
        switch r.bodyKind {
        case .json: sink = .buffer
        case .none: sink = .discard
        case .stdin:
            switch server.stdinTarget(r) {
            case .success(let s): sink = .stdin(s)
            case .failure(let e): return finishEarly(e)
            }
        case .file:   // files: the upload's temporary file is created before the body is read
            switch server.beginUpload(h) {
            case .success(let u): sink = .file(u)
            case .failure(let e): return finishEarly(e)
            }
        }
        switch h.framing {
        case .none:
            contentRemaining = 0; chunked = nil
        case .contentLength(let n):
            if case .buffer = sink, n > server.config.maxBodyBytes {
                return finishEarly(APIError(413, "BODY_TOO_LARGE", "request body of \(n) bytes exceeds the limit of \(server.config.maxBodyBytes) bytes"))
            }
            contentRemaining = n; chunked = nil
        case .chunked:
            let limit: Int
            switch sink {   // files: an upload, like stdin, has no body limit
            case .stdin, .file: limit = Int.max
            case .buffer, .discard: limit = server.config.maxBodyBytes
            }
            chunked = ChunkedBody(ChunkedDecoder(maxBodyBytes: limit))
            contentRemaining = 0
        }
        if h.expectsContinue && h.framing != .none && h.framing != .contentLength(0) {
            out.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
            server.markDirty(self)
        }
        state = .readingBody
    }

    /// An error before the body was read: answer, and close if a body may follow (we did not read it).
    private func finishEarly(_ e: APIError) {
        let hasBody = head.map { $0.framing != .none && $0.framing != .contentLength(0) } ?? false
        sendError(e, close: hasBody || !keepAlive)
    }

    private func readBody() {
        if let box = chunked {
            while chunked === box {
                scratch.removeAll(keepingCapacity: true)
                let (consumed, result) = inBuf.withUnsafeBytes { raw in
                    box.decoder.decode(UnsafeRawBufferPointer(rebasing: raw[inStart...]), into: &scratch)
                }
                inStart += consumed
                if !scratch.isEmpty { deliver(scratch) }
                if closed || state != .readingBody { return }   // files: a failed upload answered already
                switch result {
                case .done: return bodyComplete()
                case .invalid(let e): return sendError(APIError(e.status, e.code, e.message), close: true)
                case .needMore: break
                }
                if paused { return }
                if unconsumed == 0 || consumed == 0 { break }
            }
            if peerClosed { close(reason: "eof mid-body") }
            return
        }
        if contentRemaining > 0 && unconsumed > 0 {
            let n = min(contentRemaining, unconsumed)
            inBuf.withUnsafeBytes { raw in deliver(UnsafeRawBufferPointer(rebasing: raw[inStart..<(inStart + n)])) }
            inStart += n
            contentRemaining -= n
            if closed || state != .readingBody { return }   // files: a failed upload answered already
        }
        if contentRemaining == 0 { bodyComplete() }
        else if peerClosed { close(reason: "eof mid-body") }
    }

    private func deliver(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { deliver($0) }
    }

    private func deliver(_ bytes: UnsafeRawBufferPointer) {
        switch sink {
        case .buffer: body.append(contentsOf: bytes)
        case .discard: break
        case .stdin(let s):
            guard !s.closed else { return }
            s.enqueue(bytes)
            if s.queued > server.config.maxStdinQueue {
                paused = true
                s.waiters.append { [weak self] in self?.resume() }
            }
        case .file(let u):   // files: straight to the temporary file; an error ends the request
            if let e = u.write(bytes) {
                sink = .discard
                sendError(e, close: true)
            }
        }
    }

    private func resume() {
        guard paused, !closed else { return }
        paused = false
        server.loop.defer_ { [self] in process() }
    }

    private func bodyComplete() {
        guard let head, let route else { return }
        state = .awaitingHandler  // until the handler decides
        if case .file(let u) = sink {   // files: the upload is complete: commit it (fsync + rename)
            sink = .discard
            return complete(u.commit())
        }
        let outcome = server.handle(route, head: head, body: body, connection: self)
        body.removeAll(keepingCapacity: body.capacity <= 65536)
        complete(outcome)
    }

    /// Sends a handler's outcome (now, or later for `.pending` ones).
    func complete(_ outcome: Outcome) {
        guard !closed, let keepAlive = head?.keepAlive else { return }   // the field only: no copy of the head
        switch outcome {
        case .response(let status, let json, let headers):
            send(status: status, json: json, extraHeaders: headers, close: !keepAlive)
        case .noContent:
            sendRaw(status: 204, contentType: nil, body: [], extraHeaders: [], close: !keepAlive)
        case .error(let e):
            sendError(e, close: !keepAlive)
        case .rawJSON(let status, let bytes):
            sendRaw(status: status, contentType: "application/json", body: bytes, extraHeaders: [], close: !keepAlive)
        case .bytes(let status, let type, let bytes, let headers):
            sendRaw(status: status, contentType: type, body: bytes, extraHeaders: headers, close: !keepAlive)
        case .streaming(let f):
            state = .streaming
            follower = f
            releaseRequestStorage()   // perf(memory)
            f.pump()
        case .pending:
            state = .awaitingHandler   // no further request is parsed until `complete` is called again
            return
        case .upgrade(let take):  // websocket: the socket becomes a WebSocket connection kind
            handOver(take)
            return
        }
        if state == .readingHead && !processing { server.loop.defer_ { [self] in process() } }
    }

    /// perf(memory): a stream holds the connection for as long as the process lives (thousands of idle
    /// followers): what only the request needed goes when the stream starts. The input buffer goes if no
    /// pipelined bytes wait in it; the head goes too (its keep-alive is kept apart), unless the stream's
    /// access line will be written (debug level), which names the path.
    private func releaseRequestStorage() {
        if unconsumed == 0 { inBuf = []; inStart = 0 }
        body = []
        scratch = []
        chunked = nil
        if let h = head {
            head = server.log.enabled(.debug)
                ? HTTPRequestHead(method: h.method, target: "", path: h.path, query: nil, versionMinor: h.versionMinor,
                                  headers: HTTPHeaders(), keepAlive: h.keepAlive, framing: h.framing, expectsContinue: false)
                : nil
        }
    }

    /// perf(memory): a streaming connection's drained output buffer up to this size is freed (see `flush`).
    static let idleStreamBuffer = 512

    // MARK: responses

    func sendError(_ e: APIError, close: Bool) {
        let headers: [(String, String)] = e.status == 405 ? [("Allow", Router.allowed(head?.path ?? ""))] : []
        send(status: e.status, json: e.json, extraHeaders: headers, close: close)
    }

    /// The JSON is serialized into the server's reusable buffer (no array per answer), then copied once,
    /// after the head, into the output queue.
    func send(status: Int, json: JSONValue, extraHeaders: [(String, String)] = [], close: Bool) {
        json.serialize(into: &server.jsonScratch)
        server.jsonScratch.append(0x0A)
        sendRaw(status: status, contentType: "application/json", body: server.jsonScratch, extraHeaders: extraHeaders, close: close)
        server.jsonScratch.removeAll(keepingCapacity: server.jsonScratch.capacity <= 65536)
    }

    private func sendRaw(status: Int, contentType: String?, body: [UInt8], extraHeaders: [(String, String)], close: Bool) {
        encodeResponseHead(status: status, contentType: contentType, contentLength: status == 204 ? nil : body.count,
                           headers: extraHeaders, close: close, into: &out)
        out.append(contentsOf: body)
        requestDone(status: status, bytes: body.count)
        if close {
            closeAfterFlush = true
            state = .closing
        } else {
            state = .readingHead
        }
        server.markDirty(self)
    }

    /// Starts a chunked streaming response (SSE).
    func beginStream(headers: [(String, String)]) {
        var h = headers
        h.append(("Transfer-Encoding", "chunked"))
        encodeResponseHead(status: 200, headers: h, into: &out)
        lastWriteAt = server.loop.now
        server.markDirty(self)
    }

    /// Appends one chunk of stream payload, built in place (the size is patched in afterwards).
    func appendChunk(_ build: (inout [UInt8]) -> Void) {
        let sizeAt = out.count
        out.append(contentsOf: [0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x0D, 0x0A])  // 8 hex digits + CRLF
        let start = out.count
        build(&out)
        let n = out.count - start
        if n == 0 {
            // perf(memory): an idle stream's pump leaves no buffer behind (see `idleStreamBuffer`).
            if sizeAt == 0 && state == .streaming && out.capacity <= Connection.idleStreamBuffer { out = [] }
            else { out.removeSubrange(sizeAt...) }
            return
        }
        var v = n
        for i in stride(from: 7, through: 0, by: -1) { out[sizeAt + i] = hexDigits[v & 0xF]; v >>= 4 }
        out.append(0x0D); out.append(0x0A)
        lastWriteAt = server.loop.now
        server.markDirty(self)
    }

    /// Sends one chunk whose payload is `a` then `b`, memory that may change once this returns (a ring):
    /// straight from it in one gather write when nothing is queued; what the socket does not take is
    /// copied into the queue.
    func sendChunk(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) {
        let n = a.count + b.count
        guard n > 0, !closed else { return }
        var head: [UInt8] = []
        appendHex(n, to: &head)
        head.append(0x0D); head.append(0x0A)
        let crlf: [UInt8] = [0x0D, 0x0A]
        var sent = 0
        let direct = pendingOutput == 0
        if direct {
            do {
                sent = try head.withUnsafeBytes { h in try crlf.withUnsafeBytes { c in try Socket.send(fd, h, a, b, c) } }
            } catch {
                close(reason: "write error"); return
            }
            if sent > 0 { lastActivity = server.loop.now }
        }
        // Queue the rest of [head, a, b, crlf] from byte `sent` on.
        var skip = sent
        head.withUnsafeBytes { h in
            crlf.withUnsafeBytes { c in
                for part in [h, a, b, c] {
                    if skip >= part.count { skip -= part.count; continue }
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: part[skip...]))
                    skip = 0
                }
            }
        }
        if pendingOutput > 0 {
            if direct { writeBlocked = true }     // the socket took less than offered: wait for EPOLLOUT
            server.markDirty(self)
        }
        lastWriteAt = server.loop.now
    }

    private func appendHex(_ v: Int, to out: inout [UInt8]) {
        var shift = 60
        while shift > 0 && (v >> shift) & 0xF == 0 { shift -= 4 }
        while shift >= 0 { out.append(hexDigits[(v >> shift) & 0xF]); shift -= 4 }
    }

    /// The stream's body ended (last chunk written, with optional trailer fields): back to reading
    /// requests, or close.
    func endStream(trailers: [(String, String)] = []) {
        if trailers.isEmpty {
            out.append(contentsOf: lastChunk)
        } else {
            out.append(contentsOf: "0\r\n".utf8)
            for (k, v) in trailers { out.append(contentsOf: "\(k): \(v)\r\n".utf8) }
            out.append(contentsOf: "\r\n".utf8)
        }
        follower = nil
        requestDone(status: 200, bytes: -1)
        finishStreaming(keep: keepAlive)
    }

    /// files: starts a response whose body (its length in `headers`) a producer writes next.
    func beginBody(status: Int, headers: [(String, String)]) {
        var h = headers
        if !keepAlive { h.append(("Connection", "close")) }
        encodeResponseHead(status: status, headers: h, into: &out)
        fixedBody = true
        bodyStatus = status
        lastWriteAt = server.loop.now
        server.markDirty(self)
    }

    /// files: body bytes of a `beginBody` response, queued.
    func appendBody(_ bytes: UnsafeRawBufferPointer) {
        out.append(contentsOf: bytes)
        lastWriteAt = server.loop.now
        server.markDirty(self)
    }

    /// files: a producer wrote `n` bytes straight to the socket.
    func sentDirectly(_ n: Int) {
        lastActivity = server.loop.now
        lastWriteAt = lastActivity
    }

    /// files: the socket is full (or the producer's slice for this turn is used): call pump on EPOLLOUT.
    func awaitWritable() {
        writeBlocked = true
        wantWritable = true
        updateInterest()
    }

    /// files: the `beginBody` response is complete.
    func endBody() {
        follower = nil
        fixedBody = false
        wantWritable = false
        requestDone(status: bodyStatus, bytes: -1)
        finishStreaming(keep: keepAlive)
    }

    private func finishStreaming(keep: Bool) {
        if keep { state = .readingHead } else { closeAfterFlush = true; state = .closing }
        server.markDirty(self)
        server.loop.defer_ { [self] in process() }
    }

    // websocket: gives the socket, the unparsed input and the queued output to `take`; this connection is
    // then closed without closing the fd (deregistered, forgotten by the server).
    private func handOver(_ take: (Int32, [UInt8], [UInt8]) -> Void) {
        let leftover = Array(inBuf[inStart...])
        let queued = Array(out[outStart...])
        requestDone(status: 101, bytes: -1)
        closed = true
        state = .closing
        follower = nil
        let fd = io.relinquish()
        inBuf = []; out = []
        server.connectionClosed(self)
        take(fd, leftover, queued)
    }

    private func requestDone(status: Int, bytes: Int) {
        servedAny = true
        guard head != nil || route != nil else { return }   // no request was parsed (a bad head): not counted
        server.metrics?.requestDone(route, status: status, ns: Clock.monotonicNs() - requestStartedNs)   // metrics: by route and code
        defer { self.route = nil }
        // A stream that dropped its head logs nothing here: its line would be debug (200), not written.
        guard let method = head?.method, let path = head?.path else { return }   // not a copy of the whole head
        // issue17-perf: the access line is debug for a success, info for an error status (a line per
        // request cost a tenth of the daemon's time at 10^5 req/s; process events stay at info).
        server.log.at(status >= 400 ? .info : .debug, "msg=request method=\(method) path=\(Log.q(path)) status=\(status) ms=\(Clock.monotonicMs() - requestStartedAt)\(bytes >= 0 ? " bytes=\(bytes)" : "")")
    }

    // MARK: output

    /// Writes what is queued; called before the loop sleeps and when the socket becomes writable.
    func flush() {
        guard !closed else { return }
        wantWritable = false   // files: the pump below sends again (interest is updated at the end)
        var rounds = 0
        while true {
            while outStart < out.count {
                let n: Int
                do {
                    n = try out.withUnsafeBytes { try Socket.send(fd, UnsafeRawBufferPointer(rebasing: $0[outStart...])) }
                } catch {
                    close(reason: "write error"); return
                }
                if n == 0 { writeBlocked = true; break }
                outStart += n
                lastActivity = server.loop.now
            }
            if outStart < out.count { break }        // blocked: wait for EPOLLOUT
            writeBlocked = false
            // perf(memory): a stream's drained queue keeps only a busy stream's buffer; a small one (the
            // response head, a few quiet events) goes, so an idle follower holds no output buffer.
            if state == .streaming && out.capacity <= Connection.idleStreamBuffer { out = [] }
            else { out.removeAll(keepingCapacity: out.capacity <= (1 << 20)) }
            outStart = 0
            if closeAfterFlush {
                if lingerOnClose && !peerClosed { return beginLinger() }   // files: answer read before the close
                close(reason: nil); return
            }
            rounds += 1
            guard state == .streaming, let f = follower else { break }
            if rounds >= 8 {
                // Fairness: let other fds have their turn, but come straight back (the socket is
                // writable, so nothing else would wake us for this follower).
                server.loop.defer_ { [self] in flush() }
                break
            }
            f.pump()                                   // room again: produce more from the journal
            if out.isEmpty { break }
        }
        if outStart > (1 << 20) { out.removeSubrange(0..<outStart); outStart = 0 }
        updateInterest()
        if state == .readingHead && unconsumed > 0 && pendingOutput < server.config.writeHighWater {
            server.loop.defer_ { [self] in process() }
        }
    }

    /// files: the daemon stops or re-executes: an unfinished upload's temporary file goes now (the
    /// connection is not closed through `close` then).
    func abandonUpload() {
        if case .file(let u) = sink { u.abort(); sink = .discard }
    }

    /// files: the answer is sent: shut down writing and discard input until EOF (bounded), then close.
    private func beginLinger() {
        closeAfterFlush = false
        state = .closing
        lingerDeadline = server.loop.now + Connection.lingerMs
        Socket.shutdownWrite(fd)
        inBuf.removeAll(); inStart = 0
        io.setInterest([.input, .readHangup])
    }

    /// files: reads and drops what the client still sends (16 reads per turn at most).
    private func linger() {
        for _ in 0..<16 {
            let r: IOResult
            do {
                r = try server.readBuffer.withUnsafeMutableBytes { raw in
                    try FD.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<min(raw.count, 64 << 10)]))
                }
            } catch { return close(reason: nil) }
            switch r {
            case .bytes(let n):
                lingerDiscarded += n
                if lingerDiscarded > Connection.lingerBytes { return close(reason: "linger limit") }
            case .wouldBlock: return
            case .eof: return close(reason: nil)
            }
        }
    }

    private func flushOrClose() {
        if pendingOutput == 0 { close(reason: nil) } else { server.markDirty(self) }
    }

    /// A request is being received or answered (or the client just connected and has not sent one yet):
    /// an upgrade waits for these before it re-executes.
    func inFlight(now: Int64) -> Bool {
        if closed { return false }
        switch state {
        case .readingBody, .awaitingHandler: return true
        case .streaming: return false                    // resumable by Last-Event-ID
        case .closing: return pendingOutput > 0
        case .readingHead:
            if unconsumed > 0 || pendingOutput > 0 { return true }
            return !servedAny && now - acceptedAt < 500  // connected, request not here yet
        }
    }

    /// Timeouts, checked from the server's housekeeping tick.
    func checkDeadlines(now: Int64) {
        guard !closed else { return }
        switch state {
        case .readingHead:
            if let started = headStartedAt, now - started > server.config.headerTimeoutMs {
                server.log.info("msg=\"header timeout\"")
                sendError(APIError(408, "REQUEST_TIMEOUT", "request headers not received in time"), close: true)
            } else if unconsumed == 0 && pendingOutput == 0 && now - lastActivity > server.config.idleTimeoutMs {
                close(reason: "idle")
            }
        case .readingBody:
            if !paused && now - lastActivity > server.config.idleTimeoutMs {
                sendError(APIError(408, "REQUEST_TIMEOUT", "request body not received in time"), close: true)
            }
        case .awaitingHandler:
            // A request in progress answers, whatever its duration (its handler bounds the wait).
            break
        case .streaming:
            // Hardening: a reader that accepted no byte for the idle timeout while output was queued has
            // stopped reading for good: drop it (the journal keeps the output; it can resume by id).
            if pendingOutput > 0 && now - lastActivity > server.config.idleTimeoutMs {
                server.log.info("msg=\"stream reader stalled, closing\" queued=\(pendingOutput) stalled_ms=\(now - lastActivity)")
                close(reason: "stalled reader")
                return
            }
            if fixedBody && wantWritable && now - lastActivity > server.config.idleTimeoutMs {   // files: stalled reader
                close(reason: "stalled reader"); return
            }
            if !fixedBody && pendingOutput == 0 && now - lastWriteAt >= server.config.sseKeepaliveMs {
                appendChunk { $0.append(contentsOf: [0x3A, 0x0A, 0x0A]) }   // ":\n\n"
            }
        case .closing:
            if let d = lingerDeadline, now >= d { return close(reason: "linger timeout") }   // files
            if now - lastActivity > server.config.idleTimeoutMs { close(reason: "close timeout") }
        }
    }

    /// Stops the connection now (no more events, the stream detached); the fd is closed and the server
    /// drops it in the loop's deferred phase.
    func close(reason: String?) {
        guard !closed else { return }
        closed = true
        state = .closing
        if let reason { server.log.debug("msg=\"connection closed\" reason=\(Log.q(reason))") }
        io.unwatch()
        let f = follower
        follower = nil
        f?.detach()
        if case .file(let u) = sink { u.abort(); sink = .discard }   // files: an unfinished upload leaves nothing
        server.loop.defer_ { [self] in
            io.close()
            server.connectionClosed(self)
        }
    }
}

private let hexDigits = ("0123456789abcdef" as StaticString).utf8Start

/// perf(memory): a chunked request body's decoder, on the heap only while such a body is read.
final class ChunkedBody {
    var decoder: ChunkedDecoder
    init(_ decoder: ChunkedDecoder) { self.decoder = decoder }
}
