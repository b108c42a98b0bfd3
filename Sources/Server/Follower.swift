// Follower: an SSE subscriber. A cursor (a sequence number) into one process's journal plus the
// connection it writes to. It owns no copy of the output: whenever the connection has room below
// its high watermark it encodes the next journal lines as SSE events straight into the connection's
// output queue, many events per chunk. Replay and live tail are the same loop.
//
// Events: `id:<seq>\nevent:output\ndata:{"line":..,"timestamp":..[,"stream":..]}\n\n`,
//         `event:gap\ndata:{"dropped_lines":L,"dropped_bytes":B}\n\n` when the cursor fell off the head,
//         `event:eof\ndata:{}\n\n` after the process's output is complete, then the body ends.
import Sys
import Supervision
import JSON

final class Follower {
    unowned let connection: Connection
    let process: ProcessRecord
    let filter: StreamFilter
    let tagStream: Bool
    var cursor: UInt64
    /// journal.bytesBefore(cursor) when last known: makes the byte count of a later gap exact.
    private var cursorBytes: UInt64?
    private var finished = false
    /// `/processes/run`: a started event first, an exit event (not eof) last, and the tree dies with the stream.
    let run: Bool
    private var sentStarted = false

    init(connection: Connection, process: ProcessRecord, filter: StreamFilter, tagStream: Bool, after: UInt64?, run: Bool = false) {
        self.connection = connection
        self.process = process
        self.filter = filter
        self.tagStream = tagStream
        self.run = run
        cursor = after.map { $0 &+ 1 } ?? 0
        cursorBytes = after == nil ? 0 : nil
    }

    /// Produces events until the connection's queue reaches its high watermark or the journal is exhausted.
    func pump() {
        guard !finished else { return }
        let highWater = connection.server.config.writeHighWater
        let journal = process.journal
        if run && !sentStarted {
            sentStarted = true
            let p = process
            connection.appendChunk { out in
                out.append(contentsOf: "event:started\ndata:{\"handle\":".utf8)
                appendJSONInt(Int64(p.handle), to: &out)
                out.append(contentsOf: ",\"pid\":".utf8)
                appendJSONInt(Int64(p.pid), to: &out)
                out.append(contentsOf: ",\"started_at\":".utf8)
                appendJSONInt(p.startedAt, to: &out)
                out.append(contentsOf: Follower.eventEnd)
            }
        }
        // Fan-out (SharedEvents.swift): with other followers of this process, send events they encoded.
        // Shared only for followers of both streams: every line is an event, so the byte count after each
        // event (for exact gap counts later) follows from the lines' lengths.
        let shareable = !run && filter == .both && process.followers.count > 1
        while connection.pendingOutput < highWater {
            var produced = false
            let budget = highWater - connection.pendingOutput
            if shareable && journal.gap(at: cursor, knownBytes: cursorBytes) == nil {
                switch sendShared(journal, budget: budget) {
                case .sent: continue
                case .closed: return
                case .notShared: break
                }
            }
            connection.appendChunk { out in
                // retention (issue 13): gaps and reads cover the disk tier and the memory journal (Retained.swift).
                if let missed = journal.gap(at: cursor, knownBytes: cursorBytes) {
                    if missed.lines > 0 {
                        out.append(contentsOf: Follower.gapPrefix)
                        appendJSONInt(Int64(missed.lines), to: &out)
                        out.append(contentsOf: Follower.gapMiddle)
                        appendJSONInt(Int64(missed.bytes), to: &out)
                        out.append(contentsOf: Follower.eventEnd)
                        produced = true
                    }
                    cursor = missed.resume
                    cursorBytes = missed.resumeBytes
                }
                let startCount = out.count
                var events: UInt64 = 0   // metrics: events sent
                let (next, nextBytes) = journal.readRetained(from: cursor, filter: filter, maxLines: 1024) { e in
                    encode(e, into: &out)
                    events &+= 1
                    return out.count - startCount < budget
                }
                connection.server.metrics?.sseEvents &+= events   // metrics: events sent
                if next != cursor {
                    produced = true
                    cursor = next
                    cursorBytes = nextBytes
                } else if cursor < journal.headSeq {
                    produced = true   // a disk batch could not be read: the next turn reports its gap
                }
            }
            if !produced { break }
        }
        if run { process.readerProgressed() }
        if process.outputComplete && cursor >= journal.nextSeq && connection.pendingOutput < highWater {
            finished = true
            if run {
                let event = exitEvent()
                connection.appendChunk { $0.append(contentsOf: event) }
            } else {
                connection.appendChunk { $0.append(contentsOf: Follower.eofEvent) }
            }
            process.followers.remove(self)
            connection.endStream()
        }
    }

