// Spawn: turns a validated StartSpec into a running child: user lookup, environment, PATH lookup,
// pipes, the spawn itself (Sys.Proc.spawn, whose child side is C), and registration with the loop.
// Every failure before the child exists is reported without side effects (no fd or process left).
import Sys
import Reactor
import Supervision

extension Server {
    /// Validates limits, creates the record and launches its first run. Nothing is left behind on failure.
    func startProcess(_ spec: StartSpec) throws -> ProcessRecord {
        let record = try newRecord(spec)
        do { try launch(record) } catch { metrics?.spawnFailed(error); throw error }   // metrics: spawn failures
        firstRunStarted(record)
        return record
    }

    /// `startProcess` for a request: `done` gets the record once its child has exec'd, or the error the
    /// client must hear. A plain process (not managed, not a PTY) is spawned without waiting for its exec
    /// (`PendingStart`) while the fd table is small; else (and where the C shim cannot) synchronously,
    /// with `done` called before this returns. Errors found before the spawn are thrown.
    func startProcess(_ spec: StartSpec, then done: @escaping (Result<ProcessRecord, Error>) -> Void) throws {
        guard asyncSpawn, spec.managed == nil, spec.ptySlave == nil, pendingStarts.count < Server.maxPendingStarts,
              (table.runningCount + pendingStarts.count) * 4 + connections.count < Server.asyncSpawnFDs else {
            return done(.success(try startProcess(spec)))
        }
        let record = try newRecord(spec)
        var prep: LaunchPrep
        do { prep = try prepareLaunch(record) } catch { metrics?.spawnFailed(error); throw error }
        let child: AsyncSpawn
        do {
            child = try Proc.spawnAsync(prep.plan)
        } catch {
            prep.cleanup()
            let e = spawnError(error, spec.command)
            metrics?.spawnFailed(e)
            throw e
        }
        let pending = PendingStart(server: self, record: record, prep: prep, child: child, done: done)
        do {
            pending.reg = try loop.register(child.reportFD, .input, handler: pending)
        } catch {
            log.warn("msg=\"cannot watch a spawn's report pipe; waiting for its exec\" error=\(Log.q("\(error)"))")
        }
        pendingStarts[child.pid] = pending
        if pending.reg == nil { settle(pending, wait: true) }
    }

    /// A child of `startProcess(_:then:)` has exec'd or failed (`wait`: block until it has).
    func settle(_ s: PendingStart, wait: Bool = false) {
        guard let outcome = s.child.settle(wait: wait) else { return }
        if let reg = s.reg { loop.deregister(reg); s.reg = nil }   // out of epoll first, then closed
        s.child.closeReport()
        pendingStarts[s.child.pid] = nil
        switch outcome {
        case .success:
            s.prep.closeChildEnds()
            finishLaunch(s.record, s.prep, pid: s.child.pid, pidfd: s.child.pidfd, async: true)
            firstRunStarted(s.record)
            s.done(.success(s.record))
        case .failure(let f):
            s.child.reapFailed()
            var prep = s.prep
            if f.step == "join cgroup" {
                // As in `spawnNow`: the leaf is unusable, own this tree the fallback way.
                log.warn("msg=\"cannot join cgroup leaf, using the fallback for this process\" leaf=\(Log.q(prep.leaf ?? ""))) error=\(Log.q(f.reason))")
                prep.dropCgroup()
                do {
                    let (pid, pidfd) = try spawnNow(&prep, s.record)
                    finishLaunch(s.record, prep, pid: pid, pidfd: pidfd)
                    firstRunStarted(s.record)
                    return s.done(.success(s.record))
                } catch {
                    metrics?.spawnFailed(error)
                    return s.done(.failure(error))
                }
            }
            prep.cleanup()
            let e = spawnError(f, s.record.spec.command)
            metrics?.spawnFailed(e)
            s.done(.failure(e))
        }
    }

    /// Every spawn still waiting for its exec, settled now (before a stop or an upgrade looks at the table).
    func settleAllPending() {
        for s in Array(pendingStarts.values) { settle(s, wait: true) }
    }

