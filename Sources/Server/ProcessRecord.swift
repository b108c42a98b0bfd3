// ProcessRecord: one process the daemon started: its spec, its state, its fds (pidfd, output pipes,
// stdin pipe), its journal and its followers. The fds are closed exactly once, when the record is
// done with them (pipes at EOF or after the drain time, the pidfd after the reap).
import Sys
import Reactor
import Supervision

public enum StdinMode: String { case closed, pipe }
public enum OutputMode: String { case capture, discard }

/// What the client asked to start (already validated).
public struct StartSpec {
    var command: String
    var args: [String]
    var env: [(String, String)]
    var workingDir: String?
    var stdinMode: StdinMode = .closed
    var stdoutMode: OutputMode = .capture
    var stderrMode: OutputMode = .capture
    var user: UserSpec?
    /// `/processes/run` only: kill the whole tree after this many ms.
    var timeoutMs: Int64? = nil
    /// A managed process's settings (nil for a plain one). perf(memory): stored behind one reference, so
    /// that every plain process's record does not carry room for them (about 130 bytes).
    var managed: ManagedSpec? {
        get { managedBox?.spec }
        set { managedBox = newValue.map(ManagedSpecBox.init) }
    }
    var managedBox: ManagedSpecBox? = nil
    /// pty: stdin, stdout and stderr are this pty slave, which becomes the controlling terminal (Pty.swift).
    var ptySlave: Int32? = nil
}

/// A `ManagedSpec` kept by reference (immutable: `StartSpec.managed`'s setter makes a new one).
final class ManagedSpecBox {
    let spec: ManagedSpec
    init(_ spec: ManagedSpec) { self.spec = spec }
}

public enum UserSpec: Equatable {
    case name(String)
    case uid(UInt32, gid: UInt32?)
}

public enum ProcessStatus: Equatable {
    case running
    case exited(Int32)
    case signaled(Int32)
    case oomKilled
    /// exit-status: it ended, but how cannot be had (see ExitWatch.swift): reported as "exited" with
    /// `exit_code: null` and `exit_status_unknown: true`, never as a made-up code.
    case exitUnknown

    var name: String {
        switch self {
        case .running: return "running"
        case .exited: return "exited"
        case .signaled: return "signaled"
        case .oomKilled: return "oom_killed"
        case .exitUnknown: return "exited"   // exit-status
        }
    }
}

public final class ProcessRecord {
    /// The server, for the record's own pidfd events (the record is the handler of its pidfd's registration).
    /// Unowned, not weak: a weak reference gives the server a side table, and then every retain of it
    /// (each `[unowned self]` closure the loop runs) takes the slow path (6 % of a start profile). The
    /// server outlives every record. nil only in unit tests.
    private(set) unowned var server: Server?
    let handle: Int
    var pid: Int32
    let spec: StartSpec
    var startedAt: Int64
    var endedAt: Int64?
    var status: ProcessStatus = .running
    let journal: Journal
    /// The raw bytes of stdout and stderr (nil: raw view off, or not recoverable after a restart).
    var rawOut: ByteRing?
    var rawErr: ByteRing?
    /// perf(memory): heap mode makes a captured stream's ring of this many bytes when first needed (its
    /// first byte, or its first raw reader: an empty ring), so a quiet process has none; 0: no raw view.
    let lazyRawBytes: Int
    /// The stream's raw ring (made now if it is due; nil: raw view off, or not recoverable).
    func raw(_ s: OutputStream) -> ByteRing? {
        if let r = rawIfMade(s) { return r }
        guard lazyRawBytes > 0, (s == .stdout ? spec.stdoutMode : spec.stderrMode) == .capture else { return nil }
        let r = ByteRing(capacity: lazyRawBytes)
        if s == .stdout { rawOut = r } else { rawErr = r }
        return r
    }
    /// The stream's raw ring if it exists (never makes one).
    func rawIfMade(_ s: OutputStream) -> ByteRing? { s == .stdout ? rawOut : rawErr }
    /// The memfd mapping the journal lives in (crash-safe mode), kept alive with the record.
    var region: SharedRegion?

