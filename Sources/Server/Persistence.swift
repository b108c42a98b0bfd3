// Persistence: what lets a crash or an upgrade lose no process and no byte of output.
//
// The truth lives in fds and one small file:
//   - per process, in systemd's fd store (FDSTORE=1, FDPOLL=0) or handed to a re-executed image:
//     `p<handle>.pid` (pidfd), `p<handle>.out` / `.err` (pipe read ends), `.in` (stdin write end),
//     `.jnl` (the journal's memfd: all retained output, seqs, timestamps, partial lines);
//   - `daemon.json` and `p<handle>.json` in the state directory (RuntimeDirectory=, kept across restarts): specs, statuses,
//     exit codes, managed-process state; written atomically (write + rename) in the before-sleep phase
//     whenever it changed, and synchronously before an fd that it describes is given up.
// On start, the daemon gets its listeners and these fds back (sd_listen_fds_with_names, or LISTEN_FDS
// set by itself before re-exec), rebuilds the table, re-registers everything with the loop, takes the
// exits that happened while it was down (PIDFD_GET_INFO: it is no longer the parent), and only then
// reports READY=1.
import Sys
import Reactor
import Supervision
import JSON

final class Persistence {
    let dir: String
    /// Records whose file must be rewritten, and handles whose file must go (the next save).
    var dirtyRecords: [Int: ProcessRecord] = [:]
    var goneHandles: Set<Int> = []
    var daemonDirty = false
    /// Store fds with systemd (crash survival) — only when a manager listens.
    let useFDStore: Bool
    /// chaos: fd-store messages go through the Server's non-blocking notifier (Notifier.swift).
    let notifier: Notifier

    init(dir: String, notifier: Notifier) {
        self.dir = dir
        self.notifier = notifier
        useFDStore = FDStore.available
    }

    var daemonPath: String { dir + "/daemon.json" }
    func recordPath(_ handle: Int) -> String { dir + "/p\(handle).json" }

    /// daemon.json and every p<handle>.json (one small file per process: a start or an exit rewrites
    /// one file, never the whole table).
    func load() -> (daemon: JSONValue?, records: [JSONValue]) {
        let daemon = (try? FD.readFile(daemonPath, limit: 1 << 20)).flatMap { try? parseJSON($0) }
        var records: [JSONValue] = []
        for name in FD.listDirectory(dir) where name.hasPrefix("p") && name.hasSuffix(".json") {
            if let b = try? FD.readFile(dir + "/" + name, limit: 16 << 20), let v = try? parseJSON(b) { records.append(v) }
        }
        return (daemon, records)
    }

    func write(_ path: String, _ bytes: [UInt8]) throws {
        let tmp = path + ".tmp"
        let fd = try FD.open(tmp, flags: FD.writeOnly | FD.create | FD.truncate, mode: 0o600)
        do { try FD.writeAll(fd, bytes) } catch { FD.close(fd); throw error }
        FD.close(fd)
        try FD.rename(tmp, path)
    }

    /// A clean stop: nothing to re-adopt next time.
    func clear() {
        for name in FD.listDirectory(dir) where name.hasSuffix(".json") || name.hasSuffix(".json.tmp") {
            FD.unlink(dir + "/" + name)
        }
        dirtyRecords.removeAll()
        goneHandles.removeAll()
        daemonDirty = false
    }

    static func name(_ handle: Int, _ kind: String) -> String { "p\(handle).\(kind)" }

    func store(_ fd: Int32, _ handle: Int, _ kind: String) {
        guard useFDStore, fd >= 0 else { return }
        notifier.send("FDSTORE=1\nFDPOLL=0\nFDNAME=\(Persistence.name(handle, kind))", fd: fd)   // chaos: never blocks
    }

    func drop(_ handle: Int, _ kind: String) {
        guard useFDStore else { return }
        dropName(Persistence.name(handle, kind))
    }

