// Retained: reading a process's output across both retention tiers (issue 13): the memory journal and,
// below its head, the disk tier it spills into (`DiskTier`). One sequence: the same seqs, timestamps and
// byte counts in both; what neither holds (dropped by the budgets, a failed disk, or the memory bound
// without a disk tier) is a gap, reported once with exact line counts. Readers (followers, `get_*`)
// use `gap(at:knownBytes:)` then `readRetained(...)` in a loop; each call reads at most one batch from
// disk (≤ 256 KiB) or `maxLines` from memory, so a replay is bounded per call.

/// Lines a reader at some seq cannot get: `lines` (exact), `bytes` (their text bytes: exact when the
/// reader knew the byte count at its cursor, else an upper bound), and where to resume.
public struct RetainedGap: Equatable {
    public var lines: UInt64
    public var bytes: UInt64
    public var resume: UInt64
    /// Text bytes of every line before `resume`.
    public var resumeBytes: UInt64
}

extension Journal {
    /// The disk tier lines are spilled into, if any.
    public var diskTier: DiskTier? { spill as? DiskTier }

    /// The oldest seq a reader can get (on disk or in memory).
    public var oldestSeq: UInt64 {
        if let t = diskTier, let f = t.firstSeq, f < headSeq { return f }
        return headSeq
    }

    /// nil when the line at `seq` (clamped to ≥ 1) is retained or not yet written; else the gap to skip.
    /// `knownBytes`: the reader's exact bytesBefore(seq), if it has it.
    public func gap(at seq: UInt64, knownBytes: UInt64?) -> RetainedGap? {
        let s = max(seq, 1)
        let head = headSeq
        guard s < head else { return nil }
        guard let t = diskTier else {
            let m = missed(from: s)
            let before = bytesBefore(head)
            return RetainedGap(lines: m.lines, bytes: knownBytes.map { before &- $0 } ?? m.bytes, resume: head, resumeBytes: before)
        }
        if t.batch(holding: s) != nil { return nil }
        var resume = head, resumeBytes = bytesBefore(head)
        if let b = t.batch(after: s), b.firstSeq < head {
            resume = b.firstSeq
            resumeBytes = b.bytesBefore
        }
        var bytes: UInt64
        if let k = knownBytes {
            bytes = resumeBytes &- k
        } else if s == 1 {
            bytes = resumeBytes
        } else if let prev = t.batch(endingAt: s) {
            bytes = resumeBytes &- prev.bytesAfter
        } else {
            bytes = resumeBytes   // upper bound: the start of the hole is not known exactly
        }
        return RetainedGap(lines: resume &- s, bytes: bytes, resume: resume, resumeBytes: resumeBytes)
    }

    /// Visits retained lines from `seq` on (after any `gap(at:)` was skipped), like `read(from:...)`:
    /// from disk (one batch at most) while `seq` is below the memory head, else from memory.
    /// Returns the seq to resume from and the text bytes before it. Returns `seq` unchanged when `seq` is
    /// below the head but not readable (a gap: ask `gap(at:)` again).
    public func readRetained(from seq: UInt64, filter: StreamFilter, maxLines: Int,
                             _ body: (JournalEntry) -> Bool) -> (next: UInt64, bytes: UInt64) {
        let s = max(seq, 1)
        if s < headSeq, let t = diskTier {
            if let r = t.read(from: s, limit: headSeq, filter: filter, maxLines: maxLines, body) { return r }
            return (seq, 0)
        }
        let next = read(from: s, filter: filter, maxLines: maxLines, body)
        return (next, bytesBefore(next))
    }
}
