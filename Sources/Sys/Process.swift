// Process: the kernel side of a child: spawning it (the C shim runs the child side),
// its pidfd (signals and the non-blocking reap), and orphan reaping as a subreaper.
import Glibc
import CShims

public struct SpawnPlan {
    public var path: String                 // absolute, resolved by `resolveExecutable`
    public var argv: [String]
    public var env: [String]                // "K=V"
    public var cwd: String?
    public var stdin: Int32, stdout: Int32, stderr: Int32
    public var ids: (uid: UInt32, gid: UInt32, groups: [UInt32])?
    public var cgroupFD: Int32 = -1
    /// CLONE_FILES + CLOSE_RANGE_UNSHARE: every fd of the plan must be below `keepBelow`.
    public var keepBelow: UInt32? = nil
    /// pty: `stdin` is a pty slave that becomes the child's controlling terminal.
    public var controllingTTY = false
    public init(path: String, argv: [String], env: [String], cwd: String?, stdin: Int32, stdout: Int32, stderr: Int32,
                ids: (uid: UInt32, gid: UInt32, groups: [UInt32])?) {
        self.path = path; self.argv = argv; self.env = env; self.cwd = cwd
        self.stdin = stdin; self.stdout = stdout; self.stderr = stderr; self.ids = ids
    }
}

public struct SpawnFailure: Error, CustomStringConvertible {
    public let step: String
    public let errno: Int32
    public var reason: String { String(cString: strerror(errno)) }
    public var description: String { "\(step): \(reason)" }
}

/// How a child ended, as the kernel reports it.
public enum ExitReport: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32, coreDumped: Bool)
}

public enum Proc {
    /// Starts the child. Returns (pid, pidfd). Throws SpawnFailure if a step in the child failed (the
    /// child has then been reaped) or SysError if clone failed.
    /// Start children with clone + a write to cgroup.procs instead of clone3(CLONE_INTO_CGROUP).
    public static func disableClone3() { tend_spawn_without_clone3() }

    /// Whether `spawnAsync` works here (the C shim's child side needs x86-64 raw system calls).
    #if arch(x86_64)
    public static let asyncSpawnAvailable = true
    #else
    public static let asyncSpawnAvailable = false
    #endif

    public static func spawn(_ plan: SpawnPlan) throws -> (pid: Int32, pidfd: Int32) {
        let memory = PlanMemory(plan)   // read by the child only while we wait in tend_spawn (CLONE_VFORK)
        let p = memory.plan
        let pid = tend_spawn(p)
        if pid < 0 { throw lastError("clone") }
        if p.pointee.failed_step != 0 {
            // The child has already _exit()ed (CLONE_VFORK resumed us): reap it now.
            reapFailedChild(pidfd: p.pointee.pidfd)
            throw SpawnFailure(step: stepName(p.pointee.failed_step), errno: p.pointee.child_errno)
        }
        return (pid, p.pointee.pidfd)
    }

    /// Reaps a child that failed before its exec (it has exited or is about to) and closes its pidfd.
    static func reapFailedChild(pidfd: Int32) {
        guard pidfd >= 0 else { return }
        var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        _ = poll(&pfd, 1, 1000)
        var code: Int32 = 0, status: Int32 = 0
        _ = tend_pidfd_wait(pidfd, 0, &code, &status)
        FD.close(pidfd)
    }

    /// Starts the child without waiting for its exec (see `AsyncSpawn`). Throws SysError if the report
    /// pipe or clone failed (nothing is left behind then); a failed step in the child is learnt later,
    /// from `AsyncSpawn.settle()`. `plan.keepBelow` must be nil (the child gets its own fd table).
    public static func spawnAsync(_ plan: SpawnPlan) throws -> AsyncSpawn {
        let report = try FD.pipe()   // both ends non-blocking: the child writes 8 bytes to an empty pipe at most
        guard let stack = tend_child_stack_take() else {
            FD.close(report.read); FD.close(report.write)
            throw SysError("mmap(child stack)", errno: ENOMEM)
        }
        let memory = PlanMemory(plan)
        let pid = tend_spawn_async(memory.plan, stack, report.write)
        let saved = errno
        FD.close(report.write)   // the child has its own copy (and loses it at execve or exit)
        if pid < 0 {
            FD.close(report.read)
            tend_child_stack_give(stack)
            throw SysError("clone", errno: saved)
        }
        return AsyncSpawn(pid: pid, pidfd: memory.plan.pointee.pidfd, reportFD: report.read, memory: memory, stack: stack)
    }

    static func stepName(_ s: Int32) -> String {
        switch Int(s) {
        case Int(TEND_STEP_UNSHARE_FILES): return "unshare fd table"
        case Int(TEND_STEP_SETSID): return "setsid"
        case Int(TEND_STEP_CGROUP): return "join cgroup"
        case Int(TEND_STEP_DUP): return "dup2"
        case Int(TEND_STEP_CHDIR): return "chdir"
        case Int(TEND_STEP_SETGROUPS): return "setgroups"
        case Int(TEND_STEP_SETGID): return "setgid"
        case Int(TEND_STEP_SETUID): return "setuid"
        case Int(TEND_STEP_CTTY): return "TIOCSCTTY"
        default: return "execve"
        }
    }