    /// FDSTOREREMOVE of every stored fd named `name`.
    func dropName(_ name: String) {
        guard useFDStore else { return }
        notifier.send("FDSTOREREMOVE=1\nFDNAME=\(name)")   // chaos: never blocks
    }
}

// MARK: encoding

extension Server {
    /// `p` changed in a way that matters after a crash (started, exited, restarted, stdin closed…).
    func markStateDirty(_ p: ProcessRecord) {
        guard let persistence else { return }
        persistence.dirtyRecords[p.handle] = p
        persistence.daemonDirty = true
    }

    /// Writes what changed (before-sleep phase); `all` rewrites every record (upgrade, restore).
    func saveState(all: Bool = false) {
        guard let persistence, exitCode == nil else { return }
        if all { for p in table.processes.values { persistence.dirtyRecords[p.handle] = p }; persistence.daemonDirty = true }
        do {
            for h in persistence.goneHandles { FD.unlink(persistence.recordPath(h)) }
            persistence.goneHandles.removeAll()
            for (h, p) in persistence.dirtyRecords {
                try persistence.write(persistence.recordPath(h), encodeRecord(p).serialized())
            }
            persistence.dirtyRecords.removeAll(keepingCapacity: true)
            if persistence.daemonDirty {
                persistence.daemonDirty = false
                let d: JSONValue = .object([("version", .int(2)), ("daemon_pid", .int(Int64(ownership.daemonPid))),
                                            ("next_handle", .int(Int64(table.nextHandle))),
                                            ("subtrees", .array(ownership.lineage.map { .string($0) }))])   // chaos
                try persistence.write(persistence.daemonPath, d.serialized())
            }
        } catch {
            log.error("msg=\"cannot write state\" dir=\(Log.q(persistence.dir)) error=\(Log.q("\(error)"))")
        }
    }

    private func encodeRecord(_ p: ProcessRecord) -> JSONValue {
        let s = p.spec
        var user: JSONValue = .null
        switch s.user {
        case .name(let n)?: user = .object([("name", .string(n))])
        case .uid(let u, let g)?: user = .object([("uid", .int(Int64(u))), ("gid", g.map { .int(Int64($0)) } ?? .null)])
        case nil: break
        }
        var code: JSONValue = .null, sig: JSONValue = .null
        switch p.status {
        case .exited(let c): code = .int(Int64(c))
        case .signaled(let x): sig = .int(Int64(x))
        case .oomKilled: sig = .int(9)
        case .running, .exitUnknown: break   // exit-status: an unknown status is stored as such (below)
        }
        var managed: JSONValue = .null
        if let m = p.managed {
            var o = m.json(p.machine)
            if case .object(var kv) = o {
                kv.append(("backoff_step", .int(Int64(p.machine.backoffStep))))
                kv.append(("stop_requested", .bool(p.machine.state == .stopping(then: .stop))))
                if let e = m.lastError { kv.append(("spawn_error", .string(e))) }
                if let r = p.machine.stopReason { kv.append(("stop_reason", .string(r))) }
                o = .object(kv)
            }
            managed = o
        }
        return .object([
            ("handle", .int(Int64(p.handle))), ("pid", .int(Int64(p.pid))),
            ("command", .string(s.command)), ("args", .array(s.args.map { .string($0) })),
            ("env", .array(s.env.map { .array([.string($0.0), .string($0.1)]) })),
            ("working_dir", s.workingDir.map { .string($0) } ?? .null),
            ("stdin_mode", .string(s.stdinMode.rawValue)), ("stdout_mode", .string(s.stdoutMode.rawValue)),
            ("stderr_mode", .string(s.stderrMode.rawValue)), ("user", user),
            ("started_at", .int(p.startedAt)), ("ended_at", p.endedAt.map { .int($0) } ?? .null),
            ("status", .string(p.status.name)), ("exit_code", code), ("signal", sig),
            ("exit_status_unknown", .bool(p.status == .exitUnknown)),   // exit-status
            ("cgroup_leaf", p.cgroupLeaf.map { .string($0) } ?? .null),
            ("stdin_closed", .bool(p.stdin?.closed ?? true)), ("is_run", .bool(p.isRun)),
            ("timed_out", .bool(p.machine.timedOut)),
            ("journal_bytes", .int(Int64(p.journal.boundBytes))), ("max_line_bytes", .int(Int64(p.journal.maxLineBytes))),
            ("raw_bytes", .int(Int64(p.rawOut?.capacity ?? p.rawErr?.capacity ?? p.lazyRawBytes))), ("launches", .int(Int64(p.launches))),
            ("managed", managed),
            ("pty", ptys.persistedState(p)),   // pty: the session served on this process's terminal (Pty.swift)
        ])
    }
}

