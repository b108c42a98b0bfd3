// Resources: what each process's tree uses, read on request only (GET of a process, the list, and
// `/metrics?per_process=1`), never on a timer: a daemon holding 4,000 idle processes does no work for them.
//
// With a cgroup v2 leaf: `cpu.stat` `usage_usec` (present in every group, the whole tree's CPU time,
// exited descendants included), and `memory.current`, `memory.peak`, `pids.current` when the parent
// enables those controllers (`cgroup.subtree_control`, read once per request); else null. Without a
// leaf (the fallback): one `/proc` scan per request (256 entries per loop turn for a list), then the
// leader and its descendants by parent chain: CPU of each (with the children each reaped), RSS summed as
// memory, their count as pids; no peak. Orphans re-parented to tendd are not found by the parent chain
// and are not counted there. Many processes (the list, `?per_process=1`) are read 128 per loop turn
// (`ResourceSweep`), so the loop is never held for the whole table.
//
// The process JSON gets an added `resources` object (the SDK ignores fields it does not know):
//   {"source": "cgroup"|"proc"|null, "cpu_usec", "memory_bytes", "memory_peak_bytes", "pids", "output_bytes"}
// Figures are null where the source has none, and every usage figure is null once the process exited.
// `output_bytes` is the text of every line captured so far (dropped ones included).
import Sys
import JSON

/// One request's reader: caches the parents' controller lists and the /proc scan across processes.
struct ResourceReader {
    private var controllers: [String: (memory: Bool, pids: Bool)] = [:]
    private var table: [Int32: Usage.ProcEntry]?
    private var children: [Int32: [Int32]] = [:]
    private var scanner: ProcScanner?

    enum Source: String { case cgroup, proc }

    /// The fallback's /proc scan, `max` entries at a time; true once it is complete.
    mutating func scanProc(max: Int) -> Bool {
        if table != nil { return true }
        if scanner == nil { scanner = ProcScanner() }
        guard scanner!.step(max: max) else { return false }
        useTable(scanner!.table)
        scanner = nil
        return true
    }

    private mutating func useTable(_ t: [Int32: Usage.ProcEntry]) {
        for (pid, e) in t { children[e.ppid, default: []].append(pid) }
        table = t
    }

    mutating func read(_ p: ProcessRecord) -> (source: Source, tree: Usage.Tree)? {
        guard p.isRunning else { return nil }
        if let leaf = p.cgroupLeaf {
            let parent = String(leaf[..<(leaf.lastIndex(of: "/") ?? leaf.endIndex)])
            let c: (memory: Bool, pids: Bool)
            if let known = controllers[parent] { c = known } else {
                let list = Usage.subtreeControllers(parent)
                c = (list.contains("memory"), list.contains("pids"))
                controllers[parent] = c
            }
            return (.cgroup, Usage.ofCgroup(leaf, memory: c.memory, pids: c.pids))
        }
        if table == nil { useTable(Usage.procTable()) }   // one process: the whole scan at once
        guard let table, table[p.pid] != nil else { return (.proc, Usage.Tree()) }
        var ticks: Int64 = 0, pages: Int64 = 0, count: UInt64 = 0
        var queue = [p.pid]
        var seen = Set<Int32>()
        while let pid = queue.popLast() {
            guard seen.insert(pid).inserted, let e = table[pid] else { continue }
            ticks += e.cpuTicks; pages += e.rssPages; count += 1
            queue.append(contentsOf: children[pid] ?? [])
        }
        return (.proc, Usage.Tree(cpuUsec: UInt64(max(0, ticks)) * 1_000_000 / UInt64(Usage.ticksPerSecond),
                                  memoryBytes: UInt64(max(0, pages * Usage.pageSize)), memoryPeakBytes: nil, pids: count))
    }
}

/// A tree's usage as read: where it came from and the figures (nil: the process is not running).
typealias TreeUsage = (source: ResourceReader.Source, tree: Usage.Tree)

/// Reads the usage of many processes a batch per loop turn, so a list of 4,000 never stalls the loop:
/// each `cpu.stat` read costs the kernel a cgroup statistics flush (4,000 in one go: ~100 ms here).
final class ResourceSweep {
    /// Processes read per loop turn (a few ms of kernel work in cgroup mode).
    static let batch = 128
    let records: [ProcessRecord]
    private(set) var usages: [TreeUsage?] = []
    private var reader = ResourceReader()
    /// Some tree is owned without cgroups: its usage needs a /proc scan first (also in steps).
    private let needsProc: Bool