    static let maxPendingStarts = 64
    /// Beyond about this many open fds the child's copy of the fd table costs more than waiting for its
    /// exec under CLONE_FILES (measured: 7 µs at 100 fds, 44 µs at 4,000, 141 µs at 16,000).
    static let asyncSpawnFDs = 1024

    /// The checks and the record of a first run.
    private func newRecord(_ spec: StartSpec) throws -> ProcessRecord {
        if stopping { throw APIError(503, "LIMIT_REACHED", "tendd is shutting down") }
        if table.runningCount + pendingStarts.count >= config.maxProcesses {
            metrics?.spawnFailed(APIError(503, "LIMIT_REACHED", ""))   // metrics: refused at the limit
            throw APIError(503, "LIMIT_REACHED", "process limit reached (\(config.maxProcesses) running)")
        }
        if let name = spec.managed?.name, let other = table.names[name], !other.machine.isRetired {
            throw APIError(409, "NAME_IN_USE", "a managed process named \(Router.clip(name)) already exists (pid \(other.pid))")
        }
        let handle = table.nextHandle
        table.nextHandle += 1   // taken now: another start may begin before this one's child has exec'd
        let output = makeOutput(handle: handle, maxBytes: config.journalBytes, maxLineBytes: config.maxLineBytes,
                                rawBytes: config.rawBytes)
        let record = ProcessRecord(server: self, handle: handle, spec: spec, output: output, machine: machine(for: spec))
        attachRetention(record)   // retention (issue 13)
        if let m = spec.managed { record.managed = ManagedState(spec: m, handle: handle) }
        return record
    }

    /// A first run is in the table: its journal region, its name, its lifecycle.
    private func firstRunStarted(_ record: ProcessRecord) {
        if let region = record.region { persistence?.store(region.fd, record.handle, "jnl") }
        if let name = record.spec.managed?.name {
            if let old = table.names[name] { old.managed?.nameReleased = true }
            table.names[name] = record
        }
        perform(record.machine.begin(), for: record)
    }

    /// A new record's lifecycle machine: its restart policy, stop grace, health check, drain time, timeout.
    func machine(for spec: StartSpec) -> ProcessMachine {
        let m = spec.managed
        let health = m?.health.map { (initialDelayMs: $0.initialDelayMs, intervalMs: $0.intervalMs, failureThreshold: $0.failureThreshold) }
        return ProcessMachine(policy: m?.restart, stopGraceMs: m?.stopGraceMs ?? 0, healthCheck: health,
                              drainMs: config.drainMs, timeoutMs: spec.timeoutMs,
                              pipesOpen: spec.stdoutMode == .capture || spec.stderrMode == .capture)
    }

    /// Starts one run of `record` (its first, or a restart of a managed process): pipes, cgroup leaf,
    /// spawn, registration. On success the record is in the table under its new pid.
    func launch(_ record: ProcessRecord) throws {
        var prep = try prepareLaunch(record)
        let (pid, pidfd) = try spawnNow(&prep, record)
        finishLaunch(record, prep, pid: pid, pidfd: pidfd)
    }

