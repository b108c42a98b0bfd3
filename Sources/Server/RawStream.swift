// RawStream: the raw byte view of one output stream (`GET /api/v1/processes/{p}/stdout/raw`, and
// `stderr/raw`): the bytes exactly as the child wrote them, addressed by byte offset, served from the
// stream's ByteRing. See README "Raw output" for the wire shape.
//
//   ?offset=N     first byte wanted (default 0). Below the ring's window: starts at the oldest retained
//                 byte (X-Tend-Offset says where; the difference is lost). Beyond the end: 416.
//   ?follow=true  a chunked body that continues live until the stream is complete (trailer
//                 `X-Tend-End: eof`), or until the reader fell behind the ring's window (`X-Tend-End: gap`;
//                 reconnect with offset = X-Tend-Offset + bytes received). Without follow: what is
//                 retained now, with Content-Length.
//
// Sending: the payload goes from the ring straight to the socket in one gather write (chunk header,
// up to two ring pieces, CRLF) whenever nothing is queued; only what the socket does not take is copied.
import Sys
import HTTP1
import Supervision

/// Something that produces a streaming response body for a connection: an SSE follower or a raw stream.
protocol StreamProducer: AnyObject {
    /// Produce output while the connection is below its high watermark; end the stream when done.
    func pump()
    /// The connection went away.
    func detach()
}

extension Follower: StreamProducer {}

final class RawFollower: StreamProducer {
    unowned let connection: Connection
    let process: ProcessRecord
    let ring: ByteRing
    private(set) var offset: UInt64
    private var finished = false

    /// Largest chunk sent at once (bounds what a short write leaves to copy into the queue).
    static let maxChunk = 256 << 10

    init(connection: Connection, process: ProcessRecord, ring: ByteRing, offset: UInt64) {
        self.connection = connection
        self.process = process
        self.ring = ring
        self.offset = offset
    }

    func pump() {
        guard !finished else { return }
        // A failed send closes the connection; it stays alive until the loop's deferred phase (Connection.close).
        let highWater = connection.server.config.writeHighWater
        while connection.pendingOutput < highWater && !connection.closed {
            if offset < ring.firstOffset {
                // Fell behind the window: end here so the client learns exactly where the loss is.
                finish(end: "gap")
                return
            }
            let sent = ring.withBytes(from: offset, max: RawFollower.maxChunk) { a, b -> Int in
                connection.sendChunk(a, b)
                return a.count + b.count
            }
            if sent == 0 { break }
            offset &+= UInt64(sent)
        }
        if process.outputComplete && offset >= ring.total && connection.pendingOutput < highWater && !connection.closed {
            finish(end: "eof")
        }
    }

    private func finish(end: String) {
        finished = true
        process.followers.remove(self)
        connection.endStream(trailers: [("X-Tend-End", end), ("X-Tend-Next-Offset", String(offset))])
    }

    func detach() {
        finished = true
        process.followers.remove(self)
    }
}

extension Server {
    /// `GET …/{stdout,stderr}/raw[?offset=N][&follow=true]`.
    func rawOutput(_ p: ProcessRecord, _ stream: OutputStream, _ head: HTTPRequestHead, _ connection: Connection) throws -> Outcome {
        var offset: UInt64 = 0
        var follow = false
        for (k, v) in parseQuery(head.query ?? "") {
            switch k {
            case "offset":
                guard let n = UInt64(v) else { throw APIError.invalid("offset must be a non-negative integer") }
                offset = n
            case "follow":
                switch v.lowercased() {
                case "true", "1", "": follow = true
                case "false", "0": follow = false
                default: throw APIError.invalid("follow must be true or false")
                }
            default: break
            }
        }
        let name = stream == .stdout ? "stdout" : "stderr"
        guard let ring = p.raw(stream) else {
            let why = (stream == .stdout ? p.spec.stdoutMode : p.spec.stderrMode) == .discard
                ? "\(name) of process \(p.pid) is discarded"
                : config.rawBytes == 0 ? "the raw view is off (--raw-bytes 0)"
                : "raw \(name) of process \(p.pid) was not kept (started by an older daemon)"
            throw APIError(409, "RAW_OUTPUT_UNAVAILABLE", why)
        }
        if offset > ring.total {
            throw APIError(416, "OFFSET_OUT_OF_RANGE", "offset \(offset) is beyond the end of \(name) (\(ring.total) bytes so far)")
        }
        let start = max(offset, ring.firstOffset)
        var headers: [(String, String)] = [("X-Tend-Offset", String(start))]
        if start > offset { headers.append(("X-Tend-Dropped-Bytes", String(start - offset))) }
        if !follow {
            let body = ring.bytes(from: start)
            headers.append(("X-Tend-Next-Offset", String(start + UInt64(body.count))))
            headers.append(("X-Tend-Complete", p.outputComplete ? "true" : "false"))
            return .bytes(200, "application/octet-stream", body, headers)
        }
        connection.beginStream(headers: [("Content-Type", "application/octet-stream"), ("Cache-Control", "no-cache"),
                                         ("X-Accel-Buffering", "no"), ("Trailer", "X-Tend-End, X-Tend-Next-Offset")] + headers)
        let f = RawFollower(connection: connection, process: p, ring: ring, offset: start)
        p.followers.insert(f)
        return .streaming(f)
    }
}
