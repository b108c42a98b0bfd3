// DiskTier: the disk tier of output retention (issue 13). Lines that leave a process's memory journal
// (`Journal.spill`) are appended to that process's segment files in one directory, in large batches,
// addressed by the same sequence numbers, timestamps and byte counts as in the journal; readers reach
// them through `Journal.readRetained` / `Journal.gap` (Retained.swift). This file owns the file layout,
// the in-memory index of batches, the budgets (per process and daemon-wide, oldest segment first across
// processes), recovery after a crash, and degrading to dropping when the disk fails or is slow.
//
// Layout: `<dir>/<handle>.<order>.seg`, `order` a daemon-wide counter (creation order: the global
// eviction order). A segment is a sequence of batches:
//   header  (40 B): magic u32 "TNDB", payloadLen u32, firstSeq u64, count u32, 0 u32, bytesBefore u64, baseTs i64
//   payload: count records: u32 (text length | 1 << 31 for stderr), i32 (timestamp - baseTs), text
//   trailer (16 B): magic u32 "TNTE", payloadLen u32, firstSeq u64
// A batch is written by one write(2) together with the others of one journal commit, *before* the journal
// commits the state that forgets its lines (JournalSpill.spillCommit), so a crash at any instant loses
// nothing: recovery keeps the batches whose trailer matches their header (a torn write has no trailer)
// and truncates the file there; lines the disk already has and the journal still holds are read from the
// journal (readers use the disk only below the journal's head) and are not spilled twice.
//
// I/O: regular files are not pollable, so every call is bounded: a write is one batch group (at most
// the write buffer, 1 MiB), a read one batch (at most 256 KiB plus one line). A write that fails (ENOSPC, the
// directory removed) or takes longer than `slowWriteMs` suspends spilling for `suspendMs`: lines leave
// memory unwritten (readers get a gap event for exactly those lines) and one log line says so. Files are
// opened per write/read and closed again: a process costs no fd, only its batch index (48 B per batch,
// batches are ≥ 64 KiB of lines from a full journal: ~50 KiB at a 64 MiB budget).
import Sys

private let batchMagic: UInt32 = 0x4244_4E54    // "TNDB"
private let trailerMagic: UInt32 = 0x4554_4E54  // "TNTE"
private let headerSize = 40
private let trailerSize = 16
private let recordHeader = 8
private let diskStderrBit: UInt32 = 1 << 31
/// Payload of one batch before a new one starts (a longer line makes a batch of its own).
private let batchPayload = 256 << 10

// Unaligned loads and stores: `ld` / `st` in Journal.swift (shared within the module).

/// Where one batch is, and what it holds.
struct BatchRef {
    var firstSeq: UInt64
    var count: Int
    var offset: Int
    var payloadLen: Int
    /// Text bytes of every line before firstSeq.
    var bytesBefore: UInt64
    var baseTs: Int64
    var endSeq: UInt64 { firstSeq &+ UInt64(count) }
    var size: Int { headerSize + payloadLen + trailerSize }
    var textBytes: UInt64 { UInt64(payloadLen - recordHeader * count) }
    var bytesAfter: UInt64 { bytesBefore &+ textBytes }
}

/// The daemon-wide write buffer: the batches of the tier that is spilling now.
struct WriteBuffer {
    let base: UnsafeMutableRawPointer
    var len: Int
    let cap: Int
}

/// One segment file of one process.
final class Segment {
    let order: UInt64
    var size = 0
    var batches: [BatchRef] = []
    init(order: UInt64) { self.order = order }
    var lines: UInt64 { batches.reduce(0) { $0 &+ UInt64($1.count) } }
}