// MARK: restoring

extension Server {
    /// Rebuilds the process table from the state file and the fds that survived (names `p<handle>.<kind>`).
    /// Every fd in `stored` is either adopted or closed. Returns a one-line summary for the log.
    @discardableResult
    public func restore(stored: [(fd: Int32, name: String)]) -> String {
        var byName: [String: Int32] = [:]
        for (fd, name) in stored { if let old = byName[name] { FD.close(old) }; byName[name] = fd }
        func take(_ h: Int, _ kind: String) -> Int32? { byName.removeValue(forKey: Persistence.name(h, kind)) }
        guard let (state, list) = persistence.map({ $0.load() }), state != nil || !list.isEmpty else {
            for (name, fd) in byName {
                if name.hasSuffix(".pid") {
                    log.error("msg=\"process without a record, killing it\" name=\(Log.q(name))")
                    _ = try? Proc.signal(pidfd: fd, Signal.kill)
                }
                FD.close(fd); notifier.send("FDSTOREREMOVE=1\nFDNAME=\(name)")   // chaos: never blocks
            }
            // chaos: the daemon pid (and so our cgroup subtree) is on disk from the start: the tree marker of a
            // process whose record a crash never wrote names it, and the next restore sweeps that subtree.
            persistence?.daemonDirty = true
            saveState()
            return stored.isEmpty ? "nothing to restore" : "no state file: \(stored.count) stored fds dropped"
        }
        if case .int(let n)? = state?["next_handle"] { table.nextHandle = max(table.nextHandle, Int(n)) }
        var oldDaemon: Int32? = nil
        if case .int(let n)? = state?["daemon_pid"] { oldDaemon = Int32(n) }
        var adopted = 0, exitedWhileDown = 0, lost = 0
        for entry in list {
            guard case .int(let h64)? = entry["handle"], case .int(let pid64)? = entry["pid"],
                  let spec = decodeSpec(entry) else { lost += 1; continue }
            let h = Int(h64)
            let maxBytes = Int(entry["journal_bytes"].flatMap { if case .int(let n) = $0 { return n } else { return nil } } ?? Int64(config.journalBytes))
            let maxLine = Int(entry["max_line_bytes"].flatMap { if case .int(let n) = $0 { return n } else { return nil } } ?? Int64(config.maxLineBytes))
            let rawBytes = Int(entry["raw_bytes"].flatMap { if case .int(let n) = $0 { return n } else { return nil } } ?? Int64(0))
            var output: OutputStorage? = nil
            if let jfd = take(h, "jnl") {
                do {
                    let r = try SharedRegion(adopting: jfd)
                    output = try OutputLayout(maxBytes: maxBytes, maxLineBytes: maxLine, rawBytes: rawBytes).open(r, fresh: false, log: log)
                } catch {
                    log.error("msg=\"journal not recoverable\" handle=\(h) error=\(Log.q("\(error)"))")
                }
            }
            if output == nil {
                log.warn("msg=\"journal lost, starting an empty one\" handle=\(h)")
                output = makeOutput(handle: h, maxBytes: maxBytes, maxLineBytes: maxLine, rawBytes: rawBytes)
            }
            let pipesOpen = byName[Persistence.name(h, "out")] != nil || byName[Persistence.name(h, "err")] != nil
            let p = ProcessRecord(server: self, handle: h, spec: spec, output: output!,
                                  machine: restoredMachine(spec, status: decodeStatus(entry), managed: entry["managed"], pipesOpen: pipesOpen))
            attachRetention(p)   // retention (issue 13): recovers its segment files
            if let region = p.region { persistence?.store(region.fd, h, "jnl") }
            p.pid = Int32(pid64)
            if case .int(let t)? = entry["started_at"] { p.startedAt = t }
            if case .int(let t)? = entry["ended_at"] { p.endedAt = t }
            if case .string(let leaf)? = entry["cgroup_leaf"] { p.setCgroupLeaf(leaf, sharing: ownership.base) }
            if case .bool(true)? = entry["is_run"] { p.isRun = true }
            if case .int(let n)? = entry["launches"] { p.launches = Int(n) }
            p.status = decodeStatus(entry)
            if let m = spec.managed { p.managed = ManagedState(spec: m, handle: h); restoreManaged(p.managed!, entry["managed"]) }
            table.nextHandle = max(table.nextHandle, h + 1)
            var pidfd: Int32 = -1

            if p.status == .running {
                if let fd = take(h, "pid") {
                    pidfd = fd
                    persistence?.store(fd, h, "pid")
                } else {
                    log.error("msg=\"cannot re-adopt: pidfd missing, killing its tree\" pid=\(p.pid) handle=\(h)")
                    if let leaf = p.cgroupLeaf { Cgroup.kill(leaf) }
                    if let oldDaemon {
                        // Without a leaf: every process that still carries this process's tree marker (so
                        // never a stranger that reused the pid) is killed.
                        ownership.killMarked("\(Ownership.markerName)=\(oldDaemon).\(h)", anyRun: true)
                    }
                    p.status = .signaled(Signal.kill)
                    p.endedAt = Clock.wallMs()
                    if let m = p.managed { m.lastError = "lost across a daemon restart (pidfd missing)" }
                    p.machine = restoredMachine(spec, status: p.status, managed: nil, pipesOpen: pipesOpen)
                    lost += 1
                }
            }
            if p.status == .running { table.runningCount += 1 }
            let out = take(h, "out"), err = take(h, "err"), stdinFD = take(h, "in")
            attach(p, pidfd: pidfd, stdout: out ?? -1, stderr: err ?? -1, stdin: stdinFD ?? -1)
            for (fd, kind) in [(out, "out"), (err, "err"), (stdinFD, "in")] { if let fd { persistence?.store(fd, h, kind) } }
            if stdinFD != nil {
                p.stdin?.record = p
                if !p.isRunning { p.stdin?.shut() }
            } else if spec.stdinMode == .pipe {
                // Closed before the crash: keep answering STDIN_NOT_WRITABLE for it.
                let s = StdinSink(server: self, fd: -1)
                s.closed = true
                p.stdin = s
            }
            if let old = table.insert(p) { forget(old) }
            if let n = spec.managed?.name, !p.machine.isRetired || table.names[n] == nil { table.names[n] = p }
            if let meta = entry["pty"], case .object = meta { ptys.adopt(p, meta, master: take(h, "pty"), backlog: take(h, "ptyb")) }   // pty
            adopted += 1
            if p.machine.isRetired { table.exitedOrder.append(p) }
        }
        for (name, fd) in byName {
            if name.hasSuffix(".pid"), name.hasPrefix("p"), let h = Int(name.dropFirst().dropLast(4)) {
                // A process whose record never reached the state files (a crash right after its start):
                // it cannot be served, so it must not be leaked either.
                log.error("msg=\"process without a record, killing its tree\" name=\(Log.q(name))")
                _ = try? Proc.signal(pidfd: fd, Signal.kill)
                if let oldDaemon { ownership.killMarked("\(Ownership.markerName)=\(oldDaemon).\(h)", anyRun: true) }
            }
            log.warn("msg=\"stored fd not claimed by any process, closing\" name=\(Log.q(name))")
            FD.close(fd)
            persistence?.dropName(name)
        }
        table.exitedOrder.sort { ($0.endedAt ?? 0) < ($1.endedAt ?? 0) }
        // chaos: the subtrees of earlier daemons on this state: empty leaves go, unclaimed populated ones are
        // killed (SubtreeSweep.swift); then daemon.json names us (and what is left of them) at once.
        var lineage = Set<String>()
        if case .array(let a)? = state?["subtrees"] { for case .string(let n) in a { lineage.insert(n) } }
        if let oldDaemon { lineage.insert("tendd-\(oldDaemon)") }
        for p in table.processes.values { if let leaf = p.cgroupLeaf, let parent = leaf.split(separator: "/").dropLast().last { lineage.insert(String(parent)) } }
        ownership.sweepDeadSubtrees(lineage: lineage, claimed: Set(table.processes.values.compactMap { $0.isRunning ? $0.cgroupLeaf : nil }))
        persistence?.daemonDirty = true
        saveState()
        testPause.reach(.restore, log)   // chaos: test-only pause point
        // Exits while we were down, runs whose client is gone, supervisors to resume.
        for p in table.processes.values.sorted(by: { $0.handle < $1.handle }) {
            // exit-status: ended while we were down (readable: exited; hung up: reaped by systemd). An exit
            // not reaped yet waits for its reap in the loop (ExitWatch.swift).
            if p.isRunning, p.pidfd >= 0, let events = exitReadiness(p) {
                exitedWhileDown += 1
                childExited(p, events: events)
                continue
            }
            if p.isRun && p.isRunning {
                log.info("msg=\"run lost its client in the restart, killing\" pid=\(p.pid)")
                send(p, .clientLeft)
                continue
            }
            if !p.isRunning && p.machine.leaderAlive {
                // chaos: an exit whose supervisor decision was lost in a crash: decide now.
                var clean = false
                if case .exited(0) = p.status { clean = true }
                log.info("msg=\"re-deciding an exit whose decision was lost\" pid=\(p.pid) handle=\(p.handle)")
                send(p, .leaderExited(cleanly: clean, runtimeMs: (p.endedAt ?? 0) - p.startedAt))
                markStateDirty(p)
                continue
            }
            // The timers the machine's state needs again (health probes, a back-off in progress, the
            // drain time of pipes still open, a stop's grace).
            let left = (p.managed?.nextRestartAt ?? Clock.wallMs()) - Clock.wallMs()
            perform(p.machine.resume(backoffLeftMs: left), for: p)
            if p.machine.state == .draining && p.outputs.isEmpty { send(p, .outputClosed) }
        }
        saveState(all: true)
        metrics?.restored(upgrade: Proc.getenv("TENDD_REEXEC") == "1", adopted: adopted)   // metrics: restores
        return "adopted=\(adopted) exited_while_down=\(exitedWhileDown) lost=\(lost)"
    }

