// OutputList (retention, issue 13): the `get_stdout` / `get_stderr` / `get_output` response
// (`{"pid":N,"lines":[...],"line_count":N}`) of a process whose output reaches into the disk tier, sent as
// a chunked body produced while the connection has room: one disk batch (≤ 256 KiB) or 4096 lines per
// step, like a follower, so a 64 MiB answer neither blocks the loop nor sits in memory at once. It covers
// the lines retained when the request arrived (a line evicted meanwhile is skipped, and not counted).
// Output held only in memory keeps the one-shot answer (`outputResponse` in API.swift).
import Supervision
import JSON

final class OutputList: StreamProducer {
    unowned let connection: Connection
    let process: ProcessRecord
    let filter: StreamFilter
    private var seq: UInt64
    private let end: UInt64
    private var count: Int64 = 0
    private var started = false
    private var finished = false

    init(connection: Connection, process: ProcessRecord, filter: StreamFilter) {
        self.connection = connection
        self.process = process
        self.filter = filter
        seq = process.journal.oldestSeq
        end = process.journal.nextSeq
    }

    func pump() {
        guard !finished else { return }
        let connection: Connection = self.connection   // kept alive for the call (a failed send drops it)
        let highWater = connection.server.config.writeHighWater
        let journal = process.journal
        while connection.pendingOutput < highWater && !connection.closed && seq < end {
            var progressed = false
            connection.appendChunk { out in
                if !started {
                    started = true
                    out.append(contentsOf: "{\"pid\":".utf8)
                    appendJSONInt(Int64(process.pid), to: &out)
                    out.append(contentsOf: ",\"lines\":[".utf8)
                }
                if let g = journal.gap(at: seq, knownBytes: nil) {
                    seq = min(g.resume, end)
                    progressed = true
                    return
                }
                let startCount = out.count
                let (next, _) = journal.readRetained(from: seq, filter: filter, maxLines: 4096) { e in
                    if e.seq >= end { return false }
                    if count > 0 { out.append(0x2C) }
                    appendJSONString(e.text, to: &out)
                    count += 1
                    return out.count - startCount < highWater
                }
                if next != seq {
                    seq = min(next, end)
                    progressed = true
                } else if seq < journal.headSeq {
                    progressed = true   // a batch could not be read: its gap is skipped next time
                }
            }
            if !progressed { seq = end }   // nothing more to read: end the list here
        }
        if seq >= end && connection.pendingOutput < highWater && !connection.closed {
            finished = true
            let pid = process.pid, n = count, wasStarted = started
            connection.appendChunk { out in
                if !wasStarted {
                    out.append(contentsOf: "{\"pid\":".utf8)
                    appendJSONInt(Int64(pid), to: &out)
                    out.append(contentsOf: ",\"lines\":[".utf8)
                }
                out.append(contentsOf: "],\"line_count\":".utf8)
                appendJSONInt(n, to: &out)
                out.append(contentsOf: "}\n".utf8)
            }
            connection.endStream()
        }
    }

    func detach() { finished = true }
}
