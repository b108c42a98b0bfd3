// Server: the composition root. Owns the event loop, the listeners, the connections, the process
// table and the daemon's own signals; wires pipe output to followers and child exits to records.
import Sys
import Reactor
import Supervision
import JSON
import HTTP1

public final class Server {
    public let config: Config
    public let log: Log
    public let loop: EventLoop
    var token: [UInt8] = []
    let startedAtMono: Int64
    let devNull: Int32
    /// One read buffer for every pipe: reads go straight from it into a journal.
    /// Not zero-filled: its pages cost memory only once a read touches them (256 KiB less idle RSS).
    var readBuffer = [UInt8](unsafeUninitializedCapacity: 256 << 10) { _, count in count = 256 << 10 }

    var listeners: [Listener] = []
    var connections: [ObjectIdentifier: Connection] = [:]
    let table = ProcessTable()
    let acceptGuard = AcceptGuard()
    let ownership: Ownership
    var persistence: Persistence?
    /// retention (issue 13): the disk tier of output retention (nil: off). Retention.swift.
    var retention: DiskRetention?
    public var persistenceEnabled: Bool { persistence != nil }
    /// This binary, as a path that still names the new file after an upgrade replaced it.
    let executablePath: String
    var dirtyProcesses: [ObjectIdentifier: ProcessRecord] = [:]
    // perf(request): connections to flush, each once (its `dirty` flag); two arrays swapped per turn, so
    // marking a connection costs no hashing and flushing allocates nothing.
    var dirtyConnections: [Connection] = []
    private var flushing: [Connection] = []
    /// perf(request): where `Connection.send` serializes a JSON answer (reused; emptied after each answer).
    var jsonScratch: [UInt8] = []
    /// perf(request): the last /info body and the figures it shows (`infoBody()`).
    var infoCache = (key: InfoKey(uptimeSecs: 0, running: 0, total: 0), body: [UInt8]())
    var signalSource: SignalSource?
    lazy var tunnels = Tunnels(server: self)   // websocket: TCP tunnels over WebSocket (Tunnel.swift)
    lazy var ptys = PtySessions(server: self)  // pty: PTY sessions (Pty.swift)
    let systemd = SystemdIntegration()   // systemd: READY/STATUS/WATCHDOG/STOPPING hooks (SystemdIntegration.swift)
    let reapWaits = ReapWaits()          // exit-status: exits waiting for their parent's reap (ExitWatch.swift)
    let testPause = TestPause()          // chaos: test-only pause points (TestPause.swift)
    let notifier: Notifier               // chaos: non-blocking messages to the service manager (Notifier.swift)
    /// The daemon's own lifecycle: serving, then either re-executing itself (upgrade) or stopping.
    enum Phase { case serving, upgrading, stopping }
    private(set) var phase = Phase.serving
    var stopping: Bool { phase == .stopping }
    var orphanScanDue = false
    /// Reserved low fds for CLONE_FILES spawns (nil: copy the fd table instead).
    var spawnSlots: [Int32]?
    /// Starts whose child has not yet exec'd, by pid (Spawn.swift, `PendingStart`).
    var pendingStarts: [Int32: PendingStart] = [:]
    /// Plain starts do not wait for the child's exec (x86-64; TENDD_SYNC_SPAWN=1 turns it off).
    var asyncSpawn = Proc.asyncSpawnAvailable && Proc.getenv("TENDD_SYNC_SPAWN") != "1"
    public private(set) var exitCode: Int32? = nil
    let baseEnvironment: [(String, String)]
    /// metrics: counters and histograms (Metrics.swift); nil with --no-metrics / TENDD_NO_METRICS=1.
    let metrics: Metrics?
    var idleTrim = IdleTrim()   // issue17-perf
    /// Fan-out: events encoded once for several followers of a process (SharedEvents.swift).
    let sharedEvents = SharedEvents()
    lazy var childEnvironment = ChildEnvironment(baseEnvironment)   // issue17-perf: joined once, see ChildEnvironment.swift