    private func decodeSpec(_ e: JSONValue) -> StartSpec? {
        guard case .string(let command)? = e["command"] else { return nil }
        var args: [String] = []
        if case .array(let a)? = e["args"] { for x in a { if case .string(let s) = x { args.append(s) } } }
        var env: [(String, String)] = []
        if case .array(let a)? = e["env"] {
            for x in a { if case .array(let kv) = x, kv.count == 2, case .string(let k) = kv[0], case .string(let v) = kv[1] { env.append((k, v)) } }
        }
        var spec = StartSpec(command: command, args: args, env: env, workingDir: nil, user: nil)
        if case .string(let w)? = e["working_dir"] { spec.workingDir = w }
        if case .string(let m)? = e["stdin_mode"], let v = StdinMode(rawValue: m) { spec.stdinMode = v }
        if case .string(let m)? = e["stdout_mode"], let v = OutputMode(rawValue: m) { spec.stdoutMode = v }
        if case .string(let m)? = e["stderr_mode"], let v = OutputMode(rawValue: m) { spec.stderrMode = v }
        if let u = e["user"], case .object = u {
            if case .string(let n)? = u["name"] { spec.user = .name(n) }
            else if case .int(let uid)? = u["uid"] {
                var gid: UInt32? = nil
                if case .int(let g)? = u["gid"] { gid = UInt32(g) }
                spec.user = .uid(UInt32(uid), gid: gid)
            }
        }
        if let m = e["managed"], case .object = m {
            var o: [(String, JSONValue)] = []
            for k in ["name", "restart", "health_check", "stop_grace_ms"] { if let v = m[k] { o.append((k, v)) } }
            spec.managed = (try? RequestDecoding.managed(.object(o))) ?? nil
        }
        return spec
    }