    /// Everything a run needs before its child exists: credentials, environment, executable, pipes, the
    /// cgroup leaf. Throws (with nothing left open) what the client must hear.
    func prepareLaunch(_ record: ProcessRecord) throws -> LaunchPrep {
        let spec = record.spec

        // Credentials.
        var ids: (uid: UInt32, gid: UInt32, groups: [UInt32])? = nil
        var userRecord: UserRecord? = nil
        switch spec.user {
        case nil: break
        case .name(let n):
            guard let r = Users.byName(n) else { throw APIError(500, "USER_NOT_FOUND", "user not found: \(Router.clip(n))") }
            userRecord = r
            ids = (r.uid, r.gid, r.groups)
        case .uid(let u, let g):
            if let r = Users.byUID(u) {
                userRecord = r
                ids = (u, g ?? r.gid, g == nil ? r.groups : [g!])
            } else {
                ids = (u, g ?? u, [g ?? u])
            }
        }

        // Environment: the daemon's (minus its private variables), then the request's.
        // issue17-perf: the base is joined once (ChildEnvironment); a start only applies its overrides.
        var overrides: [(String, String)] = []
        if let r = userRecord, ids != nil {
            if let h = r.home { overrides.append(("HOME", h)) }
            if let n = r.name { overrides.append(("USER", n)); overrides.append(("LOGNAME", n)) }
        }
        overrides.append(contentsOf: spec.env)
        // The tree marker: how the fallback (no cgroup) finds orphaned descendants of this process.
        record.launches += 1
        overrides.append((Ownership.markerName, ownership.marker(record)))
        let pathVar = childEnvironment.value("PATH", overrides) ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        guard let exe = Proc.resolveExecutable(spec.command, path: pathVar, cwd: spec.workingDir) else {
            throw APIError(500, "SPAWN_FAILED", "cannot start \(Router.clip(spec.command)): No such file or directory (not found in PATH)")
        }

        // Pipes: the child's ends are blocking, ours are non-blocking; all close-on-exec.
        var prep = LaunchPrep()
        var stdinFD = devNull, stdoutFD = devNull, stderrFD = devNull
        do {
            if spec.stdinMode == .pipe {
                let p = try FD.childPipe(childEnd: .read)
                stdinFD = p.read; prep.stdinWrite = p.write
                prep.toClose.append(p.read); prep.ours.append(p.write)
            }
            if spec.stdoutMode == .capture {
                let p = try FD.childPipe(childEnd: .write, size: config.pipeSize)
                stdoutFD = p.write; prep.stdoutRead = p.read
                prep.toClose.append(p.write); prep.ours.append(p.read)
            }
            if spec.stderrMode == .capture {
                let p = try FD.childPipe(childEnd: .write, size: config.pipeSize)
                stderrFD = p.write; prep.stderrRead = p.read
                prep.toClose.append(p.write); prep.ours.append(p.read)
            }
        } catch let e as SysError {
            prep.cleanup()
            if e.errno == EMFILE_ || e.errno == ENFILE_ {
                log.warn("msg=\"spawn refused\" reason=fd_limit error=\(Log.q(e.description))")   // hardening: a log line per refusal
                throw APIError(503, "LIMIT_REACHED", "out of file descriptors (\(e.reason))")
            }
            throw APIError(500, "SPAWN_FAILED", "cannot create pipes: \(e.reason)")
        }

        if let slave = spec.ptySlave { stdinFD = slave; stdoutFD = slave; stderrFD = slave }   // pty: the terminal is all three
        prep.plan = SpawnPlan(path: exe, argv: [spec.command] + spec.args, env: childEnvironment.compose(overrides),
                              cwd: spec.workingDir, stdin: stdinFD, stdout: stdoutFD, stderr: stderrFD, ids: ids)
        prep.plan.controllingTTY = spec.ptySlave != nil   // pty
        let prepared = ownership.prepareLeaf(record.handle)
        prep.leaf = prepared?.path
        if let prepared, prepared.dirFD >= 0 {
            prep.plan.cgroupFD = prepared.dirFD
            prep.toClose.append(prepared.dirFD)
        }
        return prep
    }

    /// The synchronous spawn (CLONE_VFORK: back once the child has exec'd or failed). On failure
    /// everything `prep` holds is closed and the error is what the client must hear.
    func spawnNow(_ prep: inout LaunchPrep, _ record: ProcessRecord) throws -> (pid: Int32, pidfd: Int32) {
        var pid: Int32 = 0, pidfd: Int32 = -1
        do {
            do {
                (pid, pidfd) = try spawnParked(prep.plan)
            } catch let f as SpawnFailure where f.step == "join cgroup" {
                // The leaf is unusable (e.g. being removed): own this tree the fallback way instead.
                log.warn("msg=\"cannot join cgroup leaf, using the fallback for this process\" leaf=\(Log.q(prep.leaf ?? ""))) error=\(Log.q(f.reason))")
                prep.dropCgroup()
                (pid, pidfd) = try spawnParked(prep.plan)
            }
        } catch {
            prep.cleanup()
            throw spawnError(error, record.spec.command)
        }
        prep.closeChildEnds()
        return (pid, pidfd)
    }