/// The daemon-wide part: the directory, the budgets, the shared write and read buffers, eviction.
/// Not thread-safe (the event loop's thread).
public final class DiskRetention {
    public let dir: String
    public let processBudget: Int
    public let totalBudget: Int
    public let segmentBytes: Int
    /// Bytes in every segment file of every tier.
    public private(set) var totalBytes = 0
    /// Lines dropped because the disk failed or was slow, and lines evicted by the budgets.
    public private(set) var failedLines: UInt64 = 0
    public private(set) var evictedLines: UInt64 = 0
    var tiers: [Int: DiskTier] = [:]
    var nextOrder: UInt64 = 1
    /// Files found at start-up, by handle, until a tier takes them or they are removed as orphans.
    var found: [Int: [UInt64]] = [:]
    let log: (String) -> Void
    let clock: () -> Int64
    public var slowWriteMs: Int64 = 500
    public var suspendMs: Int64 = 1000
    var suspendedUntil: Int64 = .min
    var lastLog: Int64 = .min
    var unloggedFailures: UInt64 = 0

    // The write buffer: the batches of the tier that is spilling now (one journal commit's lines).
    /// (A plain pointer shared with the tiers: no reference counting on the per-line path.)
    let wb: UnsafeMutablePointer<WriteBuffer>
    var writer: DiskTier?
    // The read buffer: the last batch read (a follower reads a batch in several pumps).
    var rcap = batchPayload + headerSize + trailerSize
    var rbuf: UnsafeMutableRawPointer
    var rkey: (ObjectIdentifier, UInt64, Int)?
    /// Where the last read of the loaded batch stopped: the next pump resumes there instead of walking the
    /// batch's records from its first line again (a batch of 1-byte lines holds ~29,000 of them, and a
    /// follower reads it in many pumps: without this, reading back a burst was quadratic per batch).
    var rcursor: (seq: UInt64, pos: Int, cum: UInt64)?

    /// Opens (creating it if needed) the directory and lists the segment files already there.
    /// - Parameters:
    ///   - totalBudget: nil: a tenth of the filesystem's size (1 GiB if unknown), at least `processBudget`.
    ///   - clock: monotonic milliseconds (slow-write detection).
    public init(dir: String, processBudget: Int, totalBudget: Int?, maxLineBytes: Int,
                log: @escaping (String) -> Void, clock: @escaping () -> Int64) throws {
        self.dir = dir
        try FD.makeDirectory(dir)
        self.processBudget = max(processBudget, 1 << 20)
        let fs = FD.filesystemBytes(dir) ?? (10 << 30)
        self.totalBudget = max(totalBudget ?? fs / 10, self.processBudget)
        segmentBytes = min(8 << 20, max(256 << 10, self.processBudget / 8))
        let cap = max(1 << 20, 2 * (maxLineBytes + recordHeader + headerSize + trailerSize))
        wb = .allocate(capacity: 1)
        wb.initialize(to: WriteBuffer(base: .allocate(byteCount: cap, alignment: 16), len: 0, cap: cap))
        rbuf = .allocate(byteCount: rcap, alignment: 16)
        self.log = log
        self.clock = clock
        for name in FD.listDirectory(dir) {
            let parts = name.split(separator: ".")
            guard parts.count == 3, parts[2] == "seg", let h = Int(parts[0]), let o = UInt64(parts[1]) else { continue }
            found[h, default: []].append(o)
            nextOrder = max(nextOrder, o &+ 1)
        }
    }

    deinit {
        wb.pointee.base.deallocate()
        wb.deallocate()
        rbuf.deallocate()
    }

    func path(_ handle: Int, _ order: UInt64) -> String { "\(dir)/\(handle).\(order).seg" }

    /// The tier of process `handle`, attached to `journal` (its spill sink). Segment files of the handle
    /// left by a previous daemon (a crash, an upgrade) are recovered first.
    @discardableResult
    public func attach(_ journal: Journal, handle: Int) -> DiskTier {
        let tier = tiers[handle] ?? DiskTier(owner: self, handle: handle)
        if tiers[handle] == nil {
            tiers[handle] = tier
            for order in (found.removeValue(forKey: handle) ?? []).sorted() { tier.recover(order) }
        }
        tier.cut(at: journal.headSeq)
        journal.spill = tier
        enforceBudgets(tier)
        return tier
    }