    private func decodeStatus(_ e: JSONValue) -> ProcessStatus {
        switch e["status"] {
        // exit-status: "exited" without a code is an unknown status, never -1.
        case .string("exited")?: if case .int(let c)? = e["exit_code"] { return .exited(Int32(c)) }; return .exitUnknown
        case .string("signaled")?: if case .int(let s)? = e["signal"] { return .signaled(Int32(s)) }; return .signaled(9)
        case .string("oom_killed")?: return .oomKilled
        default: return .running
        }
    }

    private func restoreManaged(_ m: ManagedState, _ v: JSONValue?) {
        guard let v else { return }
        if case .string(let s)? = v["spawn_error"] { m.lastError = s }
        if case .int(let n)? = v["next_restart_at"] { m.nextRestartAt = n }
        if let le = v["last_exit"], case .object = le, case .int(let ended)? = le["ended_at"] {
            var code: Int32? = nil, sig: Int32? = nil
            if case .int(let c)? = le["exit_code"] { code = Int32(c) }
            if case .int(let s)? = le["signal"] { sig = Int32(s) }
            m.lastExit = (code, sig, le["oom_killed"] == .bool(true), ended)
        }
    }

    /// The lifecycle machine of a restored record, from its stored status and supervisor fields.
    func restoredMachine(_ spec: StartSpec, status: ProcessStatus, managed v: JSONValue?, pipesOpen: Bool) -> ProcessMachine {
        let fresh = machine(for: spec)
        var stopRequested = false, backingOff = false
        var restarts = 0, step = 0, failures = 0, reason: String? = nil
        var health: ProcessMachine.Health = fresh.health
        if let v {
            if case .bool(let b)? = v["stop_requested"] { stopRequested = b }
            if case .string("backing_off")? = v["status"] { backingOff = true }
            if case .int(let n)? = v["restart_count"] { restarts = Int(n) }
            if case .int(let n)? = v["backoff_step"] { step = Int(n) }
            if case .int(let n)? = v["consecutive_health_failures"] { failures = Int(n) }
            if case .string(let s)? = v["health_status"], let h = ProcessMachine.Health(rawValue: s) { health = h }
            if case .string(let s)? = v["stop_reason"] { reason = s }
        }
        var decided = true
        if case .string(let s)? = v?["status"], s == "running" || s == "starting" { decided = false }
        let state: ProcessMachine.State
        if status == .running { state = stopRequested ? .stopping(then: .stop) : .running(then: .policy) }
        else if backingOff && !stopRequested && spec.managed != nil { state = .backingOff }
        else if spec.managed != nil && !decided && !stopRequested {
            // The exit was written (synchronously, before the pidfd was given up) but the supervisor's
            // decision was not (a crash before the next save): the machine is left before the exit, and
            // the restore feeds it the exit again (`restore`), so the policy decides as it would have.
            state = .running(then: .policy)
        }
        else { state = pipesOpen ? .draining : .exited }
        return ProcessMachine(restoring: state, policy: fresh.policy, stopGraceMs: fresh.stopGraceMs,
                              healthCheck: fresh.healthCheck, drainMs: fresh.drainMs, restartCount: restarts,
                              backoffStep: step, health: health, healthFailures: failures, pipesOpen: pipesOpen,
                              stopReason: reason)
    }

