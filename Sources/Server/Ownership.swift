// Ownership: each process owns its whole tree. With a writable cgroup v2 hierarchy every process
// run gets a leaf `<own cgroup>/tendd-<daemon pid>/l<N>` from a pool of pre-made leaves (directory fds
// open), and its leader is cloned straight into it (clone3 CLONE_INTO_CGROUP);
// `cgroup.kill` ends the tree, setsid'd and double-forked descendants included. Without one, the
// fallback is the process group plus a /proc scan: descendants by parent chain, and orphans
// (re-parented to tendd, the subreaper) recognised by the marker variable every child inherits.
// Our leaves are made, opened, read and removed relative to an open fd of the subtree root (a walk of
// one or two cgroupfs components instead of the whole path, which was most of those calls' cost).
import Sys
import Reactor

final class Ownership {
    static let markerName = "TENDD_UNIT"
    let base: String?          // our subtree root, nil in fallback mode
    private let baseFD: Int32         // perf(start): `base` open (O_DIRECTORY) for the daemon's life, -1 without it
    private let basePrefix: String    // base + "/"
    var lineage: [String] = [] // chaos: subtrees of earlier daemons on our state not yet removed (SubtreeSweep.swift)
    let daemonPid: Int32
    let log: Log
    /// Whether a pid is the leader of a running record (set by the Server).
    var isTrackedLeader: (Int32) -> Bool = { _ in false }

    init(disabled: Bool, log: Log) {
        self.log = log
        daemonPid = Proc.myPid
        var b: String? = nil
        if !disabled, let root = Cgroup.detectBase() {
            let dir = root + "/tendd-\(Proc.myPid)"
            do {
                try Cgroup.makeDirectory(dir)
                if Cgroup.hasKill(dir) { b = dir } else { Cgroup.remove(dir) }
            } catch {
                log.warn("msg=\"cgroup subtree unavailable\" error=\(Log.q("\(error)"))")
            }
        }
        base = b
        baseFD = b.flatMap { try? Cgroup.openDir($0) } ?? -1
        basePrefix = (b ?? "") + "/"
        if let b { log.info("msg=\"whole-tree ownership\" mode=cgroup2 subtree=\(Log.q(b))") }
        else { log.info("msg=\"whole-tree ownership\" mode=fallback detail=\"process group + subreaper + /proc scan\"") }
    }

    var mode: String { base == nil ? "fallback" : "cgroup2" }

    /// Where to find `leaf` for the *at syscalls: relative to `baseFD` if it is one of our leaves, else
    /// the absolute path (leaves of an earlier daemon's subtree).
    private func at(_ leaf: String) -> (dir: Int32, path: String) {
        guard baseFD >= 0, leaf.hasPrefix(basePrefix) else { return (FD.cwd, leaf) }
        return (baseFD, String(Substring(leaf.utf8.dropFirst(basePrefix.utf8.count))))
    }
    private func populated(_ leaf: String) -> Bool { let l = at(leaf); return Cgroup.populated(l.path, in: l.dir) }
    private func remove(_ leaf: String) { let l = at(leaf); Cgroup.remove(l.path, in: l.dir) }
    private func openDir(_ leaf: String) -> Int32 { let l = at(leaf); return (try? Cgroup.openDir(l.path, in: l.dir)) ?? -1 }

    /// The marker value of one run of a record: `<daemon pid>.<handle>.<launch>`. Per run, so that the
    /// sweep after one run's end cannot hit the next run of a managed process.
    func marker(_ p: ProcessRecord) -> String { "\(daemonPid).\(p.handle).\(p.launches)" }

    /// The leaf for `handle` (created if needed) and an open fd of its cgroup.dir for the child to join
    /// (-1 if it cannot be opened; the caller owns it), or nil in fallback mode.
    /// Creating and removing a cgroup (mkdir/rmdir in cgroupfs) costs about a quarter of a start's CPU,
    /// opening its cgroup.dir (a cgroupfs path walk) another tenth: empty leaves are kept in a small
    /// pool with that file already open, refilled from a timer (off the request path) and fed by leaves
    /// whose tree is gone.
    private var pool: [(path: String, dir: Int32)] = []
    private var nextLeaf = 0
    private var refillScheduled = false
    static let poolTarget = 8
    weak var loop: EventLoop?

    func prepareLeaf(_ handle: Int) -> (path: String, dirFD: Int32)? {
        guard let base else { return nil }
        defer { scheduleRefill() }
        // A leaf with cgroup.dir open first.
        if let i = pool.lastIndex(where: { $0.dir >= 0 }) ?? (pool.isEmpty ? nil : pool.count - 1) {
            let leaf = pool.remove(at: i)
            return (leaf.path, leaf.dir >= 0 ? leaf.dir : openDir(leaf.path))
        }
        guard let path = makeLeaf(base) else { return nil }
        return (path, openDir(path))
    }