    private enum SharedResult { case sent, closed, notShared }

    /// Sends the next events from the shared window of this process and these options, extending it
    /// (or moving it on) when this follower is the first to need them. `.notShared`: this follower is
    /// behind the window, or nothing new is there; it encodes for itself.
    private func sendShared(_ journal: Journal, budget: Int) -> SharedResult {
        let shared = connection.server.sharedEvents
        let at = max(cursor, 1)   // seq 0 and 1 are the same place (the first line is 1)
        let window: SharedEvents.Window
        if let w = shared.window(handle: process.handle, tagStream: tagStream) {
            window = w
            if w.slice(from: at, budget: budget) == nil {
                if at == w.end {
                    if w.isFull { w.slide() }   // the window moves on with the lead
                    extend(w, journal, from: at, budget: budget)
                } else if at > w.end {
                    w.reset(at: at)   // this follower is ahead of it: the window starts again here
                    extend(w, journal, from: at, budget: budget)
                } else {
                    return .notShared   // behind the window
                }
            }
        } else {
            window = shared.claim(handle: process.handle, tagStream: tagStream, at: at)
            extend(window, journal, from: at, budget: budget)
        }
        guard let s = window.slice(from: at, budget: budget) else { return .notShared }
        window.bytes.withUnsafeBytes { b in
            connection.sendChunk(UnsafeRawBufferPointer(rebasing: b[s.from..<s.to]), UnsafeRawBufferPointer(start: nil, count: 0))
        }
        if let m = connection.server.metrics {   // metrics: events sent
            m.sseEvents &+= UInt64(s.events); m.sseSharedEvents &+= UInt64(s.events)
        }
        cursor = s.next
        cursorBytes = s.cum
        return connection.closed ? .closed : .sent
    }

    /// Encodes the lines from `at` (the window's end) into the window: about `budget` bytes of events.
    private func extend(_ w: SharedEvents.Window, _ journal: Journal, from at: UInt64, budget: Int) {
        let target = w.bytes.count + budget
        var from = at
        while w.bytes.count < target && !w.isFull {
            let before = w.ends.count
            let (next, nextBytes) = journal.readRetained(from: from, filter: .both, maxLines: 1024) { e in
                encode(e, into: &w.bytes)
                w.ends.append(w.bytes.count)
                w.cums.append(UInt64(e.text.count))   // the line's length for now: see below
                return w.bytes.count < target
            }
            guard w.ends.count > before else { break }
            assert(next == w.end, "a read of both streams visits every line")
            // Every line from `from` to `next` was visited (all streams): the byte count after each event
            // follows back from the exact count after the last one.
            var after = nextBytes
            for k in stride(from: w.cums.count - 1, through: before, by: -1) {
                let len = w.cums[k]
                w.cums[k] = after
                after &-= len
            }
            from = next
        }
    }

