// ExitedOrder: the exited records in the order they are forgotten (oldest first), with membership and
// removal in O(1). It was an array scanned on every exit (is it there? remove it) and shifted on every
// eviction: with --max-exited 1000 records kept, each exit walked ~3,000 entries, retaining and releasing
// each, about half of the daemon's CPU per start once the table was full (bench/profile.sh start).
// Removed entries leave a hole that the front skips; the slots are compacted when holes outnumber the
// live records, so memory stays proportional to `count`.
final class ExitedOrder<Record: AnyObject> {   // Record: ProcessRecord (generic for its tests)
    private var slots: [Record?] = []          // oldest first; nil: removed
    private var head = 0                               // slots[..<head] are all nil
    private var index: [ObjectIdentifier: Int] = [:]  // live record -> its slot

    var count: Int { index.count }
    var isEmpty: Bool { index.isEmpty }
    /// The oldest record still kept.
    var first: Record? { head < slots.count ? slots[head] : nil }

    func contains(_ p: Record) -> Bool { index[ObjectIdentifier(p)] != nil }

    /// Adds `p` as the newest record (a record already kept keeps its place).
    func append(_ p: Record) {
        let id = ObjectIdentifier(p)
        guard index[id] == nil else { return }
        index[id] = slots.count
        slots.append(p)
    }

    /// Takes `p` out (nothing when it is not kept).
    func remove(_ p: Record) {
        guard let i = index.removeValue(forKey: ObjectIdentifier(p)) else { return }
        slots[i] = nil
        while head < slots.count, slots[head] == nil { head += 1 }
        if slots.count - index.count > max(64, index.count) { compact() }
    }

    /// Reorders the kept records (after a restore, by exit time).
    func sort(by areInIncreasingOrder: (Record, Record) -> Bool) {
        let live = slots[head...].compactMap { $0 }.sorted(by: areInIncreasingOrder)
        rebuild(live)
    }

    /// The kept records, oldest first.
    var records: [Record] { slots[head...].compactMap { $0 } }

    private func compact() { rebuild(records) }

    private func rebuild(_ live: [Record]) {
        slots = live
        head = 0
        index.removeAll(keepingCapacity: true)
        for (i, p) in live.enumerated() { index[ObjectIdentifier(p)] = i }
    }
}
