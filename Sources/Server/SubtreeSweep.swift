// SubtreeSweep (issue 18): what a crashed daemon left in the cgroup tree. Each daemon owns the subtree
// `tendd-<its pid>` beside its own cgroup; a crash leaves that subtree behind: the leaves of processes the
// restarted daemon re-adopts (they stay until those processes end), a pool of empty leaves, and, after a
// crash between a spawn and its state write, a populated leaf that no record describes. After a restore
// this removes every empty leaf of such dead subtrees, kills the trees in leaves no restored record claims
// (nobody could ever serve or stop them), and removes a subtree once it is empty. Without the sweep every
// crash leaked a subtree and its pool (8 leaves), and an unrecorded process's setsid'd descendants lived on.
//
// Only our own lineage is swept: the subtrees of the daemons that ran before us on this state (daemon.json
// names the last one and the `subtrees` not yet gone; records name the subtrees of their leaves), never a
// sibling tendd's that merely shares our cgroup (as in the e2e suite), and never one whose pid is alive in
// our cgroup (a reused pid errs towards leaving the subtree, never towards killing).
import Sys
import Reactor

extension Ownership {
    /// Sweeps the subtrees `lineage` (names `tendd-<pid>` of earlier daemons on our state); `claimed`: leaves
    /// of re-adopted records. Those that remain (holding claimed leaves) are kept in `self.lineage`, written to
    /// daemon.json, so that the next daemon still knows them. Returns the trees killed.
    @discardableResult
    func sweepDeadSubtrees(lineage: Set<String>, claimed: Set<String>) -> Int {
        guard let base, let slash = base.lastIndex(of: "/") else { return 0 }
        let root = String(base[..<slash])
        let ownCgroup = (try? FD.readFile("/proc/self/cgroup", limit: 4096)) ?? []
        var killed = 0
        defer { self.lineage = lineage.filter { root + "/" + $0 != base && Proc.isDirectory(root + "/" + $0) }.sorted() }
        for name in lineage.sorted() where name.hasPrefix("tendd-") && !name.contains("/") {
            let dir = root + "/" + name
            guard dir != base, Proc.isDirectory(dir), let pid = Int32(name.dropFirst(6)) else { continue }
            if let theirs = try? FD.readFile("/proc/\(pid)/cgroup", limit: 4096), theirs == ownCgroup { continue }   // alive
            for leafName in FD.listDirectory(dir) where Proc.isDirectory(dir + "/" + leafName) {
                let leaf = dir + "/" + leafName
                if claimed.contains(leaf) { continue }
                if Cgroup.populated(leaf) {
                    log.error("msg=\"killing a tree no record describes (left by a crashed daemon)\" leaf=\(Log.q(leaf)) pids=\(Cgroup.pids(leaf).count)")
                    Cgroup.kill(leaf)
                    killed += 1
                    removeDeadLeafWhenEmpty(leaf, attempts: 100)
                } else {
                    Cgroup.remove(leaf)
                }
            }
            Cgroup.remove(dir)   // fails while re-adopted leaves remain; retried as they go (removeDeadParent)
        }
        return killed
    }

    /// A leaf of a dead daemon's subtree was emptied: remove it, then its subtree if that is empty now.
    func removeDeadLeaf(_ leaf: String) {
        Cgroup.remove(leaf)
        guard let slash = leaf.lastIndex(of: "/") else { return }
        let parent = String(leaf[..<slash])
        if parent != base, parent.split(separator: "/").last?.hasPrefix("tendd-") == true,
           !FD.listDirectory(parent).contains(where: { Proc.isDirectory(parent + "/" + $0) }) {
            if Cgroup.remove(parent), let name = parent.split(separator: "/").last { lineage.removeAll { $0 == name } }
        }
    }

    private func removeDeadLeafWhenEmpty(_ leaf: String, attempts: Int) {
        loop?.schedule(afterMs: 20) { [weak self] in
            guard let self else { return }
            if !Cgroup.populated(leaf) { self.removeDeadLeaf(leaf); return }
            if attempts > 0 { self.removeDeadLeafWhenEmpty(leaf, attempts: attempts - 1) }
            else { self.log.warn("msg=\"cgroup leaf still busy\" leaf=\(Log.q(leaf))") }
        }
    }
}
