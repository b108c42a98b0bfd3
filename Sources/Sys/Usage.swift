// Usage: resource usage read from the kernel's text files, for metrics and the process JSON:
// the daemon's own (`/proc/self/stat`, the size of `/proc/self/fd`, `RLIMIT_NOFILE`: the standard `process_*`
// metrics), a cgroup v2 leaf's (`cpu.stat`, `memory.current`, `memory.peak`, `pids.current`), and,
// without cgroups, every process's CPU ticks and RSS from one `/proc` scan. Reads only; no policy.
import Glibc

public enum Usage {
    /// Clock ticks per second of /proc's CPU times (C: sysconf(_SC_CLK_TCK)).
    public static let ticksPerSecond: Int64 = max(1, Int64(sysconf(Int32(_SC_CLK_TCK))))
    /// Bytes per page of /proc's RSS figures (C: sysconf(_SC_PAGESIZE)).
    public static let pageSize: Int64 = max(1, Int64(sysconf(Int32(_SC_PAGESIZE))))

    /// Fields of `/proc/<pid>/stat` after the command name (field 3 = index 0).
    static func statFields(_ path: String) -> [Substring]? {
        guard let b = try? FD.readFile(path, limit: 4096), let close = b.lastIndex(of: 0x29), close + 2 < b.count else { return nil }
        return String(decoding: b[(close + 2)...], as: UTF8.self).split(separator: " ")
    }

    /// The daemon itself, for the standard `process_*` metrics.
    public struct SelfStats {
        public var cpuSeconds: Double = 0
        public var residentBytes: Int64 = 0
        public var virtualBytes: Int64 = 0
        public var startTimeSeconds: Double = 0
        public var openFDs: Int = 0
        public var maxFDs: Int64 = 0
    }

    /// Boot time in seconds since the epoch (`btime` of /proc/stat); read once.
    public static let bootTime: Int64 = {
        guard let b = try? FD.readFile("/proc/stat", limit: 1 << 20) else { return 0 }
        for line in String(decoding: b, as: UTF8.self).split(separator: "\n") where line.hasPrefix("btime ") {
            return Int64(line.dropFirst(6)) ?? 0
        }
        return 0
    }()

    /// C: /proc/self/stat (utime, stime, starttime, vsize, rss), stat(2) of /proc/self/fd, getrlimit(RLIMIT_NOFILE).
    public static func ofSelf() -> SelfStats {
        var s = SelfStats()
        if let f = statFields("/proc/self/stat"), f.count > 21 {
            // Index = field number - 3: utime 14, stime 15, starttime 22, vsize 23, rss 24.
            let ticks = (Int64(f[11]) ?? 0) + (Int64(f[12]) ?? 0)
            s.cpuSeconds = Double(ticks) / Double(ticksPerSecond)
            s.startTimeSeconds = Double(bootTime) + Double(Int64(f[19]) ?? 0) / Double(ticksPerSecond)
            s.virtualBytes = Int64(f[20]) ?? 0
            s.residentBytes = (Int64(f[21]) ?? 0) * pageSize
        }
        // Linux >= 6.2 reports the number of open fds as the size of /proc/self/fd (one stat instead of
        // reading 16,000 directory entries with 4,000 processes held); older kernels say 0: count them.
        var st = stat()
        s.openFDs = stat("/proc/self/fd", &st) == 0 && st.st_size > 0 ? Int(st.st_size) : max(0, FD.openCount())
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 {
            s.maxFDs = rl.rlim_cur >= UInt64(Int64.max) ? Int64.max : Int64(rl.rlim_cur)
        }
        return s
    }

    /// A process tree's usage; nil where the source has no such figure.
    public struct Tree: Equatable {
        public var cpuUsec: UInt64?
        public var memoryBytes: UInt64?
        public var memoryPeakBytes: UInt64?
        public var pids: UInt64?
        public init(cpuUsec: UInt64? = nil, memoryBytes: UInt64? = nil, memoryPeakBytes: UInt64? = nil, pids: UInt64? = nil) {
            self.cpuUsec = cpuUsec; self.memoryBytes = memoryBytes; self.memoryPeakBytes = memoryPeakBytes; self.pids = pids
        }
    }

    /// Controllers enabled for the children of `dir` (`cgroup.subtree_control`), e.g. ["cpu", "memory"].
    public static func subtreeControllers(_ dir: String) -> [Substring] {
        guard let b = try? FD.readFile(dir + "/cgroup.subtree_control", limit: 4096) else { return [] }
        return String(decoding: b, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
    }

    /// A cgroup v2 leaf: `usage_usec` of `cpu.stat` (present in every group), and `memory.current`,
    /// `memory.peak`, `pids.current` when the parent enables those controllers.
    public static func ofCgroup(_ leaf: String, memory: Bool, pids: Bool) -> Tree {
        var t = Tree()
        if let b = try? FD.readFile(leaf + "/cpu.stat", limit: 4096) {
            for line in String(decoding: b, as: UTF8.self).split(separator: "\n") where line.hasPrefix("usage_usec ") {
                t.cpuUsec = UInt64(line.dropFirst(11))
            }
        }
        func number(_ file: String) -> UInt64? {
            guard let b = try? FD.readFile(leaf + "/" + file, limit: 64) else { return nil }
            var v: UInt64 = 0, any = false
            for c in b { guard c >= 0x30 && c <= 0x39 else { break }; v = v &* 10 &+ UInt64(c - 0x30); any = true }
            return any ? v : nil
        }
        if memory { t.memoryBytes = number("memory.current"); t.memoryPeakBytes = number("memory.peak") }
        if pids { t.pids = number("pids.current") }
        return t
    }

    /// One process in a /proc scan: its parent, CPU time (its own and its reaped children's, in ticks) and RSS pages.
    public struct ProcEntry { public let pid: Int32; public let ppid: Int32; public let cpuTicks: Int64; public let rssPages: Int64 }

    /// Every process's entry from /proc/<pid>/stat (the fallback mode's view, one pass for many trees).
    public static func procTable() -> [Int32: ProcEntry] {
        let scan = ProcScanner()
        while !scan.step(max: Int.max) {}
        return scan.table
    }
}

/// A /proc scan in steps: `step(max:)` reads at most `max` entries, so a caller on the event loop can
/// spread a host's thousands of processes over several turns. The directory stream (glibc's opendir:
/// close-on-exec) stays open between steps and is closed at the end or when the scanner goes away.
public final class ProcScanner {
    public private(set) var table: [Int32: Usage.ProcEntry] = [:]
    private var dir: OpaquePointer?

    public init() { dir = opendir("/proc") }
    deinit { if let dir { closedir(dir) } }

    public var done: Bool { dir == nil }

    /// C: readdir(3) of /proc and a read of /proc/<pid>/stat per process. True once the scan is complete.
    public func step(max: Int) -> Bool {
        guard let d = dir else { return true }
        var n = 0
        while n < max {
            guard let ent = readdir(d) else { closedir(d); dir = nil; return true }
            let name = direntName(ent)
            guard let pid = Int32(name) else { continue }
            n += 1
            guard let f = Usage.statFields("/proc/\(name)/stat"), f.count > 21, let ppid = Int32(f[1]) else { continue }
            // utime 14, stime 15, cutime 16, cstime 17 (index = field - 3); rss 24.
            var ticks: Int64 = 0
            for i in 11...14 { ticks += Int64(f[i]) ?? 0 }
            table[pid] = Usage.ProcEntry(pid: pid, ppid: ppid, cpuTicks: ticks, rssPages: Int64(f[21]) ?? 0)
        }
        return false
    }
}