    public init(config: Config) throws {
        self.config = config
        log = Log(level: config.logLevel)
        notifier = Notifier(log: log)
        // Four low fd slots for spawning with CLONE_FILES (Spawn.swift), taken before anything else so
        // their numbers are small: the child copies only the fds below them.
        var slots: [Int32] = []
        for _ in 0..<4 { slots.append(try FD.open("/dev/null", flags: FD.readWrite)) }
        spawnSlots = slots.max()! < 256 && Proc.getenv("TENDD_NO_CLONE_FILES") != "1" ? slots : nil
        if Proc.getenv("TENDD_NO_CLONE3") == "1" { Proc.disableClone3() }
        if spawnSlots == nil { for s in slots { FD.close(s) } }
        loop = try EventLoop()
        metrics = config.noMetrics || Proc.getenv("TENDD_NO_METRICS") == "1" ? nil : Metrics()   // metrics: the component
        loop.stats = metrics?.loopStats   // metrics: loop lag and iteration histograms
        var exe = FD.readLink("/proc/self/exe") ?? CommandLine.arguments[0]
        if exe.hasSuffix(" (deleted)") { exe = String(exe.dropLast(10)) }
        executablePath = exe
        if let dir = config.stateDir ?? Proc.getenv("RUNTIME_DIRECTORY")?.split(separator: ":").first.map(String.init),
           Proc.isDirectory(dir) {
            persistence = Persistence(dir: dir, notifier: notifier)
        }
        retention = Server.makeRetention(config, log)   // retention (issue 13)
        ownership = Ownership(disabled: config.noCgroup || Proc.getenv("TENDD_NO_CGROUP") == "1", log: log)
        startedAtMono = Clock.monotonicMs()
        devNull = try FD.open("/dev/null", flags: FD.readWrite)
        // Children get the daemon's environment minus what belongs to the daemon alone.
        let private_ = ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
                        "CREDENTIALS_DIRECTORY", "TENDD_TOKEN", "TENDD_REEXEC", "RUNTIME_DIRECTORY", "JOURNAL_STREAM", "INVOCATION_ID", "MONITOR_PID"]
        baseEnvironment = Proc.environment().compactMap { kv in
            guard let eq = kv.firstIndex(of: "=") else { return nil }
            let k = String(kv[..<eq])
            return private_.contains(k) ? nil : (k, String(kv[kv.index(after: eq)...]))
        }
    }

    // MARK: start-up

    /// Reads the token: `--token-file`, else the systemd credential `tendd-token`.
    public func loadToken() throws {
        var path = config.tokenFile
        if path == nil, let dir = Proc.getenv("CREDENTIALS_DIRECTORY") { path = dir + "/tendd-token" }
        guard let path else {
            throw ConfigError("no token configured: pass --token-file PATH (or run under systemd with the credential tendd-token)")
        }
        let raw: [UInt8]
        do { raw = try FD.readFile(path, limit: 4096) } catch { throw ConfigError("cannot read token file \(path): \(error)") }
        var t = raw[...]
        while let l = t.last, l == 0x0A || l == 0x0D || l == 0x20 || l == 0x09 { t = t.dropLast() }
        while let f = t.first, f == 0x20 || f == 0x09 { t = t.dropFirst() }
        guard !t.isEmpty else { throw ConfigError("token file \(path) is empty") }
        guard t.count <= 1024, !t.contains(where: { $0 < 0x21 || $0 > 0x7E }) else {
            throw ConfigError("token file \(path) must hold one printable ASCII token of at most 1024 bytes")
        }
        token = Array(t)
    }

    /// Adds listeners: from flags, or already-open fds (socket activation).
    public func listen(on addresses: [ListenAddress], inherited: [(fd: Int32, name: String)] = []) throws {
        for (fd, name) in inherited {
            try FD.setNonBlockingCloexec(fd)
            try addListener(fd: fd, label: name)
        }
        for a in addresses {
            let fd = try Socket.listen(a)
            try addListener(fd: fd, label: a.description)
        }
    }

    private func addListener(fd: Int32, label: String) throws {
        reserveSpareFD()   // hardening: the spare fd exists before the first connection, not at it
        let l = Listener(server: self, fd: fd, label: label)
        do { try l.io.watch(.input, handler: l) } catch { l.close(); throw error }
        listeners.append(l)
        log.info("msg=listening addr=\(Log.q(label))\(Socket.localPort(fd).map { " port=\($0)" } ?? "")")
    }

    public var boundPorts: [UInt16] { listeners.compactMap { Socket.localPort($0.fd) } }

    public func start() throws {
        ownership.isTrackedLeader = { [unowned self] pid in self.table.processes[pid]?.isRunning == true }
        ownership.loop = loop
        notifier.loop = loop   // chaos
        ownership.fillPool()
        Signal.ignorePipe()
        if !Proc.becomeSubreaper() { log.warn("msg=\"PR_SET_CHILD_SUBREAPER failed; orphans of children will not be reaped by tendd\"") }
        var signals = [Signal.term, Signal.int, Signal.hup, Signal.chld, Signal.usr2]
        if let freeze = systemd.freezeSignal { signals.append(freeze) }   // systemd: test-only freeze switch
        let sfd = try Signal.openFD(signals)
        let s = SignalSource(server: self, fd: sfd)
        s.reg = try loop.register(sfd, .input, late: true, handler: s)
        signalSource = s
        loop.addBeforeSleep { [unowned self] in self.beforeSleep() }
        loop.addBeforeSleep { [unowned self] in self.log.flush() }   // issue17-perf: one log write per loop turn, last
        scheduleTick()
    }

    /// Runs until a stop completes; returns the exit code.
    public func run() throws -> Int32 {
        systemd.ready(self)   // systemd: READY=1 (listeners are registered), starts the watchdog/status timers
        while exitCode == nil { try loop.runOnce() }
        return exitCode!
    }

    // MARK: the loop's phases that belong to the server

    /// Before sleeping: pump followers of processes that got output, write the state files, then flush connections.
    func beforeSleep() {
        if !dirtyProcesses.isEmpty {
            let procs = dirtyProcesses
            dirtyProcesses.removeAll(keepingCapacity: true)
            for (_, p) in procs { for f in p.followers { f.pump() } }
        }
        // chaos: the state files are written before any answer goes out, so a client never hears of a
        // process (201 + pid) that a crash right after would forget (the save used to follow the flush).
        let wrote = persistence.map { !$0.dirtyRecords.isEmpty } ?? false
        saveState()
        if wrote { testPause.reach(.stateWritten, log) }   // chaos: test-only pause point
        if !dirtyConnections.isEmpty {
            swap(&flushing, &dirtyConnections)   // marked while flushing: next turn
            for c in flushing { c.dirty = false; c.flush() }
            flushing.removeAll(keepingCapacity: true)
        }
    }

    func outputArrived(_ p: ProcessRecord) {
        if !p.followers.isEmpty { dirtyProcesses[ObjectIdentifier(p)] = p }
    }

    func markDirty(_ c: Connection) {
        if !c.dirty { c.dirty = true; dirtyConnections.append(c) }
    }

    /// Periodic housekeeping: header/idle deadlines, SSE keep-alives, record ages.
    private func scheduleTick() {
        let interval = max(20, min(250, config.sseKeepaliveMs / 2))
        loop.schedule(afterMs: interval) { [unowned self] in
            self.tick()
            self.scheduleTick()
        }
    }

    private func tick() {
        let now = loop.now
        // issue17-perf: give the code pages back once the daemon has been idle a second (IdleTrim.swift).
        if idleTrim.tick(busy: !connections.isEmpty || table.runningCount > 0, now: now), Proc.getenv("TENDD_NO_TRIM") != "1" {
            CodePages.trim()
            sharedEvents.releaseAll()
        }
        if orphanScanDue { orphanScanDue = false; reapOrphans() }
        if !table.unwatchedExits.isEmpty {
            for p in table.unwatchedExits where p.isRunning && p.pidfd >= 0 { childExited(p) }
            table.unwatchedExits.removeAll { !$0.isRunning }
        }
        for (_, c) in connections { c.checkDeadlines(now: now) }
        if config.exitedTTLms > 0 {
            let wall = Clock.wallMs()
            while let p = table.exitedOrder.first, let ended = p.endedAt, wall - ended > config.exitedTTLms {
                forget(p)
            }
        }
    }

    // MARK: processes

    func evictExited() {
        while table.exitedOrder.count > config.maxExited, let p = table.exitedOrder.first {
            forget(p)
        }
    }

    /// Drops an exited record (its followers keep their reference until their stream ends).
    func forget(_ p: ProcessRecord) {
        metrics?.retire(p)   // metrics: keep its journal's drops in the totals
        table.remove(p)
        cancelTimers(p)
        // An evicted record may still be draining: its pipes close with it (else a registered pipe of a
        // record nobody holds would keep reporting readiness).
        for o in p.outputs { o.close() }
        p.stdin?.shut()
        persistence?.drop(p.handle, "jnl")
        persistence?.goneHandles.insert(p.handle)
        persistence?.dirtyRecords[p.handle] = nil
        retention?.remove(handle: p.handle)   // retention (issue 13): its disk files go with it
        sharedEvents.forget(handle: p.handle)
        log.debug("msg=\"record forgotten\" pid=\(p.pid) handle=\(p.handle)")
    }

    /// Reaps orphans re-parented to us (we are a subreaper); our own children are reaped through their pidfds.
    func reapOrphans() {
        // waitid(P_ALL) would also reap our tracked children and lose their status to the pidfd path:
        // peek first; a tracked child goes through childExited (which reaps it by pidfd), others are reaped here.
        while let pid = Proc.peekExited() {
            if let s = pendingStarts[pid] {
                settle(s, wait: true)   // exited before its report was read: registered (or reaped) now
                continue
            }
            if let p = table.processes[pid], p.isRunning, p.pidfd >= 0 {
                childExited(p)
            } else {
                Proc.reap(pid: pid)
                log.debug("msg=\"reaped orphan\" pid=\(pid)")
            }
        }
    }

    // MARK: daemon signals and shutdown

    func handleSignal(_ sig: Int32) {
        switch sig {
        case Signal.term, Signal.int:
            beginStop(reason: Signal.name(sig))
        case Signal.hup:
            do { try loadToken(); log.info("msg=\"reloaded token\"") } catch { log.error("msg=\"reload failed\" error=\(Log.q("\(error)"))") }
        case Signal.chld:
            reapOrphans()
        case _ where sig == systemd.freezeSignal:
            systemd.freeze(self)   // systemd: test-only, blocks the loop so the watchdog trips
        case Signal.usr2:
            upgrade()
        default:
            break
        }
    }

    /// Stop accepting, TERM every child's group, KILL after the grace period, finish streams, exit 0.
    public func beginStop(reason: String) {
        guard phase != .stopping else { return }
        settleAllPending()   // their children are in the table (and stopped below) or gone
        phase = .stopping
        systemd.stopping(self, reason: reason)   // systemd: STOPPING=1
        log.info("msg=\"stopping\" reason=\(reason) running=\(table.runningCount)")
        for l in listeners { l.close() }
        listeners.removeAll()
        // Every process: TERM, KILL after the shutdown grace (a managed process backing off just stops).
        for p in table.processes.values { send(p, .stopRequested(Teardown(graceMs: config.shutdownGraceMs))) }
        // Hard deadline: never hang on a stream that cannot drain.
        loop.schedule(afterMs: config.shutdownGraceMs + config.drainMs + 2000) { [unowned self] in self.finishStop() }
        checkStopped()
    }

    /// SIGUSR2: no further stop or upgrade starts while the re-exec is being prepared.
    func beginUpgrade() { phase = .upgrading }

    func checkStopped() {
        guard stopping else { return }
        if table.processes.values.contains(where: { !$0.outputComplete }) { return }
        // Give streams a moment to flush their eof events.
        loop.schedule(afterMs: 50) { [unowned self] in self.finishStop() }
    }

    private func finishStop() {
        guard exitCode == nil else { return }
        for (_, c) in connections { c.flush() }
        for (_, c) in connections { c.abandonUpload() }   // files: no temporary upload file outlives the daemon
        ownership.removeSubtree(table.processes.values.compactMap { $0.cgroupLeaf })
        if let persistence {
            // A clean stop: nothing to re-adopt next time.
            for p in table.processes.values { for k in ["pid", "out", "err", "in", "jnl"] { persistence.drop(p.handle, k) } }
            persistence.clear()
        }
        retention?.removeAll()   // retention (issue 13): a clean stop re-adopts nothing
        log.info("msg=stopped")
        exitCode = 0
    }
}