    /// A new, empty leaf. Never an existing directory: after an in-place upgrade (same pid, same subtree)
    /// the leaves of re-adopted processes are still there, and sharing one would share its cgroup.kill.
    private func makeLeaf(_ base: String) -> String? {
        for _ in 0..<10_000 {
            nextLeaf += 1
            let leaf = base + "/l\(nextLeaf)"
            let l = at(leaf)
            do {
                if try Cgroup.makeNewDirectory(l.path, in: l.dir) { return leaf }
            } catch {
                log.warn("msg=\"cannot create cgroup leaf\" leaf=\(Log.q(leaf)) error=\(Log.q("\(error)"))")
                return nil
            }
        }
        return nil
    }

    /// At rest the pool holds poolTarget leaves with cgroup.dir open (so the daemon's fd count at rest
    /// is constant: the leak checks compare with it), and up to poolTarget more recycled ones without.
    private var openInPool: Int { pool.reduce(0) { $0 + ($1.dir >= 0 ? 1 : 0) } }

    private func needsRefill() -> Bool { pool.count < Ownership.poolTarget || openInPool < Ownership.poolTarget }

    /// Fills the pool now (at start-up, so that its fds are part of the baseline), or a few leaves at a
    /// time from the refill timer (each mkdir and open blocks the loop for tens of µs).
    func fillPool(atMost: Int = Ownership.poolTarget) {
        guard let base else { return }
        var made = 0
        while pool.count < Ownership.poolTarget && made < atMost, let leaf = makeLeaf(base) {
            pool.append((leaf, -1)); made += 1
        }
        // The newest entries are taken first (popLast): open theirs.
        var open = openInPool
        var opened = 0
        for i in pool.indices.reversed() where open < Ownership.poolTarget && opened < atMost && pool[i].dir < 0 {
            opened += 1
            pool[i].dir = openDir(pool[i].path)
            if pool[i].dir >= 0 { open += 1 }
        }
    }

    private func scheduleRefill() {
        guard let loop, !refillScheduled, base != nil, needsRefill() else { return }
        refillScheduled = true
        loop.schedule(afterMs: 1) { [weak self] in
            guard let self else { return }
            self.refillScheduled = false
            let before = (self.pool.count, self.openInPool)
            self.fillPool(atMost: 2)
            if (self.pool.count, self.openInPool) != before { self.scheduleRefill() }   // not stuck (EMFILE)
        }
    }

    /// An empty leaf goes back to the pool (or away when the pool is full). The pool may grow to
    /// `poolMax` so that a burst of starts and exits does not turn into mkdir/rmdir churn (an rmdir of a
    /// cgroup is the slowest of them); an empty cgroup costs the kernel a few KiB.
    static let poolMax = 64
    private func recycle(_ leaf: String, knownEmpty: Bool = false) {
        guard let base, leaf.hasPrefix(base + "/") else { removeDeadLeaf(leaf); return }   // chaos: and its dead subtree (SubtreeSweep.swift)
        // A leaf that saw cgroup.kill is never reused: on this kernel (6.18) a child cloned into it with
        // CLONE_INTO_CGROUP is killed at once (the kill sequence it samples is the parent cgroup's).
        if killedLeaves.remove(leaf) != nil { remove(leaf); return }
        if pool.count < Ownership.poolMax && (knownEmpty || !populated(leaf)) {
            pool.append((leaf, -1))
            scheduleRefill()
        } else {
            remove(leaf)
        }
    }

    private var killedLeaves = Set<String>()

    /// SIGKILL to every process in `leaf` (cgroup.kill); the leaf is not reused afterwards.
    private func killLeaf(_ leaf: String) {
        Cgroup.kill(leaf)
        killedLeaves.insert(leaf)
    }

    /// Signal for the process group only (send_signal semantics: like terminal job control).
    func signalGroup(_ p: ProcessRecord, _ sig: Int32) {
        if !Proc.signalGroup(p.pid, sig), p.pidfd >= 0 { _ = try? Proc.signal(pidfd: p.pidfd, sig) }
    }

    /// Signal for the whole tree: SIGKILL through cgroup.kill (or the fallback scan), other signals to
    /// the group and every other member of the tree.
    func signalTree(_ p: ProcessRecord, _ sig: Int32) {
        if p.isRunning { signalGroup(p, sig) }
        if let leaf = p.cgroupLeaf {
            if sig == Signal.kill { killLeaf(leaf) } else { for pid in Cgroup.pids(leaf) { ProcScan.signal(pid, sig) } }
            return
        }
        for pid in fallbackTree(p) { ProcScan.signal(pid, sig) }
    }