    /// Like `attach`, but a process whose files do not exist yet gets its tier only when its journal first
    /// drops a line (`makeSpill`): most processes never outgrow their journal.
    public func attachLazily(_ journal: Journal, handle: Int) {
        if tiers[handle] != nil || found[handle] != nil { _ = attach(journal, handle: handle); return }
        journal.spillLazily(self, handle: handle)
    }

    /// Removes the files of every handle not in `keeping` (records that no longer exist).
    public func removeOrphans(keeping: Set<Int>) {
        for (h, orders) in found where !keeping.contains(h) {
            for o in orders { FD.unlink(path(h, o)) }
            found[h] = nil
        }
        for (h, t) in tiers where !keeping.contains(h) { remove(handle: h); _ = t }
    }

    /// The record of `handle` was forgotten: its files go.
    public func remove(handle: Int) {
        if let o = found.removeValue(forKey: handle) { for x in o { FD.unlink(path(handle, x)) } }
        guard let t = tiers.removeValue(forKey: handle) else { return }
        if writer === t { wb.pointee.len = 0; writer = nil; t.writing = false; t.discardPending() }
        while !t.segments.isEmpty { evict(t, t.segments[0], count: false) }
    }

    /// A clean stop: nothing will be re-adopted, every file goes.
    public func removeAll() {
        for h in Array(tiers.keys) { remove(handle: h) }
        for (h, orders) in found { for o in orders { FD.unlink(path(h, o)) } }
        found.removeAll()
    }

    // MARK: writing

    var suspended: Bool { suspendedUntil > clock() }

    /// Writes the pending batches of the current writer (one journal commit's spilled lines).
    func flush() {
        guard let t = writer else { return }
        writer = nil
        t.writing = false
        t.closeBatch()
        if wb.pointee.len > 0 { t.writeOut(UnsafeRawBufferPointer(start: wb.pointee.base, count: wb.pointee.len)) }
        wb.pointee.len = 0
        t.pending.removeAll(keepingCapacity: true)
        enforceBudgets(t)
    }

    /// Lines lost to a fault; `suspend`: a write failed or was slow, so spilling pauses for `suspendMs`.
    func failed(_ what: String, lines: UInt64, suspend: Bool = true) {
        failedLines &+= lines
        unloggedFailures &+= lines
        let now = clock()
        if suspend { suspendedUntil = now &+ suspendMs }
        if now >= lastLog &+ 10_000 {
            lastLog = now
            log("msg=\"output retention: disk tier dropping lines\" reason=\"\(what)\" lines=\(unloggedFailures) dir=\"\(dir)\"")
            unloggedFailures = 0
        }
    }

    func enforceBudgets(_ t: DiskTier) {
        while t.bytes > processBudget, let s = t.segments.first { evict(t, s, count: true) }
        while totalBytes > totalBudget {
            var oldest: (DiskTier, Segment)?
            for (_, x) in tiers {
                if let s = x.segments.first, oldest == nil || s.order < oldest!.1.order { oldest = (x, s) }
            }
            guard let (x, s) = oldest else { break }
            evict(x, s, count: true)
        }
    }

    func evict(_ t: DiskTier, _ s: Segment, count: Bool) {
        FD.unlink(path(t.handle, s.order))
        t.segments.removeAll { $0 === s }
        t.bytes -= s.size
        totalBytes -= s.size
        if count { evictedLines &+= s.lines }
        if let k = rkey, k.0 == ObjectIdentifier(t), k.1 == s.order { rkey = nil }
    }

    func added(_ bytes: Int) { totalBytes += bytes }

    // MARK: reading

