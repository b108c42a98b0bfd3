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
    private var finished = false

    init(connection: Connection, process: ProcessRecord, filter: StreamFilter, tagStream: Bool, after: UInt64?) {
        self.connection = connection
        self.process = process
        self.filter = filter
        self.tagStream = tagStream
        cursor = after.map { $0 &+ 1 } ?? 0
    }

    /// Produces events until the connection's queue reaches its high watermark or the journal is exhausted.
    func pump() {
        guard !finished else { return }
        let highWater = connection.server.config.writeHighWater
        let journal = process.journal
        while connection.pendingOutput < highWater {
            var produced = false
            let budget = highWater - connection.pendingOutput
            connection.appendChunk { out in
                if cursor < journal.headSeq {
                    let missed = journal.missed(from: cursor)
                    if missed.lines > 0 {
                        out.append(contentsOf: Follower.gapPrefix)
                        appendJSONInt(Int64(missed.lines), to: &out)
                        out.append(contentsOf: Follower.gapMiddle)
                        appendJSONInt(Int64(missed.bytes), to: &out)
                        out.append(contentsOf: Follower.eventEnd)
                        produced = true
                    }
                    cursor = journal.headSeq
                }
                let startCount = out.count
                let next = journal.read(from: cursor, filter: filter, maxLines: 1024) { e in
                    Follower.encode(e, tag: tagStream, into: &out)
                    return out.count - startCount < budget
                }
                if next != cursor { produced = true }
                cursor = next
            }
            if !produced { break }
        }
        if process.outputComplete && cursor >= journal.nextSeq && connection.pendingOutput < highWater {
            finished = true
            connection.appendChunk { $0.append(contentsOf: Follower.eofEvent) }
            process.followers[ObjectIdentifier(self)] = nil
            connection.endStream()
        }
    }

    /// The connection went away.
    func detach() {
        finished = true
        process.followers[ObjectIdentifier(self)] = nil
    }

    static let gapPrefix = Array("event:gap\ndata:{\"dropped_lines\":".utf8)
    static let gapMiddle = Array(",\"dropped_bytes\":".utf8)
    static let eventEnd = Array("}\n\n".utf8)
    static let eofEvent = Array("event:eof\ndata:{}\n\n".utf8)
    static let idPrefix = Array("id:".utf8)
    static let outputPrefix = Array("\nevent:output\ndata:{\"line\":".utf8)
    static let tsKey = Array(",\"timestamp\":".utf8)
    static let stdoutTag = Array(",\"stream\":\"stdout\"}\n\n".utf8)
    static let stderrTag = Array(",\"stream\":\"stderr\"}\n\n".utf8)

    @inline(__always)
    static func encode(_ e: JournalEntry, tag: Bool, into out: inout [UInt8]) {
        out.append(contentsOf: idPrefix)
        appendJSONInt(Int64(e.seq), to: &out)
        out.append(contentsOf: outputPrefix)
        appendJSONString(e.text, to: &out)
        out.append(contentsOf: tsKey)
        appendJSONInt(e.timestampMs, to: &out)
        if tag {
            out.append(contentsOf: e.stream == .stderr ? stderrTag : stdoutTag)
        } else {
            out.append(contentsOf: eventEnd)
        }
    }
}