    /// The leader's pidfd and its (late) registration: readable once the leader exits; closed right
    /// after the reap (the state file holds the exit first).
    var pidfdIO: WatchedFD?
    var pidfd: Int32 { pidfdIO?.fd ?? -1 }
    var outputs: [PipeSource] = []       // open capture pipes (removed at EOF)
    var stdin: StdinSink?
    var followers = FollowerSet()
    /// A one-shot run's one reader: its back-pressure holds the child (see `readAllowance`).
    weak var runReader: Follower?
    /// The lifecycle (Supervision/ProcessMachine.swift); changed only through `Server.send(_:_:)`.
    var machine: ProcessMachine
    /// The machine's armed timers.
    var timers: [ProcessMachine.Timer: TimerID] = [:]
    var exitWaiters: [() -> Void] = []
    /// The cgroup v2 leaf that holds the whole tree (nil: process group + /proc fallback).
    var cgroupLeaf: String? {
        switch leaf {
        case .none: return nil
        case .inDir(let dir, let name): return dir + "/" + name
        case .path(let path): return path
        }
    }
    /// perf(memory): a leaf of the daemon's subtree is kept as that directory (one String shared by every
    /// record) and its name ("l123": short enough to live inside the String value, no heap), so a record
    /// holds no path of its own; the path is joined when used (a reap, a kill, a stats read).
    private enum Leaf { case none, inDir(String, name: String), path(String) }
    private var leaf = Leaf.none
    func setCgroupLeaf(_ path: String?, sharing dir: String?) {
        guard let path else { leaf = .none; return }
        if let dir, path.hasPrefix(dir + "/"), !path.utf8.dropFirst(dir.utf8.count + 1).contains(UInt8(ascii: "/")) {
            leaf = .inDir(dir, name: String(path.utf8.dropFirst(dir.utf8.count + 1))!)
        } else {
            leaf = .path(path)
        }
    }
    /// Runs launched so far (a managed process relaunches); part of the fallback's tree marker.
    var launches = 0
    var isRun = false
    /// What a managed process keeps beside its machine (nil for plain ones).
    var managed: ManagedState?
    /// All output is in the journal and no more will come: the leader was reaped, its pipes are at
    /// EOF (or the drain time after its exit has passed), and no restart is coming. Streams end only then.
    var outputComplete: Bool { machine.isFinished }

    init(server: Server?, handle: Int, spec: StartSpec, output: OutputStorage, machine: ProcessMachine) {
        self.server = server
        self.machine = machine
        self.handle = handle
        self.pid = 0
        self.spec = spec
        self.startedAt = 0
        self.journal = output.journal
        self.region = output.region
        lazyRawBytes = output.lazyRawBytes
        if spec.stdoutMode == .capture { rawOut = output.rawOut }
        if spec.stderrMode == .capture { rawErr = output.rawErr }
    }

    var isRunning: Bool { status == .running }

    /// How many bytes may be read from the pipes now. Unbounded, except for a one-shot run: its one reader
    /// asked for the whole output, so the pipes are read only while the lines it has not read yet, the
    /// partial lines and the next read (a byte can cost up to 8 in the journal: an empty line's record)
    /// fit in 7/8 of the journal. Beyond that the child blocks on its full pipe until the reader catches up.
    func readAllowance() -> Int {
        guard isRun, let reader = runReader else { return Int.max }
        let j = journal
        let next = j.nextSeq, head = j.headSeq
        let cursor = min(max(reader.cursor, head), next)
        let retainedLines = Int(j.bytesBefore(next) &- j.bytesBefore(head)) + 8 * Int(next &- head)
        let partial = max(0, j.retainedBytes - retainedLines)
        let unread = Int(j.bytesBefore(next) &- j.bytesBefore(cursor)) + 8 * Int(next &- cursor)
        let room = j.maxBytes * 7 / 8 - unread - partial
        return room <= 0 ? 0 : room / 8
    }
    /// Below this allowance the pipes are held; at `resumeAllowance` they are read again (hysteresis).
    var holdAllowance: Int { min(16 << 10, max(64, journal.maxBytes / 64)) }
    var resumeAllowance: Int { min(64 << 10, max(256, journal.maxBytes / 16)) }

    /// The run's reader consumed lines: read held pipes again once there is room.
    func readerProgressed() {
        guard outputs.contains(where: { $0.heldByReader }), readAllowance() >= resumeAllowance else { return }
        for o in outputs where o.heldByReader { o.release() }
    }
    var stdinWritable: Bool { isRunning && stdin != nil && !(stdin!.closed) }
}