    /// The batch `b` of segment `s` of tier `t`, read into the read buffer (or already there).
    func load(_ t: DiskTier, _ s: Segment, _ b: BatchRef) -> UnsafeRawPointer? {
        let key = (ObjectIdentifier(t), s.order, b.offset)
        if let k = rkey, k == key { return UnsafeRawPointer(rbuf) }
        rkey = nil
        rcursor = nil
        if b.size > rcap {   // a batch of one line longer than 256 KiB (--max-line-bytes above it)
            rbuf.deallocate()
            rcap = b.size
            rbuf = .allocate(byteCount: rcap, alignment: 16)
        }
        guard let fd = try? FD.open(path(t.handle, s.order), flags: FD.readOnly) else { return nil }
        defer { FD.close(fd) }
        let n = (try? FD.pread(fd, into: UnsafeMutableRawBufferPointer(start: rbuf, count: b.size), at: b.offset)) ?? 0
        guard n == b.size, ld(rbuf, 0, UInt32.self) == batchMagic, ld(rbuf, 8, UInt64.self) == b.firstSeq,
              ld(rbuf, headerSize + b.payloadLen, UInt32.self) == trailerMagic else { return nil }
        rkey = key
        return UnsafeRawPointer(rbuf)
    }
}

/// The disk tier of one process: its segments and batch index, and the batch being built.
public final class DiskTier: JournalSpill {
    /// unowned(unsafe): the daemon-wide part outlives every tier (it lives as long as the daemon), and a
    /// checked `unowned` costs a retain/release per spilled line (40 % of a flood's CPU, measured).
    unowned(unsafe) let owner: DiskRetention
    public let handle: Int
    var segments: [Segment] = []
    /// Bytes of this process's segment files.
    public internal(set) var bytes = 0
    /// One past the last line handed over (written or lost): lines below it are not spilled again.
    var spilledEnd: UInt64 = 0
    /// Batches in the write buffer, offsets relative to the buffer.
    var pending: [BatchRef] = []
    var open: BatchRef?
    var dropping = false
    /// This tier's lines are in the write buffer (it is `owner.writer`).
    var writing = false
    /// A write failed: the next write starts a new segment (the old one may end in a torn batch).
    var needNewSegment = false

    let wb: UnsafeMutablePointer<WriteBuffer>

    init(owner: DiskRetention, handle: Int) {
        self.owner = owner
        wb = owner.wb
        self.handle = handle
    }

    /// Oldest seq on disk (nil: nothing).
    public var firstSeq: UInt64? { segments.first?.batches.first?.firstSeq }
    /// One past the newest seq on disk (0: nothing).
    public var endSeq: UInt64 { segments.last?.batches.last?.endSeq ?? 0 }

    // MARK: JournalSpill

    public func spillLine(seq: UInt64, stream: OutputStream, timestampMs: Int64, text: UnsafeRawBufferPointer, bytesBefore: UInt64) {
        if seq < spilledEnd { return }   // on disk already (written before a crash the journal did not commit)
        spilledEnd = seq &+ 1
        if !writing {   // (a flag, not `owner.writer !== self`: that costs a retain/release per line)
            owner.flush()
            owner.writer = self
            writing = true
            dropping = owner.suspended
        }
        if dropping { owner.failed("suspended after a failed or slow write", lines: 1); return }
        let rec = recordHeader + text.count
        if let b = open {
            let delta = timestampMs &- b.baseTs
            if b.payloadLen + rec > batchPayload || delta < Int64(Int32.min) || delta > Int64(Int32.max) || b.endSeq != seq {
                closeBatch()
            }
        }
        if wb.pointee.len + (open == nil ? headerSize : 0) + rec + trailerSize > wb.pointee.cap {
            owner.flush()   // the buffer is full: write what it holds, continue in an empty one
            owner.writer = self
            writing = true
            dropping = owner.suspended
            if dropping { owner.failed("suspended after a failed or slow write", lines: 1); return }
        }
        if open == nil {
            open = BatchRef(firstSeq: seq, count: 0, offset: wb.pointee.len, payloadLen: 0, bytesBefore: bytesBefore, baseTs: timestampMs)
            wb.pointee.len += headerSize
        }
        let w = wb.pointee.base + wb.pointee.len
        var word = UInt32(text.count)
        if stream == .stderr { word |= diskStderrBit }
        st(w, 0, word)
        st(w, 4, Int32(truncatingIfNeeded: timestampMs &- open!.baseTs))
        if text.count > 0 { (w + recordHeader).copyMemory(from: text.baseAddress!, byteCount: text.count) }
        wb.pointee.len += rec
        open!.count += 1
        open!.payloadLen += rec
    }

