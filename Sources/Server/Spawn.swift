// Spawn: turns a validated StartSpec into a running child: user lookup, environment, PATH lookup,
// pipes, the spawn itself (Sys.Proc.spawn, whose child side is C), and registration with the loop.
// Every failure before the child exists is reported without side effects (no fd or process left).
import Sys
import Reactor
import Supervision

extension Server {
    /// Validates limits, creates the record and launches its first run. Nothing is left behind on failure.
    func startProcess(_ spec: StartSpec) throws -> ProcessRecord {
        if stopping { throw APIError(503, "LIMIT_REACHED", "tendd is shutting down") }
        if table.runningCount >= config.maxProcesses {
            metrics?.spawnFailed(APIError(503, "LIMIT_REACHED", ""))   // metrics: refused at the limit
            throw APIError(503, "LIMIT_REACHED", "process limit reached (\(config.maxProcesses) running)")
        }
        if let name = spec.managed?.name, let other = table.names[name], !other.machine.isRetired {
            throw APIError(409, "NAME_IN_USE", "a managed process named \(Router.clip(name)) already exists (pid \(other.pid))")
        }
        let handle = table.nextHandle
        let output = makeOutput(handle: handle, maxBytes: config.journalBytes, maxLineBytes: config.maxLineBytes,
                                rawBytes: config.rawBytes)
        let record = ProcessRecord(handle: handle, spec: spec, output: output, machine: machine(for: spec))
        attachRetention(record)   // retention (issue 13)
        let region = record.region
        if let m = spec.managed { record.managed = ManagedState(spec: m, handle: handle) }
        do { try launch(record) } catch { metrics?.spawnFailed(error); throw error }   // metrics: spawn failures
        table.nextHandle += 1
        if let region { persistence?.store(region.fd, record.handle, "jnl") }
        if let name = spec.managed?.name {
            if let old = table.names[name] { old.managed?.nameReleased = true }
            table.names[name] = record
        }
        perform(record.machine.begin(), for: record)
        return record
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
        var toClose: [Int32] = []          // child ends (and the cgroup leaf fd), closed after the spawn
        var ours: [Int32] = []             // our ends, closed on failure
        func cleanup() { for fd in toClose + ours { FD.close(fd) } }
        var stdinFD = devNull, stdoutFD = devNull, stderrFD = devNull
        var stdinWrite: Int32 = -1, stdoutRead: Int32 = -1, stderrRead: Int32 = -1
        do {
            if spec.stdinMode == .pipe {
                let p = try FD.childPipe(childEnd: .read)
                stdinFD = p.read; stdinWrite = p.write
                toClose.append(p.read); ours.append(p.write)
            }
            if spec.stdoutMode == .capture {
                let p = try FD.childPipe(childEnd: .write, size: config.pipeSize)
                stdoutFD = p.write; stdoutRead = p.read
                toClose.append(p.write); ours.append(p.read)
            }
            if spec.stderrMode == .capture {
                let p = try FD.childPipe(childEnd: .write, size: config.pipeSize)
                stderrFD = p.write; stderrRead = p.read
                toClose.append(p.write); ours.append(p.read)
            }
        } catch let e as SysError {
            cleanup()
            if e.errno == EMFILE_ || e.errno == ENFILE_ {
                log.warn("msg=\"spawn refused\" reason=fd_limit error=\(Log.q(e.description))")   // hardening: a log line per refusal
                throw APIError(503, "LIMIT_REACHED", "out of file descriptors (\(e.reason))")
            }
            throw APIError(500, "SPAWN_FAILED", "cannot create pipes: \(e.reason)")
        }

        if let slave = spec.ptySlave { stdinFD = slave; stdoutFD = slave; stderrFD = slave }   // pty: the terminal is all three
        var plan = SpawnPlan(path: exe, argv: [spec.command] + spec.args, env: childEnvironment.compose(overrides),
                             cwd: spec.workingDir, stdin: stdinFD, stdout: stdoutFD, stderr: stderrFD, ids: ids)
        plan.controllingTTY = spec.ptySlave != nil   // pty
        let prepared = ownership.prepareLeaf(record.handle)
        let leaf = prepared?.path
        if let prepared, prepared.dirFD >= 0 {
            plan.cgroupFD = prepared.dirFD
            toClose.append(prepared.dirFD)
        }
        var pid: Int32 = 0, pidfd: Int32 = -1
        do {
            do {
                (pid, pidfd) = try spawnParked(plan)
            } catch let f as SpawnFailure where f.step == "join cgroup" {
                // The leaf is unusable (e.g. being removed): own this tree the fallback way instead.
                log.warn("msg=\"cannot join cgroup leaf, using the fallback for this process\" leaf=\(Log.q(leaf ?? ""))) error=\(Log.q(f.reason))")
                FD.close(plan.cgroupFD)
                toClose.removeAll { $0 == plan.cgroupFD }
                plan.cgroupFD = -1
                (pid, pidfd) = try spawnParked(plan)
            }
        } catch let f as SpawnFailure {
            cleanup()
            log.info("msg=\"spawn failed\" command=\(Log.q(spec.command)) step=\(f.step) error=\(Log.q(f.reason))")
            throw APIError(500, "SPAWN_FAILED", "cannot start \(Router.clip(spec.command)): \(f.step): \(f.reason)")
        } catch let e as SysError {
            cleanup()
            if e.errno == EAGAIN_ || e.errno == EMFILE_ || e.errno == ENFILE_ {
                log.warn("msg=\"spawn refused\" reason=process_limit error=\(Log.q(e.description))")   // hardening: a log line per refusal
                throw APIError(503, "LIMIT_REACHED", "cannot create a process now: \(e.reason)")
            }
            throw APIError(500, "SPAWN_FAILED", "cannot start \(Router.clip(spec.command)): \(e.reason)")
        }
        for fd in toClose { FD.close(fd) }

        if table.processes[record.pid] === record { table.processes[record.pid] = nil }   // a restart: the old pid is gone
        record.pid = pid
        record.startedAt = Clock.wallMs()
        record.endedAt = nil
        record.status = .running
        table.runningCount += 1
        metrics?.starts &+= 1   // metrics: runs spawned
        record.setCgroupLeaf(plan.cgroupFD >= 0 ? leaf : nil, sharing: ownership.base)
        if let old = table.insert(record) { forget(old) }     // a reused pid: the old record was exited
        attach(record, pidfd: pidfd, stdout: stdoutRead, stderr: stderrRead, stdin: stdinWrite)
        if let persistence {
            // A managed restart replaces the previous run's fds under the same names.
            for k in ["pid", "out", "err", "in"] { persistence.drop(record.handle, k) }
            persistence.store(pidfd, record.handle, "pid")
            persistence.store(stdoutRead, record.handle, "out")
            persistence.store(stderrRead, record.handle, "err")
            persistence.store(stdinWrite, record.handle, "in")
            record.stdin?.record = record
            markStateDirty(record)
        }
        log.info("msg=\"process started\" pid=\(pid) handle=\(record.handle) command=\(Log.q(spec.command)) args=\(spec.args.count)\(record.cgroupLeaf != nil ? " cgroup=1" : "")")
        testPause.reach(.afterSpawn, log)   // chaos: test-only pause point
    }

    /// Watches a record's fds with the loop: its pidfd (-1: the leader is gone), output pipes, stdin.
    /// Shared by a launch and by the restore after a crash or an upgrade. A registration that fails
    /// (epoll out of memory or watches) is logged and the fd closed: the record then reports what it can
    /// (a pipe that cannot be watched ends its stream; a pidfd that cannot be watched is polled at the tick).
    func attach(_ record: ProcessRecord, pidfd: Int32, stdout: Int32, stderr: Int32, stdin: Int32) {
        if pidfd >= 0 {
            let exit = ExitSource(server: self, process: record)
            record.exitSource = exit
            let io = WatchedFD(pidfd, loop: loop)
            record.pidfdIO = io
            do { try io.watch(.input, late: true, handler: exit) } catch {
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