/// The streams reading one process (SSE followers, raw readers), in the order they came.
/// perf(memory): the first reader is held inline and only further ones go to an array (a 48-byte heap
/// block for the usual one reader otherwise), not a dictionary keyed by ObjectIdentifier (a 120-byte table);
/// removal scans, which is cheap at the handful of readers a process has (100 in the fan-out bench).
struct FollowerSet: Sequence {
    /// Invariant: `rest` is empty when `first` is nil.
    private var first: StreamProducer?
    private var rest: [StreamProducer] = []
    var count: Int { first == nil ? 0 : 1 &+ rest.count }
    var isEmpty: Bool { first == nil }
    mutating func insert(_ f: StreamProducer) {
        if first == nil { first = f } else { rest.append(f) }
    }
    mutating func remove(_ f: StreamProducer) {
        if let x = first, x === f {
            first = rest.isEmpty ? nil : rest.removeFirst()
        } else if let i = rest.firstIndex(where: { $0 === f }) {
            rest.remove(at: i)
        }
    }
    struct Iterator: IteratorProtocol {
        fileprivate var first: StreamProducer?
        fileprivate var rest: IndexingIterator<[StreamProducer]>
        mutating func next() -> StreamProducer? {
            if let f = first { first = nil; return f }
            return rest.next()
        }
    }
    func makeIterator() -> Iterator { Iterator(first: first, rest: rest.makeIterator()) }
}

/// The read end of a child's stdout or stderr pipe, registered with the loop.
final class PipeSource: EventHandler {
    unowned let server: Server
    weak var process: ProcessRecord?
    let stream: OutputStream
    /// The read end and its registration (closed exactly once, at EOF or when the record is done).
    var io: WatchedFD
    var fd: Int32 { io.fd }
    /// Not read (and not registered, or its hang-up would wake the loop again and again) because a run's
    /// reader is behind: see `ProcessRecord.readAllowance`.
    private(set) var heldByReader = false

    init(server: Server, process: ProcessRecord, stream: OutputStream, fd: Int32) {
        self.server = server; self.process = process; self.stream = stream
        io = WatchedFD(fd, loop: server.loop)
    }

    /// Registers the read end with the loop (a failure is an error of the caller's operation, never ignored).
    func watch() throws {
        try io.watch(.input, handler: self)
    }

    private func hold() {
        guard !heldByReader else { return }
        heldByReader = true
        io.unwatch()
    }

    /// The reader caught up: read again (a level-triggered registration reports what the pipe holds).
    func release() {
        guard heldByReader, fd >= 0 else { return }
        heldByReader = false
        do { try watch() } catch {
            server.log.error("msg=\"cannot watch a pipe again, closing it\" pid=\(process?.pid ?? 0) error=\(Log.q("\(error)"))")
            close()
        }
    }

    /// Bytes read per readiness event: then the loop moves on (other fds, and before-sleep, which pumps
    /// the SSE followers). More than this per turn and a flooding child overruns the journal before its
    /// followers got anything (2 MiB per turn lost half the lines of an 80-byte flood; 256 KiB: none).
    static let bytesPerTurn = 256 << 10

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        drain(maxBytes: PipeSource.bytesPerTurn)
    }

    /// Reads what the pipe holds, up to about `maxBytes`, into the journal; closes at EOF.
    func drain(maxBytes: Int) {
        guard fd >= 0, !heldByReader, let process else { return }
        var budget = maxBytes
        while budget > 0 {
            let allowance = process.readAllowance()
            if allowance < process.holdAllowance { hold(); return }
            let r: IOResult
            let wanted: Int
            do {
                (r, wanted) = try readOnce(process, max: min(allowance, budget))
            } catch {
                server.log.warn("msg=\"pipe read failed\" pid=\(process.pid) error=\(Log.q("\(error)"))")
                close(); return
            }
            switch r {
            case .bytes(let n):
                server.outputArrived(process)
                budget -= n
                if n < wanted { return }   // the pipe is (very likely) empty now
                // A flood: hand this read to the raw readers before reading more, so the ring is not
                // overrun behind them (they send straight from it; SSE followers batch in before-sleep).
                for f in process.followers where f is RawFollower { f.pump() }
            case .wouldBlock:
                return
            case .eof:
                close(); return
            }
        }
    }

    /// One read of the pipe into the journal. With a raw ring the read goes straight into the ring and the
    /// journal is fed from there (one copy less); else through the server's shared read buffer.
    private func readOnce(_ process: ProcessRecord, max limit: Int) throws -> (IOResult, wanted: Int) {
        var result = IOResult.wouldBlock
        let size = min(limit, server.readBuffer.count)
        // Straight into the raw ring once it exists; the first read (often just EOF: a quiet process)
        // goes through the shared buffer, so a stream that never prints allocates no ring.
        if let ring = process.rawIfMade(stream), ring.allocated {
            var wanted = 0
            try ring.fill(max: size, { space in
                wanted = space.count
                result = try FD.read(fd, into: space)
                if case .bytes(let n) = result { return n }
                return 0
            }, then: { bytes in
                if bytes.count > 0 {
                    let lines = process.journal.append(bytes, from: stream, nowMs: Clock.wallMs())
                    server.metrics?.output(stream, bytes: bytes.count, lines: lines)   // metrics: output
                }
            })
            return (result, wanted)
        }
        result = try server.readBuffer.withUnsafeMutableBytes { try FD.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size])) }
        if case .bytes(let n) = result {
            let now = Clock.wallMs()
            server.readBuffer.withUnsafeBytes { raw in
                let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                process.raw(stream)?.append(bytes)
                let lines = process.journal.append(bytes, from: stream, nowMs: now)
                server.metrics?.output(stream, bytes: n, lines: lines)   // metrics: output
            }
        }
        return (result, size)
    }

    /// EOF or forced close: the partial line becomes a line, the fd is closed.
    func close() {
        guard io.isOpen else { return }
        if let process { server.persistence?.drop(process.handle, stream == .stdout ? "out" : "err") }
        io.close()
        heldByReader = false
        if let process {
            let lines = process.journal.finish(stream, nowMs: Clock.wallMs())
            server.metrics?.output(stream, bytes: 0, lines: lines)   // metrics: the last unterminated line
            process.outputs.removeAll { $0 === self }
            server.outputArrived(process)
            server.pipeClosed(process)
        }
    }
}