    public func spillCommit() {
        if writing { owner.flush() }
    }

    /// Ends the batch being built: its header and trailer.
    func closeBatch() {
        guard let b = open else { return }
        open = nil
        let h = wb.pointee.base + b.offset
        st(h, 0, batchMagic)
        st(h, 4, UInt32(b.payloadLen))
        st(h, 8, b.firstSeq)
        st(h, 16, UInt32(b.count))
        st(h, 20, UInt32(0))
        st(h, 24, b.bytesBefore)
        st(h, 32, b.baseTs)
        let t = wb.pointee.base + wb.pointee.len
        st(t, 0, trailerMagic)
        st(t, 4, UInt32(b.payloadLen))
        st(t, 8, b.firstSeq)
        wb.pointee.len += trailerSize
        pending.append(b)
    }

    func discardPending() { open = nil; pending.removeAll() }

    /// Appends the write buffer to the current segment (or a new one) in one write.
    func writeOut(_ buf: UnsafeRawBufferPointer) {
        let lines = pending.reduce(UInt64(0)) { $0 &+ UInt64($1.count) }
        var seg = segments.last
        var fresh = false
        if seg == nil || needNewSegment || seg!.size >= owner.segmentBytes {
            seg = Segment(order: owner.nextOrder)
            owner.nextOrder &+= 1
            fresh = true
        }
        let s = seg!
        let path = owner.path(handle, s.order)
        var fd = try? FD.openAppend(path)
        if fd == nil {
            // The directory may have been removed under the daemon: make it again.
            try? FD.makeDirectory(owner.dir)
            fd = try? FD.openAppend(path)
        }
        guard let fd else {
            owner.failed("cannot open \(path)", lines: lines)
            return
        }
        defer { FD.close(fd) }
        let t0 = owner.clock()
        let (n, error) = FD.writeAllBytes(fd, buf)
        if let error {
            // Torn: cut the file back to its last whole batch and start a new segment next time.
            if (try? FD.truncate(fd, to: s.size)) == nil { needNewSegment = true }
            if fresh && n > 0 { FD.unlink(path) }
            owner.failed("\(error)", lines: lines)
            return
        }
        let took = owner.clock() &- t0
        needNewSegment = false
        if fresh { segments.append(s) }
        for var b in pending {
            b.offset += s.size
            s.batches.append(b)
        }
        s.size += n
        bytes += n
        owner.added(n)
        if took > owner.slowWriteMs { owner.failed("slow disk: a write of \(n) bytes took \(took) ms", lines: 0) }
    }