    /// The output storage of a new record (journal + raw rings): in one memfd (crash-safe) when
    /// persistence is on, else on the heap.
    func makeOutput(handle: Int, maxBytes: Int, maxLineBytes: Int, rawBytes: Int) -> OutputStorage {
        if persistence != nil {
            do {
                let layout = OutputLayout(maxBytes: maxBytes, maxLineBytes: maxLineBytes, rawBytes: rawBytes)
                let r = try SharedRegion(name: "tendd-p\(handle)", size: layout.size)
                return try layout.open(r, fresh: true)
            } catch {
                log.warn("msg=\"memfd journal unavailable, using the heap (not crash-safe)\" error=\(Log.q("\(error)"))")
            }
        }
        // perf(memory): the rings are made on a stream's first byte or first raw reader (ProcessRecord.raw).
        return OutputStorage(journal: Journal(maxBytes: maxBytes, maxLineBytes: maxLineBytes),
                             rawOut: nil, rawErr: nil, region: nil, lazyRawBytes: rawBytes)
    }
}

// MARK: upgrade (re-exec in place)

extension Server {
    /// SIGUSR2 / `systemctl reload`: re-executes this binary (same pid) and hands it every listener and
    /// every process fd as LISTEN_FDS, exactly the way systemd would after a crash; the new image
    /// restores through the same path. Children stay our children (waitid keeps working). Client
    /// connections are closed (SSE followers resume with Last-Event-ID); the listening sockets stay
    /// open throughout, so no connection is refused: the kernel queues them until the new image accepts.
    func upgrade() {
        guard phase == .serving else { return }
        guard persistence != nil else {
            log.error("msg=\"upgrade refused: no state directory (--state-dir or RuntimeDirectory=), output would be lost\"")
            return
        }
        // First stop accepting (the kernel keeps queueing connections on the listening sockets, which the
        // new image inherits) and let requests in flight finish, so no accepted connection is dropped
        // mid-request. Streams and idle keep-alive connections are closed by the exec (streams resume by id).
        beginUpgrade()
        for l in listeners { l.io.unwatch() }
        let deadline = loop.now + 2000
        func check() {
            let busy = connections.values.contains { $0.inFlight(now: loop.now) }
            if busy && loop.now < deadline {
                loop.schedule(afterMs: 5) { check() }
            } else {
                reexec()
            }
        }
        check()
    }