struct ConfigError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A listening socket: accepts until EAGAIN (bounded per wake-up).
final class Listener: EventHandler {
    unowned let server: Server
    var io: WatchedFD
    var fd: Int32 { io.fd }
    let label: String
    init(server: Server, fd: Int32, label: String) { self.server = server; io = WatchedFD(fd, loop: server.loop); self.label = label }

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        server.reserveSpareFD()   // hardening: the reserved-fd trick (AcceptGuard.swift)
        for _ in 0..<64 {
            let cfd: Int32?
            do { cfd = try Socket.accept(fd) } catch let e as SysError {
                server.acceptFailed(self, e)   // hardening: EMFILE/ENFILE → 503 + pause (AcceptGuard.swift)
                return
            } catch { return }
            guard let cfd else { return }
            server.acceptSucceeded()
            server.idleTrim.noteActivity()   // issue17-perf: a connection, however short, ends an idle period
            server.accepted(cfd)
        }
    }

    func close() { io.close() }
}

/// The daemon's signalfd.
final class SignalSource: EventHandler {
    unowned let server: Server
    let fd: Int32
    var reg: Registration?
    init(server: Server, fd: Int32) { self.server = server; self.fd = fd }
    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        Signal.drain(fd) { sig, sender in   // perf(start): one read per wakeup, not a read and an EAGAIN
            if sig == Signal.chld {
                // Our own children are reaped through their pidfds; scanning every child with
                // waitid(P_ALL) (O(children) in the kernel) is only needed for orphans re-parented to
                // us, so at once only when the SIGCHLD is from a pid we have no record of; else (our
                // child, often already reaped through its pidfd; or coalesced signals) at the next tick.
                if server.table.processes[sender] != nil { server.orphanScanDue = true }
                else { server.reapOrphans() }
            } else {
                server.handleSignal(sig)
            }
        }
    }
}

/// perf(request): what a /info answer shows besides the constant version.
struct InfoKey: Equatable {
    var uptimeSecs: Int64
    var running: Int
    var total: Int
}