/// The write end of a child's stdin pipe with a bounded queue of bytes not yet accepted by the pipe.
final class StdinSink: EventHandler {
    unowned let server: Server
    /// The write end; watched for room only while bytes are queued.
    var io: WatchedFD
    var fd: Int32 { io.fd }
    var queue: [UInt8] = []
    var queueStart = 0
    var closed = false            // stdin/close was requested (the fd closes once the queue is flushed)
    var waiters: [() -> Void] = [] // connections paused because the queue was full
    weak var record: ProcessRecord? // set when its fd is in the fd store (to drop it when closed)

    init(server: Server, fd: Int32) { self.server = server; io = WatchedFD(fd, loop: server.loop) }

    var queued: Int { queue.count - queueStart }

    /// Queues bytes and tries to write them now.
    func enqueue(_ bytes: UnsafeRawBufferPointer) {
        guard fd >= 0 else { return }
        if queued == 0 {
            // Fast path: straight into the pipe.
            if case .bytes(let n)? = try? FD.write(fd, bytes) {
                if n == bytes.count { return }
                queue.append(contentsOf: bytes[n...])
            } else {
                queue.append(contentsOf: bytes)
            }
        } else {
            queue.append(contentsOf: bytes)
        }
        flush()
    }

    func flush() {
        while queued > 0 && fd >= 0 {
            let r: IOResult
            do {
                r = try queue.withUnsafeBytes { try FD.write(fd, UnsafeRawBufferPointer(rebasing: $0[queueStart...])) }
            } catch {
                // EPIPE: the child closed its stdin or exited; what is queued cannot be delivered.
                queue.removeAll(); queueStart = 0
                shut()
                return
            }
            guard case .bytes(let n) = r else { break }
            queueStart += n
        }
        if queueStart > 0 && queueStart == queue.count { queue.removeAll(keepingCapacity: queue.capacity <= 65536); queueStart = 0 }
        if queued > 0 {
            if !io.isWatched {
                do { try io.watch(.output, handler: self) } catch {
                    // Cannot wait for room in the pipe: what is queued cannot be delivered.
                    server.log.error("msg=\"cannot watch a stdin pipe, closing it\" error=\(Log.q("\(error)"))")
                    queue.removeAll(); queueStart = 0
                    shut()
                    return
                }
            }
        } else {
            io.unwatch()
            if closed { shut() }
        }
        if queued < server.config.maxStdinQueue / 2 && !waiters.isEmpty {
            let w = waiters
            waiters.removeAll()
            for f in w { f() }
        }
    }

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        if events.contains(.error) || events.contains(.hangup) {
            queue.removeAll(); queueStart = 0
            shut()
            return
        }
        flush()
    }

    /// Close requested: EOF for the child once everything queued is written.
    func requestClose() {
        closed = true
        if queued == 0 { shut() }
    }

    /// Closes the fd now (exit of the process, EPIPE, or close after flush).
    func shut() {
        closed = true
        if let record, fd >= 0 {
            server.persistence?.drop(record.handle, "in")
            server.markStateDirty(record)
        }
        io.close()
        let w = waiters
        waiters.removeAll()
        for f in w { f() }
    }
}

/// The pidfd of a running child is readable once it exits; its registration's handler is the record itself
/// (perf(memory): no object per process for it; the loop holds the record until the pidfd is closed at the reap).
extension ProcessRecord: EventHandler {
    public func handle(_ events: EpollEvents, _ loop: EventLoop) {
        server?.childExited(self, events: events)   // exit-status: HUP = reaped
    }
}