    /// After recovery: the disk keeps only lines below the journal's head `h`. Lines at or above it are
    /// in memory, or were spilled within one journal call and never committed (the journal gives their
    /// seqs to other lines now). A batch across `h` is rewritten shortened into a new segment before the
    /// old copy is cut off (a crash in between leaves the old copy, and the next recovery cuts again).
    func cut(at h: UInt64) {
        owner.flush()
        while let s = segments.last, let b = s.batches.last, b.endSeq > h {
            if b.firstSeq < h, let p = owner.load(self, s, b) {
                var len = 0
                for _ in 0..<Int(h - b.firstSeq) { len += recordHeader + Int(ld(p, headerSize + len, UInt32.self) & ~diskStderrBit) }
                let w = wb.pointee.base
                w.copyMemory(from: p, byteCount: headerSize + len)
                st(w, 4, UInt32(len))
                st(w, 16, UInt32(h - b.firstSeq))
                st(w + headerSize + len, 0, trailerMagic)
                st(w + headerSize + len, 4, UInt32(len))
                st(w + headerSize + len, 8, b.firstSeq)
                owner.rkey = nil
                let short = BatchRef(firstSeq: b.firstSeq, count: Int(h - b.firstSeq), offset: 0, payloadLen: len,
                                     bytesBefore: b.bytesBefore, baseTs: b.baseTs)
                dropLast(s)
                pending = [short]
                needNewSegment = true
                writeOut(UnsafeRawBufferPointer(start: w, count: short.size))
                pending.removeAll()
                break
            }
            dropLast(s)
        }
        spilledEnd = endSeq
    }

    /// Cuts the last batch off segment `s` (the file too); an empty segment goes.
    private func dropLast(_ s: Segment) {
        let b = s.batches.removeLast()
        if let fd = try? FD.open(owner.path(handle, s.order), flags: FD.readWrite) {
            try? FD.truncate(fd, to: b.offset)
            FD.close(fd)
        }
        let freed = s.size - b.offset
        s.size = b.offset
        bytes -= freed
        owner.added(-freed)
        if owner.rkey?.1 == s.order { owner.rkey = nil }
        if s.batches.isEmpty {
            FD.unlink(owner.path(handle, s.order))
            segments.removeAll { $0 === s }
        }
    }

    // MARK: recovery

    /// Recovers segment `order` left by a previous daemon: whole batches in seq order; a torn tail is cut.
    func recover(_ order: UInt64) {
        let path = owner.path(handle, order)
        guard let fd = try? FD.open(path, flags: FD.readWrite) else { return }
        defer { FD.close(fd) }
        let size = (try? FD.size(fd)) ?? 0
        let s = Segment(order: order)
        var pos = 0
        var end = endSeq
        var hdr = [UInt8](repeating: 0, count: headerSize)
        while pos + headerSize + trailerSize <= size {
            let ok: BatchRef? = hdr.withUnsafeMutableBytes { h -> BatchRef? in
                guard (try? FD.pread(fd, into: h, at: pos)) == headerSize else { return nil }
                let p = UnsafeRawPointer(h.baseAddress!)
                let len = Int(ld(p, 4, UInt32.self)), first = ld(p, 8, UInt64.self), count = Int(ld(p, 16, UInt32.self))
                guard ld(p, 0, UInt32.self) == batchMagic, count > 0, len >= count * recordHeader,
                      pos + headerSize + len + trailerSize <= size, first >= end, first > 0 else { return nil }
                let b = BatchRef(firstSeq: first, count: count, offset: pos, payloadLen: len,
                                 bytesBefore: ld(p, 24, UInt64.self), baseTs: ld(p, 32, Int64.self))
                guard (try? FD.pread(fd, into: UnsafeMutableRawBufferPointer(rebasing: h[0..<trailerSize]), at: pos + headerSize + len)) == trailerSize,
                      ld(p, 0, UInt32.self) == trailerMagic, Int(ld(p, 4, UInt32.self)) == len, ld(p, 8, UInt64.self) == first else { return nil }
                return b
            }
            guard let b = ok else { break }
            s.batches.append(b)
            pos += b.size
            end = b.endSeq
        }
        if pos < size { try? FD.truncate(fd, to: pos) }
        s.size = pos
        if s.batches.isEmpty {
            FD.unlink(path)
            return
        }
        segments.append(s)
        bytes += pos
        owner.added(pos)
        spilledEnd = max(spilledEnd, end)
        needNewSegment = true   // never append behind a cut tail of an older daemon's write
    }