    /// C: pidfd_send_signal(2). Returns false if the process is already gone (ESRCH).
    @discardableResult
    public static func signal(pidfd: Int32, _ sig: Int32) throws -> Bool {
        if tend_pidfd_send_signal(pidfd, sig) < 0 {
            if errno == ESRCH { return false }
            throw lastError("pidfd_send_signal")
        }
        return true
    }

    /// C: kill(-pgid, sig): the whole process group. Returns false if the group is empty.
    @discardableResult
    public static func signalGroup(_ pgid: Int32, _ sig: Int32) -> Bool {
        kill(-pgid, sig) == 0
    }

    /// Non-blocking reap through the pidfd: nil while the child runs.
    public static func reap(pidfd: Int32, peek: Bool = false) throws -> ExitReport? {
        var code: Int32 = 0, status: Int32 = 0
        let r = tend_pidfd_wait(pidfd, peek ? 1 : 0, &code, &status)
        if r < 0 { throw lastError("waitid(P_PIDFD)") }
        if r == 0 { return nil }
        return report(code: code, status: status)
    }

    /// C: pidfd_open(2): a pidfd for any process (not only a child), close-on-exec.
    public static func openPidfd(_ pid: Int32) throws -> Int32 {
        let fd = tend_pidfd_open(pid)
        if fd < 0 { throw lastError("pidfd_open") }
        return fd
    }

    /// Whether a pidfd is readable (the process exited) and hung up (it was reaped, by whoever is its
    /// parent), without waiting. C: poll(2) with a zero timeout.
    public static func pidfdReadiness(_ pidfd: Int32) -> (exited: Bool, reaped: Bool) {
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while poll(&p, 1, 0) < 0 { if errno != EINTR { return (false, false) } }
        return (p.revents & Int16(POLLIN) != 0, p.revents & Int16(POLLHUP) != 0)
    }

    /// The pid of some exited child, left waitable (C: waitid(P_ALL, WNOWAIT)). nil when none.
    public static func peekExited() -> Int32? {
        let pid = tend_peek_exited()
        return pid > 0 ? pid : nil
    }

    /// Reaps one specific exited child by pid (an orphan re-parented to us).
    public static func reap(pid: Int32) { tend_reap_pid(pid) }

    static func report(code: Int32, status: Int32) -> ExitReport {
        if code == TEND_CLD_EXITED { return .exited(status) }
        return .signaled(status, coreDumped: code == TEND_CLD_DUMPED)
    }

    /// Makes this process a child subreaper: orphaned descendants are re-parented to us and reaped here.
    public static func becomeSubreaper() -> Bool { tend_set_child_subreaper() == 0 }

