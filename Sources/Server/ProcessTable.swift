// ProcessTable: the records the daemon knows, by pid and by managed name, the order in which exited
// records are forgotten, and the counters that starts and /info read without walking the table.
// It holds no lifecycle logic: Lifecycle.swift decides when a record is retired, this keeps the lists.
final class ProcessTable {
    var processes: [Int32: ProcessRecord] = [:]     // by current pid
    var names: [String: ProcessRecord] = [:]        // managed processes by name
    let exitedOrder = ExitedOrder<ProcessRecord>()                 // exited records, oldest first (issue17-perf: O(1) membership and removal)
    var nextHandle = 1
    /// Records whose leader is alive (a counter: starts and /info must not walk the table).
    var runningCount = 0
    /// Running records whose pidfd could not be registered with epoll: their exit is polled at the tick.
    var unwatchedExits: [ProcessRecord] = []

    /// Finds a process by PID (all digits) or by managed name.
    func lookup(_ id: String) -> ProcessRecord? {
        if !id.isEmpty, id.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            if let pid = Int32(id) { return processes[pid] }
            return nil
        }
        return names[id]
    }

    /// Files `p` under its (new) pid; a stale record that held the pid is returned to be forgotten.
    func insert(_ p: ProcessRecord) -> ProcessRecord? {
        let old = processes[p.pid]
        processes[p.pid] = p
        return old === p ? nil : old
    }

    /// Takes `p` out of every list.
    func remove(_ p: ProcessRecord) {
        exitedOrder.remove(p)
        if processes[p.pid] === p { processes[p.pid] = nil }
        if let n = p.managed?.spec.name, names[n] === p { names[n] = nil }
    }
}