    // MARK: reading

    /// The batch holding `seq`, or else the first one after it.
    func find(_ seq: UInt64) -> (Segment, Int)? {
        for s in segments {
            guard let last = s.batches.last, last.endSeq > seq else { continue }
            var lo = 0, hi = s.batches.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if s.batches[mid].endSeq > seq { hi = mid } else { lo = mid + 1 }
            }
            return (s, lo)
        }
        return nil
    }

    /// The batch holding `seq`, if on disk.
    func batch(holding seq: UInt64) -> BatchRef? {
        guard let (s, i) = find(seq) else { return nil }
        let b = s.batches[i]
        return b.firstSeq <= seq ? b : nil
    }

    /// The first batch starting after `seq`.
    func batch(after seq: UInt64) -> BatchRef? {
        guard let (s, i) = find(seq) else { return nil }
        let b = s.batches[i]
        if b.firstSeq > seq { return b }
        if i + 1 < s.batches.count { return s.batches[i + 1] }
        if let k = segments.firstIndex(where: { $0 === s }), k + 1 < segments.count { return segments[k + 1].batches.first }
        return nil
    }

    /// The batch ending exactly at `seq`, if any.
    func batch(endingAt seq: UInt64) -> BatchRef? {
        guard seq > 0, let b = batch(holding: seq - 1), b.endSeq == seq else { return nil }
        return b
    }

    /// Visits the lines of the batch holding `seq`, from `seq` on, below `limit`, like `Journal.read`.
    /// Returns the seq to resume from and the text bytes before it; nil if `seq` is not on disk or its
    /// batch cannot be read (then its segment is dropped from the index: the caller sees a gap).
    func read(from seq: UInt64, limit: UInt64, filter: StreamFilter, maxLines: Int,
              _ body: (JournalEntry) -> Bool) -> (next: UInt64, bytes: UInt64)? {
        guard let (s, i) = find(seq) else { return nil }
        let b = s.batches[i]
        guard b.firstSeq <= seq else { return nil }
        guard let p = owner.load(self, s, b) else {
            owner.failed("cannot read \(owner.path(handle, s.order))", lines: s.lines, suspend: false)
            owner.evict(self, s, count: false)
            return nil
        }
        var pos = headerSize
        var cur = b.firstSeq
        var cum = b.bytesBefore
        if let c = owner.rcursor, c.seq > cur, c.seq <= seq { (cur, pos, cum) = c }
        defer { owner.rcursor = (cur, pos, cum) }
        let end = min(b.endSeq, limit)
        var visited = 0
        while cur < end && visited < maxLines {
            let w = ld(p, pos, UInt32.self)
            let len = Int(w & ~diskStderrBit)
            if cur >= seq {
                let stream: OutputStream = w & diskStderrBit != 0 ? .stderr : .stdout
                if filter.includes(stream) {
                    visited += 1
                    let ts = b.baseTs &+ Int64(ld(p, pos + 4, Int32.self))
                    let e = JournalEntry(seq: cur, stream: stream, timestampMs: ts,
                                         text: UnsafeRawBufferPointer(start: p + pos + recordHeader, count: len))
                    let more = body(e)
                    cur &+= 1; cum &+= UInt64(len); pos += recordHeader + len
                    if !more { break }
                    continue
                }
            }
            cur &+= 1; cum &+= UInt64(len); pos += recordHeader + len
        }
        return (cur, cum)
    }
}

extension DiskRetention: JournalSpillProvider {
    /// A journal attached with `attachLazily` is about to drop its first line: its tier starts here.
    public func makeSpill(handle: Int, headSeq: UInt64) -> JournalSpill? {
        let tier = DiskTier(owner: self, handle: handle)
        tiers[handle] = tier
        tier.cut(at: headSeq)
        enforceBudgets(tier)
        return tier
    }
}