    /// Descendants of `p` without cgroups: the parent chain from the leader (while it is unreaped) plus
    /// orphans re-parented to tendd that carry this process's marker, and their descendants.
    private func fallbackTree(_ p: ProcessRecord) -> [Int32] {
        let all = ProcScan.all()
        var children: [Int32: [Int32]] = [:]
        for e in all { children[e.ppid, default: []].append(e.pid) }
        var roots: [Int32] = p.isRunning ? [p.pid] : []
        let tag = "\(Ownership.markerName)=\(marker(p))"
        for e in all where e.ppid == daemonPid && e.pid != p.pid && ProcScan.environContains(e.pid, tag) { roots.append(e.pid) }
        var out: [Int32] = []
        var queue = roots
        var seen = Set<Int32>()
        while let x = queue.popLast() {
            guard seen.insert(x).inserted else { continue }
            if x != p.pid { out.append(x) }
            queue.append(contentsOf: children[x] ?? [])
        }
        return out
    }

    /// Kills every live process whose environment holds `tag` (the tree marker of a run), or with
    /// `anyRun`, `tag` or `tag.<launch>` (every run of a record that could not be re-adopted; markers of
    /// older daemons had no launch number). Returns how many were signalled.
    @discardableResult
    func killMarked(_ tag: String, anyRun: Bool = false) -> Int {
        var n = 0
        for e in ProcScan.all() where e.pid != daemonPid
            && ProcScan.environContains(e.pid, tag, orPrefix: anyRun ? tag + "." : nil) {
            if ProcScan.signal(e.pid, Signal.kill) { n += 1 }
        }
        if n > 0 { log.warn("msg=\"killed processes of a lost tree\" marker=\(Log.q(tag)) count=\(n)") }
        return n
    }

    /// After the leader was reaped: nothing of its tree may survive it. Returns true if something had to be killed.
    @discardableResult
    func leaderReaped(_ p: ProcessRecord, loop: EventLoop) -> Bool {
        if let leaf = p.cgroupLeaf {
            if populated(leaf) {
                killLeaf(leaf)
                removeWhenEmpty(leaf, loop: loop, attempts: 50)
                return true
            }
            recycle(leaf, knownEmpty: true)   // a managed process's next run takes a fresh leaf from the pool
            return false
        }
        // The /proc scan costs O(processes on the host): skip it when nothing can be left, i.e. the
        // group is empty and every child of ours is a tracked leader (an orphan of this tree would
        // have been re-parented to us).
        let groupAlive = Proc.signalGroup(p.pid, 0)
        if !groupAlive && !ProcScan.childrenOfSelf().contains(where: { !isTrackedLeader($0) }) { return false }
        let rest = fallbackTree(p)
        for pid in rest { ProcScan.signal(pid, Signal.kill) }
        _ = Proc.signalGroup(p.pid, Signal.kill)
        // A descendant caught between fork and exec (its /proc entry briefly unreadable) can slip past
        // one scan: sweep once more for this tree's marker shortly after, wherever it was re-parented.
        let tag = "\(Ownership.markerName)=\(marker(p))"
        loop.schedule(afterMs: 100) { [weak self] in self?.killMarked(tag) }
        return !rest.isEmpty
    }

    private func removeWhenEmpty(_ leaf: String, loop: EventLoop, attempts: Int) {
        loop.schedule(afterMs: 20) { [weak self] in
            guard let self else { return }
            if !self.populated(leaf) { self.recycle(leaf); return }
            if attempts > 0 { self.removeWhenEmpty(leaf, loop: loop, attempts: attempts - 1) }
            else { self.log.warn("msg=\"cgroup leaf still busy\" leaf=\(Log.q(leaf))") }
        }
    }

    /// On exit of the daemon: remove our (empty) subtree.
    func removeSubtree(_ leaves: [String]) {
        var parents = Set<String>()
        for l in leaves {
            Cgroup.kill(l); Cgroup.remove(l)
            if let slash = l.lastIndex(of: "/") { parents.insert(String(l[..<slash])) }
        }
        for l in pool { if l.dir >= 0 { FD.close(l.dir) }; Cgroup.remove(l.path) }
        for p in parents where p != base { Cgroup.remove(p) }   // subtrees of daemons before a restart
        pool.removeAll()
        // Leaves of an earlier image of this daemon (before an in-place upgrade) are ours too.
        if let base { for name in FD.listDirectory(base) where name.hasPrefix("l") { Cgroup.kill(base + "/" + name); Cgroup.remove(base + "/" + name) } }
        if let base { Cgroup.remove(base) }
    }

    /// OOM kill of the tree's memory controller, where there is one.
    func oomKilled(_ p: ProcessRecord) -> Bool {
        guard let leaf = p.cgroupLeaf, let n = Cgroup.oomKills(leaf) else { return false }
        return n > 0
    }
}