    /// What the client hears when the spawn itself failed (clone, or a step in the child).
    func spawnError(_ error: Error, _ command: String) -> Error {
        if let f = error as? SpawnFailure {
            log.info("msg=\"spawn failed\" command=\(Log.q(command)) step=\(f.step) error=\(Log.q(f.reason))")
            return APIError(500, "SPAWN_FAILED", "cannot start \(Router.clip(command)): \(f.step): \(f.reason)")
        }
        if let e = error as? SysError {
            if e.errno == EAGAIN_ || e.errno == EMFILE_ || e.errno == ENFILE_ {
                log.warn("msg=\"spawn refused\" reason=process_limit error=\(Log.q(e.description))")   // hardening: a log line per refusal
                return APIError(503, "LIMIT_REACHED", "cannot create a process now: \(e.reason)")
            }
            return APIError(500, "SPAWN_FAILED", "cannot start \(Router.clip(command)): \(e.reason)")
        }
        return error
    }

    /// The run exists (its child has exec'd): it goes into the table and its fds into the loop.
    func finishLaunch(_ record: ProcessRecord, _ prep: LaunchPrep, pid: Int32, pidfd: Int32, async: Bool = false) {
        let spec = record.spec
        if table.processes[record.pid] === record { table.processes[record.pid] = nil }   // a restart: the old pid is gone
        record.pid = pid
        record.startedAt = Clock.wallMs()
        record.endedAt = nil
        record.status = .running
        table.runningCount += 1
        metrics?.starts &+= 1   // metrics: runs spawned
        record.setCgroupLeaf(prep.plan.cgroupFD >= 0 ? prep.leaf : nil, sharing: ownership.base)
        if let old = table.insert(record) { forget(old) }     // a reused pid: the old record was exited
        attach(record, pidfd: pidfd, stdout: prep.stdoutRead, stderr: prep.stderrRead, stdin: prep.stdinWrite)
        if let persistence {
            // A managed restart replaces the previous run's fds under the same names.
            for k in ["pid", "out", "err", "in"] { persistence.drop(record.handle, k) }
            persistence.store(pidfd, record.handle, "pid")
            persistence.store(prep.stdoutRead, record.handle, "out")
            persistence.store(prep.stderrRead, record.handle, "err")
            persistence.store(prep.stdinWrite, record.handle, "in")
            record.stdin?.record = record
            markStateDirty(record)
        }
        log.info("msg=\"process started\" pid=\(pid) handle=\(record.handle) command=\(Log.q(spec.command)) args=\(spec.args.count)\(record.cgroupLeaf != nil ? " cgroup=1" : "")\(async ? " exec=async" : "")")
        testPause.reach(.afterSpawn, log)   // chaos: test-only pause point
    }

    /// Watches a record's fds with the loop: its pidfd (-1: the leader is gone), output pipes, stdin.
    /// Shared by a launch and by the restore after a crash or an upgrade. A registration that fails
    /// (epoll out of memory or watches) is logged and the fd closed: the record then reports what it can
    /// (a pipe that cannot be watched ends its stream; a pidfd that cannot be watched is polled at the tick).
    func attach(_ record: ProcessRecord, pidfd: Int32, stdout: Int32, stderr: Int32, stdin: Int32) {
        if pidfd >= 0 {
            record.pidfdIO = WatchedFD(pidfd, loop: loop)
            do { try record.pidfdIO!.watch(.input, late: true, handler: record) } catch {
                log.error("msg=\"cannot watch a pidfd; its exit is polled\" pid=\(record.pid) error=\(Log.q("\(error)"))")
                table.unwatchedExits.append(record)
            }
        }
        for (fd, stream) in [(stdout, OutputStream.stdout), (stderr, .stderr)] where fd >= 0 {
            let src = PipeSource(server: self, process: record, stream: stream, fd: fd)
            record.outputs.append(src)
            do { try src.watch() } catch {
                log.error("msg=\"cannot watch an output pipe, closing it\" pid=\(record.pid) error=\(Log.q("\(error)"))")
                src.close()
            }
        }
        record.stdin = stdin >= 0 ? StdinSink(server: self, fd: stdin) : nil
    }