    /// The connection went away. A run's client disconnecting kills its command (the run owns its tree);
    /// its pipes are read again so that the dying tree is not held on them.
    func detach() {
        let wasFinished = finished
        finished = true
        process.followers.remove(self)
        guard run, !wasFinished else { return }
        if process.runReader === self { process.runReader = nil }
        for o in process.outputs { o.release() }
        if process.isRunning {
            connection.server.log.info("msg=\"run client disconnected, killing\" pid=\(process.pid)")
            connection.server.send(process, .clientLeft)
        }
    }

    /// `{"exit_code","signal","oom_killed","reason"}`: the SDK takes exit_code, else -signal.
    private func exitEvent() -> [UInt8] {
        var code: JSONValue = .null, sig: JSONValue = .null, reason = "exited", oom = false
        switch process.status {
        case .running: break
        case .exited(let c): code = .int(Int64(c))
        case .signaled(let s): sig = .int(Int64(s)); reason = "signaled"
        case .oomKilled: sig = .int(9); reason = "oom_killed"; oom = true
        case .exitUnknown: reason = "exit_status_unknown"   // exit-status: neither code nor signal is known
        }
        if process.machine.timedOut { reason = "timed_out"; code = .null; sig = .int(9) }
        var out = Array("event:exit\ndata:".utf8)
        JSONValue.object([("exit_code", code), ("signal", sig), ("oom_killed", .bool(oom)), ("reason", .string(reason))]).serialize(into: &out)
        out.append(contentsOf: "\n\n".utf8)
        return out
    }

    static let gapPrefix = Array("event:gap\ndata:{\"dropped_lines\":".utf8)
    static let gapMiddle = Array(",\"dropped_bytes\":".utf8)
    static let eventEnd = Array("}\n\n".utf8)
    static let eofEvent = Array("event:eof\ndata:{}\n\n".utf8)
    static let tsKey = Array("\",\"timestamp\":".utf8)     // with the quote that ends the line's string
    static let stdoutTag = Array(",\"stream\":\"stdout\"}\n\n".utf8)
    static let stderrTag = Array(",\"stream\":\"stderr\"}\n\n".utf8)

    /// `","timestamp":T[,"stream":S]}\n\n`, what follows the line's text, for the current timestamp and
    /// each stream: all lines of one pipe read share a timestamp, so it is formatted once per read.
    private var suffixTs: Int64 = .min
    private var suffixOut: [UInt8] = []
    private var suffixErr: [UInt8] = []

    /// What comes between an output event's `id:<seq>` and its line's text.
    private static var outputHead: StaticString { "\nevent:output\ndata:{\"line\":\"" }
    /// The most bytes of an output event before its line's text: `id:`, 20 digits and `outputHead`.
    private static var maxHeadCount: Int { 3 + 20 + outputHead.utf8CodeUnitCount }

    /// Writes one output event, with the room for its worst case (every text byte escaped as `\u00XX`)
    /// reserved once.
    @inline(__always)
    private func encode(_ e: JournalEntry, into out: inout [UInt8]) {
        if e.timestampMs != suffixTs { buildSuffixes(e.timestampMs) }
        let stderr = e.stream == .stderr
        let suffixCount = stderr ? suffixErr.count : suffixOut.count
        out.appendWriting(upTo: Follower.maxHeadCount + maxJSONStringBodyCount(e.text.count) + suffixCount) { w in
            w.write("id:")
            w.writeDecimal(e.seq)
            w.write(Follower.outputHead)
            w.writeJSONStringBody(e.text)
            // Not `stderr ? suffixErr : suffixOut`: that copy would cost a retain and a release per event.
            if stderr { w.write(suffixErr) } else { w.write(suffixOut) }
        }
    }

    private func buildSuffixes(_ ts: Int64) {
        suffixTs = ts
        var base = Follower.tsKey
        appendJSONInt(ts, to: &base)
        if tagStream {
            suffixOut = base + Follower.stdoutTag
            suffixErr = base + Follower.stderrTag
        } else {
            suffixOut = base + Follower.eventEnd
            suffixErr = suffixOut
        }
    }
}