    private func reexec() {
        settleAllPending()   // a start in flight when the wait ended: its child goes into the state file too
        for (_, c) in connections { c.abandonUpload() }   // files: no temporary upload file outlives this image
        log.info("msg=\"upgrade: re-executing\" path=\(Log.q(executablePath)) processes=\(table.processes.count)")
        if systemd.enabled { notifier.send("RELOADING=1\nSTATUS=re-executing", droppable: true) }   // chaos: never blocks
        // Everything a pipe held is still in the pipe; what was read is in the memfd journals.
        saveState(all: true)
        var fds: [(Int32, String)] = []
        for l in listeners { fds.append((l.fd, "listen")) }
        for p in table.processes.values {
            if p.pidfd >= 0 { fds.append((p.pidfd, Persistence.name(p.handle, "pid"))) }
            for o in p.outputs where o.fd >= 0 { fds.append((o.fd, Persistence.name(p.handle, o.stream == .stdout ? "out" : "err"))) }
            if let s = p.stdin, s.fd >= 0 { fds.append((s.fd, Persistence.name(p.handle, "in"))) }
            if let r = p.region { fds.append((r.fd, Persistence.name(p.handle, "jnl"))) }
        }
        fds.append(contentsOf: ptys.handOverFDs)   // pty: masters and backlogs of PTY sessions
        // Move them to 3, 4, ...: first out of the way (above the target range), then into place.
        let above = Int32(3 + fds.count + 8)
        var moved: [Int32] = []
        do {
            for (fd, _) in fds { moved.append(try FD.dup(fd, atLeast: above)) }
            for (i, fd) in moved.enumerated() { try FD.dup2(fd, Int32(3 + i)) }
        } catch {
            log.error("msg=\"upgrade failed before exec; exiting so the service manager restarts us\" error=\(Log.q("\(error)"))")
            Proc.exit(1)
        }
        var env = Proc.environment().filter {
            !$0.hasPrefix("LISTEN_FDS=") && !$0.hasPrefix("LISTEN_PID=") && !$0.hasPrefix("LISTEN_FDNAMES=") && !$0.hasPrefix("TENDD_REEXEC=")
        }
        env.append("LISTEN_FDS=\(fds.count)")
        env.append("LISTEN_PID=\(Proc.myPid)")
        env.append("LISTEN_FDNAMES=" + fds.map { $0.1 }.joined(separator: ":"))
        env.append("TENDD_REEXEC=1")
        if let dir = persistence?.dir, config.stateDir == nil { env.append("RUNTIME_DIRECTORY=\(dir)") }
        log.flush()   // issue17-perf: buffered log lines are written before the image is replaced
        testPause.reach(.reexec, log)   // chaos: test-only pause point
        let err = Proc.exec(executablePath, argv: CommandLine.arguments, env: env)
        // Our fds 3.. were overwritten: this image cannot go on. The stored fds (systemd) or nothing remain.
        log.error("msg=\"upgrade exec failed; exiting\" error=\(Log.q(err.description))")
        Proc.exit(1)
    }
}