    /// Spawns without copying the daemon's fd table (which holds 4+ fds per process: 16,000 with 4,000
    /// processes): the child is cloned with CLONE_FILES and takes a private copy of just the fds below
    /// `keepBelow` (CLOSE_RANGE_UNSHARE). When every fd of the plan is already low (below
    /// `unparkedBelow`), that copy is small and the plan is spawned as it is. Otherwise the child's fds are
    /// first parked in reserved low slots, which go back to /dev/null (close-on-exec) right after, so no
    /// pipe end stays open here.
    func spawnParked(_ plan: SpawnPlan) throws -> (pid: Int32, pidfd: Int32) {
        guard let slots = spawnSlots else { return try Proc.spawn(plan) }
        // perf(start): parking costs 8 syscalls (dup2 in, dup3 back); a copy of a table of up to 64 fds
        // is the kernel's embedded one (NR_OPEN_DEFAULT, no allocation) and costs less.
        let highest = max(plan.stdin, plan.stdout, plan.stderr, plan.cgroupFD)
        if highest < Server.unparkedBelow {
            var p = plan
            p.keepBelow = UInt32(highest + 1)
            return try spawnSharingFiles(p, else: plan)
        }
        var p = plan
        defer {
            for s in slots { try? FD.dup2Cloexec(devNull, s) }
        }
        do {
            try FD.dup2(plan.stdin, slots[0]); p.stdin = slots[0]
            try FD.dup2(plan.stdout, slots[1]); p.stdout = slots[1]
            try FD.dup2(plan.stderr, slots[2]); p.stderr = slots[2]
            if plan.cgroupFD >= 0 { try FD.dup2(plan.cgroupFD, slots[3]); p.cgroupFD = slots[3] }
        } catch {
            return try Proc.spawn(plan)
        }
        p.keepBelow = UInt32(slots.max()! + 1)
        return try spawnSharingFiles(p, else: plan)
    }

    static let unparkedBelow: Int32 = 64

    /// Spawns `plan` (CLONE_FILES, `keepBelow` set); if the kernel cannot unshare the fd table that way,
    /// spawns `copying` (a plain fd-table copy) now and from now on.
    private func spawnSharingFiles(_ plan: SpawnPlan, else copying: SpawnPlan) throws -> (pid: Int32, pidfd: Int32) {
        do {
            return try Proc.spawn(plan)
        } catch let f as SpawnFailure where f.step == "unshare fd table" {
            log.warn("msg=\"CLONE_FILES spawn unavailable, copying the fd table from now on\" error=\(Log.q(f.reason))")
            spawnSlots = nil
            return try Proc.spawn(copying)
        }
    }
}

/// What a run needs between its preparation and its registration: the plan, the child's ends of its
/// pipes (closed once it has exec'd), our ends, the cgroup leaf.
struct LaunchPrep {
    var plan = SpawnPlan(path: "", argv: [], env: [], cwd: nil, stdin: -1, stdout: -1, stderr: -1, ids: nil)
    var toClose: [Int32] = []          // child ends (and the cgroup leaf fd)
    var ours: [Int32] = []             // our ends, closed on failure
    var stdinWrite: Int32 = -1, stdoutRead: Int32 = -1, stderrRead: Int32 = -1
    var leaf: String?

    func cleanup() { for fd in toClose + ours { FD.close(fd) } }
    func closeChildEnds() { for fd in toClose { FD.close(fd) } }
    mutating func dropCgroup() {
        FD.close(plan.cgroupFD)
        toClose.removeAll { $0 == plan.cgroupFD }
        plan.cgroupFD = -1
    }
}

/// A first run whose child was spawned without waiting for its exec (`Proc.spawnAsync`): nothing of it is
/// visible yet (not in the table, not counted as running, not in the state file; its pid is skipped by the
/// orphan reaper, which settles it instead). Its report pipe tells when the child has exec'd or failed;
/// then `Server.settle` registers it (or cleans up) and answers the request through `done`.
final class PendingStart: EventHandler {
    unowned let server: Server
    let record: ProcessRecord
    let prep: LaunchPrep
    let child: AsyncSpawn
    let done: (Result<ProcessRecord, Error>) -> Void
    var reg: Registration?

    init(server: Server, record: ProcessRecord, prep: LaunchPrep, child: AsyncSpawn,
         done: @escaping (Result<ProcessRecord, Error>) -> Void) {
        self.server = server; self.record = record; self.prep = prep; self.child = child; self.done = done
    }

    func handle(_ events: EpollEvents, _ loop: EventLoop) { server.settle(self) }
}