    init(_ records: [ProcessRecord]) {
        self.records = records
        needsProc = records.contains { $0.isRunning && $0.cgroupLeaf == nil }
        usages.reserveCapacity(records.count)
    }

    /// Reads the next batch (of /proc entries first, if needed, then of processes); true once done.
    func step() -> Bool {
        if needsProc && !reader.scanProc(max: 2 * ResourceSweep.batch) { return false }
        let end = min(records.count, usages.count + ResourceSweep.batch)
        while usages.count < end { usages.append(reader.read(records[usages.count])) }
        return usages.count == records.count
    }
}

extension Server {
    /// Runs `finish` with the usage of each of `records` (in order): at once when one batch holds them,
    /// else over several loop turns (`.pending`, answered through `connection.complete`). Between two
    /// turns the loop serves everything else (a timer at 0 ms, scheduled from the deferred phase, fires
    /// in the next iteration, after epoll_wait).
    func withResources(_ records: [ProcessRecord], _ connection: Connection, _ finish: @escaping ([TreeUsage?]) -> Outcome) -> Outcome {
        let sweep = ResourceSweep(records)
        if sweep.step() { return finish(sweep.usages) }
        func next() {
            loop.defer_ { [unowned self, weak connection] in
                self.loop.schedule(afterMs: 0) {
                    guard let connection, !connection.closed else { return }   // the client left: stop reading
                    if sweep.step() { connection.complete(finish(sweep.usages)) } else { next() }
                }
            }
        }
        next()
        return .pending
    }

    /// ProcessInfo with the `resources` object added (GET of a process, the list).
    func processInfo(_ p: ProcessRecord, usage: TreeUsage?) -> JSONValue {
        guard case .object(var fields) = processInfo(p) else { return processInfo(p) }
        func n(_ v: UInt64?) -> JSONValue { v.map { .int(Int64(clamping: $0)) } ?? .null }
        let t = usage?.tree ?? Usage.Tree()
        fields.append(("resources", .object([
            ("source", usage.map { .string($0.source.rawValue) } ?? .null),
            ("cpu_usec", n(t.cpuUsec)),
            ("memory_bytes", n(t.memoryBytes)),
            ("memory_peak_bytes", n(t.memoryPeakBytes)),
            ("pids", n(t.pids)),
            ("output_bytes", n(p.journal.bytesBefore(p.journal.nextSeq))),
        ])))
        return .object(fields)
    }

    /// `/metrics?per_process=1`: one series per running process and figure (labels handle, pid, and
    /// name for managed processes), so at most --max-processes series each.
    func renderPerProcess(_ e: inout Exposition, _ records: [ProcessRecord], _ usages: [TreeUsage?]) {
        var rows: [(labels: [(String, String)], usage: Usage.Tree, output: UInt64)] = []
        for (p, u) in zip(records, usages) {
            guard let u else { continue }   // exited since the sweep began
            var labels = [("handle", String(p.handle)), ("pid", String(p.pid))]
            if let name = p.managed?.spec.name { labels.append(("name", name)) }
            rows.append((labels, u.tree, p.journal.bytesBefore(p.journal.nextSeq)))
        }
        e.family("tendd_process_cpu_seconds_total", "counter", "CPU time of a running process's tree (cgroup cpu.stat usage_usec, or /proc).")
        for r in rows { if let v = r.usage.cpuUsec { e.sample("tendd_process_cpu_seconds_total", r.labels, Double(v) / 1e6) } }
        e.family("tendd_process_memory_bytes", "gauge", "Memory of a running process's tree (memory.current, or the RSS sum from /proc).")
        for r in rows { if let v = r.usage.memoryBytes { e.sample("tendd_process_memory_bytes", r.labels, v) } }
        e.family("tendd_process_memory_peak_bytes", "gauge", "Peak memory of a running process's tree (memory.peak; cgroup only).")
        for r in rows { if let v = r.usage.memoryPeakBytes { e.sample("tendd_process_memory_peak_bytes", r.labels, v) } }
        e.family("tendd_process_pids", "gauge", "Tasks in a running process's tree (pids.current, or the /proc count).")
        for r in rows { if let v = r.usage.pids { e.sample("tendd_process_pids", r.labels, v) } }
        e.family("tendd_process_output_bytes_total", "counter", "Text bytes of the lines a running process has written so far.")
        for r in rows { e.sample("tendd_process_output_bytes_total", r.labels, r.output) }
    }
}