/// A record's output: the line journal and the raw rings, and the memfd they live in (crash-safe mode).
struct OutputStorage {
    var journal: Journal
    var rawOut: ByteRing?
    var rawErr: ByteRing?
    var region: SharedRegion?
    /// Heap mode: the capacity of the raw rings, made when first needed (`ProcessRecord.raw`); 0: none.
    var lazyRawBytes = 0
}

/// Where the journal and the raw rings sit in one memfd: `[journal][raw stdout][raw stderr]`, each part
/// page-aligned (untouched pages cost nothing). `rawBytes` 0: no raw rings.
struct OutputLayout {
    let maxBytes: Int, maxLineBytes: Int, rawBytes: Int
    var journalSize: Int { Journal.regionSize(maxBytes: maxBytes, maxLineBytes: maxLineBytes) }
    var rawSize: Int { rawBytes > 0 ? (ByteRing.regionSize(capacity: rawBytes) + 4095) & ~4095 : 0 }
    var size: Int { journalSize + 2 * rawSize }

    /// Builds (fresh) or recovers the storage in `region`. The journal must recover; a raw ring that does
    /// not (a region from a daemon without raw rings, or a damaged header) is left out.
    func open(_ region: SharedRegion, fresh: Bool, log: Log? = nil) throws -> OutputStorage {
        let b = region.bytes
        // Without raw rings the journal may have the whole region (one made by an older daemon can be
        // laid out for an older journal format).
        let journalPart = rawBytes > 0 ? b[0..<min(b.count, journalSize)] : b[...]
        let journal = try Journal(region: UnsafeMutableRawBufferPointer(rebasing: journalPart),
                                  maxBytes: maxBytes, maxLineBytes: maxLineBytes, fresh: fresh)
        var rings: [ByteRing?] = [nil, nil]
        if rawBytes > 0 && b.count >= size {
            for k in 0..<2 {
                let at = journalSize + k * rawSize
                do {
                    rings[k] = try ByteRing(region: UnsafeMutableRawBufferPointer(rebasing: b[at..<(at + rawSize)]),
                                            capacity: rawBytes, fresh: fresh)
                } catch {
                    log?.warn("msg=\"raw output not recoverable\" stream=\(k == 0 ? "stdout" : "stderr") error=\(Log.q("\(error)"))")
                }
            }
        }
        return OutputStorage(journal: journal, rawOut: rings[0], rawErr: rings[1], region: region)
    }
}