    /// Looks `command` up in `path` (colon-separated) unless it contains a '/'. Returns an absolute or
    /// relative path that exists and is executable, or nil.
    public static func resolveExecutable(_ command: String, path: String, cwd: String?) -> String? {
        if command.contains("/") {
            if command.hasPrefix("/") || cwd == nil { return command }
            return cwd! + "/" + command
        }
        for dir in path.split(separator: ":", omittingEmptySubsequences: false) {
            let d = dir.isEmpty ? "." : String(dir)
            let candidate = d + "/" + command
            var st = stat()
            if stat(candidate, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// True if `path` is an existing directory.
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// This process's environment as "K=V" strings.
    public static func environment() -> [String] {
        var out: [String] = []
        var p = environ
        while let s = p.pointee { out.append(String(cString: s)); p += 1 }
        return out
    }

    public static func getenv(_ name: String) -> String? {
        guard let v = Glibc.getenv(name) else { return nil }
        return String(cString: v)
    }

    public static var myPid: Int32 { getpid() }

    /// C: exit(3).
    public static func exit(_ code: Int32) -> Never { Glibc.exit(code) }
}


/// A child started by `Proc.spawnAsync`: it runs beside us in our address space until it has exec'd
/// (or failed and exited), reading its plan and stack, which this object keeps alive until then. Its
/// report pipe (`reportFD`, non-blocking, for the loop to watch) reads two ints if a step failed, then
/// EOF once the child no longer uses our memory (execve releases it before closing close-on-exec fds;
/// exit before closing any fd).
public final class AsyncSpawn {
    public let pid: Int32
    public let pidfd: Int32
    public let reportFD: Int32
    private var memory: PlanMemory?
    private var stack: UnsafeMutableRawPointer?
    private var record: [UInt8] = []

    init(pid: Int32, pidfd: Int32, reportFD: Int32, memory: PlanMemory, stack: UnsafeMutableRawPointer) {
        self.pid = pid; self.pidfd = pidfd; self.reportFD = reportFD; self.memory = memory; self.stack = stack
    }

    /// What the child did, once known: nil while it has not yet exec'd or exited; `.success(())` when it
    /// exec'd; `.failure` with the step that failed (the child has then exited, not yet reaped). Once it
    /// returns non-nil the plan and stack are released; the caller takes `reportFD` out of epoll, then
    /// calls `closeReport()` (in that order: other children cloned meanwhile may still hold a copy of the
    /// read end, which would keep a closed fd's registration alive and reporting EOF). `wait`: block until known.
    public func settle(wait: Bool = false) -> Result<Void, SpawnFailure>? {
        guard memory != nil else { return nil }
        var buf = [UInt8](repeating: 0, count: 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(reportFD, $0.baseAddress, 16) }
            if n > 0 { record.append(contentsOf: buf[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                if !wait { return nil }
                var p = pollfd(fd: reportFD, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, -1)
                continue
            }
            break   // EOF (or an error no pipe read gives: treated as EOF)
        }
        memory = nil
        tend_child_stack_give(stack)
        stack = nil
        guard record.count >= 8 else { return .success(()) }
        let step = record.withUnsafeBytes { $0.load(fromByteOffset: 0, as: Int32.self) }
        let err = record.withUnsafeBytes { $0.load(fromByteOffset: 4, as: Int32.self) }
        return .failure(SpawnFailure(step: Proc.stepName(step), errno: err))
    }

    /// Closes the report pipe once settled (and out of epoll). Idempotent.
    public func closeReport() {
        if reportOpen { reportOpen = false; FD.close(reportFD) }
    }
    private var reportOpen = true

    /// After a failed settle: the child has exited (or is about to): reap it and close the pidfd.
    public func reapFailed() { Proc.reapFailedChild(pidfd: pidfd) }

    deinit {
        // Never released while the child may still read it: settle it first.
        if memory != nil { _ = settle(wait: true) }
        closeReport()
    }
}

/// A spawn plan laid out in one allocation: the C struct, argv and envp pointer arrays, groups, then the
/// strings. Both spawns use it; an asynchronous child reads it after `tend_spawn_async` returned, so there
/// it lives in its `AsyncSpawn` until the child has settled.
final class PlanMemory {
    let plan: UnsafeMutablePointer<tend_spawn_plan>
    private let base: UnsafeMutableRawPointer

    init(_ sp: SpawnPlan) {
        let argv = sp.argv, env = sp.env
        let groups = sp.ids?.groups ?? []
        let ptr = MemoryLayout<UnsafeMutablePointer<CChar>?>.stride
        var strings = sp.path.utf8.count + 1 + (sp.cwd.map { $0.utf8.count + 1 } ?? 0)
        for s in argv { strings += s.utf8.count + 1 }
        for s in env { strings += s.utf8.count + 1 }
        let planBytes = (MemoryLayout<tend_spawn_plan>.stride + 15) & ~15
        let argvAt = planBytes, envAt = argvAt + (argv.count + 1) * ptr, groupsAt = envAt + (env.count + 1) * ptr
        let stringsAt = groupsAt + groups.count * 4
        base = UnsafeMutableRawPointer.allocate(byteCount: stringsAt + strings, alignment: 16)
        plan = base.bindMemory(to: tend_spawn_plan.self, capacity: 1)
        plan.initialize(to: tend_spawn_plan())
        var at = stringsAt
        func put(_ s: String) -> UnsafeMutablePointer<CChar> {
            let start = (base + at).assumingMemoryBound(to: CChar.self)
            var s = s
            s.withUTF8 { u in
                if let src = u.baseAddress { (base + at).copyMemory(from: src, byteCount: u.count) }
                (base + at + u.count).storeBytes(of: 0, as: UInt8.self)
                at += u.count + 1
            }
            return start
        }
        plan.pointee.path = UnsafePointer(put(sp.path))
        if let cwd = sp.cwd { plan.pointee.cwd = UnsafePointer(put(cwd)) }
        let av = (base + argvAt).bindMemory(to: UnsafeMutablePointer<CChar>?.self, capacity: argv.count + 1)
        for (i, s) in argv.enumerated() { av[i] = put(s) }
        av[argv.count] = nil
        let ev = (base + envAt).bindMemory(to: UnsafeMutablePointer<CChar>?.self, capacity: env.count + 1)
        for (i, s) in env.enumerated() { ev[i] = put(s) }
        ev[env.count] = nil
        plan.pointee.argv = UnsafePointer(av)
        plan.pointee.envp = UnsafePointer(ev)
        plan.pointee.stdin_fd = sp.stdin; plan.pointee.stdout_fd = sp.stdout; plan.pointee.stderr_fd = sp.stderr
        if let ids = sp.ids {
            let g = (base + groupsAt).bindMemory(to: gid_t.self, capacity: max(1, groups.count))
            for (i, x) in groups.enumerated() { g[i] = x }
            plan.pointee.set_ids = 1; plan.pointee.uid = ids.uid; plan.pointee.gid = ids.gid
            plan.pointee.groups = UnsafePointer(g); plan.pointee.ngroups = Int32(groups.count)
        }
        plan.pointee.cgroup_fd = sp.cgroupFD
        plan.pointee.controlling_tty = sp.controllingTTY ? 1 : 0
        if let k = sp.keepBelow { plan.pointee.share_files = 1; plan.pointee.keep_below = k }
        plan.pointee.report_fd = -1
    }

    deinit { base.deallocate() }
}
