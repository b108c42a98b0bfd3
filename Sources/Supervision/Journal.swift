// Journal: the captured output of one process. stdout and stderr become ONE ordered sequence of lines
// (sequence number, timestamp, stream tag), bounded in bytes. This file owns turning raw pipe bytes
// into lines (per-stream partial lines, CRLF, UTF-8 repair, cutting over-long lines), storing them
// compactly, dropping the oldest output when over budget, and reading lines back for followers, which
// are plain cursors (a seq number): nothing is copied per follower.
//
// Storage: everything durable lives in one flat memory region (see "Region layout" below): either one the
// caller provides (a MAP_SHARED memfd mapping, so that a restarted daemon can rebuild the journal after a
// crash: `init(region:maxBytes:maxLineBytes:fresh:)`), or one the journal allocates itself on its first
// output (heap mode). Both modes run the same code. Lines are records in a byte ring, filled from its start
// (so a quiet process only touches the first page(s) of its region); dropping the oldest output advances
// the ring's head. The heap holds only a sparse index (one entry per 256 lines) and the working copies of
// the two partial lines, all rebuilt from the region on recovery.
//
// Crash consistency: the region is only written by this (single-threaded) code. Every append()/finish()
// ends with one commit: the complete state (ring head/tail, seqs, dropped counts, time bases, partial-line
// placements, pending UTF-8 bytes, drop history) is written to the inactive one of two header slots, then
// a single 8-byte generation word selects it (written last, behind a release fence). New records and new
// partial-line bytes are only ever written to bytes the committed state does not use, so a crash at any
// instant leaves the last committed state intact; a half-written record past the committed tail is
// ignored. When one call writes more than the ring's committed free space, it commits in between (at a
// point where its state is consistent), before overwriting what the previous commit still used.
//
// Hot path (valid UTF-8 lines shorter than maxLineBytes whose previous line ended in an earlier read):
// find "\n" eight bytes at a time while noting whether any byte was non-ASCII, validate UTF-8 only in
// that case, and copy the line from the read buffer straight into the ring. Everything else (a line
// split across reads, invalid UTF-8, over-long lines) goes through the stream's partial-line buffer.

#if canImport(Synchronization)
import Synchronization
#endif
import Sys

/// Which pipe a line came from.
public enum OutputStream: UInt8, Sendable {
    case stdout = 1
    case stderr = 2
}

/// A set of streams, for reading.
public struct StreamFilter: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let stdout = StreamFilter(rawValue: OutputStream.stdout.rawValue)
    public static let stderr = StreamFilter(rawValue: OutputStream.stderr.rawValue)
    public static let both: StreamFilter = [.stdout, .stderr]

    @inline(__always)
    public func includes(_ stream: OutputStream) -> Bool { rawValue & stream.rawValue != 0 }
}

/// One line, as seen by a `Journal.read` callback. Valid only inside the callback: `text` points into
/// the journal's storage.
public struct JournalEntry {
    public let seq: UInt64
    public let stream: OutputStream
    public let timestampMs: Int64
    /// The line's bytes: valid UTF-8, without the terminating "\n" (or "\r\n").
    public let text: UnsafeRawBufferPointer
}

/// Retention (issue 13): where lines go when they leave the memory ring (the disk tier, `DiskTier`).
/// Called from inside `append`/`finish`; an implementation must not use the journal.
public protocol JournalSpill: AnyObject {
    /// Line `seq` is about to be dropped from the ring (lines come in seq order). `bytesBefore`: text
    /// bytes of every line before it. `text` is valid only during the call.
    func spillLine(seq: UInt64, stream: OutputStream, timestampMs: Int64, text: UnsafeRawBufferPointer, bytesBefore: UInt64)
    /// The journal is about to commit a state that no longer holds the lines spilled since the last call:
    /// they must be durable (written) when this returns, so that a crash loses no line.
    func spillCommit()
}

/// Retention (issue 13): makes a journal's spill sink when the journal first drops a line, so that a
/// process that never outgrows its journal costs no disk-tier object (memory per idle process, issue 17).
public protocol JournalSpillProvider: AnyObject {
    func makeSpill(handle: Int, headSeq: UInt64) -> JournalSpill?
}

/// Why a journal could not be recovered from a region.
public struct JournalRecoveryError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The bounded, ordered output of one process. See the top of this file for the design.
///
/// Not thread-safe (it belongs to the daemon's single event-loop thread).
public final class Journal {
    private var core: JournalCore
    /// The region, when the journal allocated it (heap mode); freed with the journal.
    private var owned: UnsafeMutableRawPointer?

    /// Heap mode: the journal allocates its region itself, on its first output.
    ///
    /// - Parameters:
    ///   - maxBytes: the memory bound (at least 1 KiB; `boundBytes`): the retained lines' budget
    ///     (`maxBytes` afterwards) is what is left of it after the header and the ring's slack.
    ///   - maxLineBytes: longer lines are cut into pieces of at most this many bytes. Clamped to
    ///     4...(ring - 152) / 4 so that a line plus both partial lines always fit in the budget.
    public init(maxBytes: Int = 1 << 20, maxLineBytes: Int = 64 << 10) {
        core = JournalCore(geometry: Geometry(boundBytes: maxBytes, maxLineBytes: maxLineBytes))
    }

    /// Shared-region mode: the journal keeps all its durable state in `region`, which the caller keeps
    /// alive and mapped (and nobody else writes) for the journal's lifetime. `region.count` must be at
    /// least `Journal.regionSize(maxBytes:maxLineBytes:)` for the same arguments.
    ///
    /// `fresh: true` initialises the region (an empty journal). `fresh: false` recovers the journal as it
    /// was at its last commit (the end of its last append() or finish() call, or a point inside a call
    /// that wrote more than the ring's free space); a record written after that commit is ignored.
    ///
    /// - Throws: `JournalRecoveryError` if the region is too small, or (recovering) if its header is
    ///   missing, corrupt, from another format version or for another geometry (maxBytes/maxLineBytes),
    ///   or its committed records are inconsistent.
    public init(region: UnsafeMutableRawBufferPointer, maxBytes: Int, maxLineBytes: Int, fresh: Bool) throws {
        // A region of an older daemon is recovered with the geometry of its format version.
        var version = formatVersion
        if !fresh, let p = region.baseAddress, region.count >= 16, ld(p, 0, UInt64.self) == magic {
            version = ld(p, 8, UInt32.self)
        }
        let geometry = Geometry(boundBytes: maxBytes, maxLineBytes: maxLineBytes, version: version)
        guard let base = region.baseAddress, region.count >= geometry.regionSize else {
            throw JournalRecoveryError("region of \(region.count) bytes is smaller than the \(geometry.regionSize) required")
        }
        core = JournalCore(geometry: geometry)
        if fresh {
            core.initialize(base)
        } else {
            try core.recover(base)
        }
    }

    deinit {
        core.live.deallocate()
        if let owned { PageMemory.release(owned, core.geo.regionSize) }
    }

    /// Bytes a region must have for `init(region:...)`: header + ring + both partial-line areas, rounded
    /// up to 4096. Only the pages actually used get touched: the header and the ring's start for a quiet
    /// process, plus the first page of a stream's partial-line area while it has a partial line.
    public static func regionSize(maxBytes: Int, maxLineBytes: Int) -> Int {
        Geometry(boundBytes: maxBytes, maxLineBytes: maxLineBytes).regionSize
    }

    /// Testing only: called right after every commit (at the end of each append()/finish() call, and
    /// for commits in the middle of one), e.g. to snapshot the region. It must not use the journal.
    public var _commitHook: (() -> Void)? {
        get { core.commitHook }
        set { core.commitHook = newValue }
    }

    /// Retention (issue 13): receives every line before it leaves the ring (nil: dropped lines are lost).
    public var spill: JournalSpill? {
        get { core.spill }
        set { core.spill = newValue }
    }

    /// Retention: `provider` makes the spill sink (for `handle`) when the first line is about to be dropped.
    public func spillLazily(_ provider: JournalSpillProvider, handle: Int) {
        core.spillProvider = provider
        core.spillHandle = handle
    }

    /// The effective bound on `retainedBytes`: a little less than `boundBytes` (see Geometry).
    public var maxBytes: Int { core.maxBytes }
    /// The memory bound given at init (`maxBytes:`): header + ring + the first page of each partial-line
    /// area never exceed it; only partial lines longer than a page touch more of their areas.
    public var boundBytes: Int { core.geo.boundBytes }
    /// The effective maximum line length in bytes.
    public var maxLineBytes: Int { core.maxLineBytes }

    @inline(__always)
    private func ensureRegion() {
        if core.base == nil {
            let g = core.geo
            let p = PageMemory.allocate(g.regionSize)
            owned = p
            core.initialize(p)
        }
    }

    /// Feeds raw bytes read from a child's pipe.
    ///
    /// Each stream has its own partial line; a line is complete at "\n", and a "\r" right before the
    /// "\n" is removed. Completed lines get consecutive seqs (from 1) in order of completion, with
    /// timestamp `nowMs`. A partial line longer than `maxLineBytes` is cut (at a character boundary)
    /// into pieces of at most `maxLineBytes`, each becoming a line. Invalid UTF-8 is replaced by U+FFFD
    /// (one per maximal invalid subpart, as `String(decoding:)` does); a character split across calls
    /// is carried over, not mangled. Feeding the same bytes in any split gives the same lines.
    ///
    /// - Returns: the number of lines completed by this call.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer, from stream: OutputStream, nowMs: Int64) -> Int {
        guard bytes.count > 0 else { return 0 }
        ensureRegion()
        return core.append(bytes, stream, nowMs)
    }

    /// EOF on `stream`: an incomplete trailing character becomes U+FFFD and a non-empty partial line
    /// becomes a line (a trailing "\r" is kept: it is not followed by "\n"). The stream can be reused.
    ///
    /// - Returns: lines completed: 0 or 1, or 2 when the last partial line was exactly `maxLineBytes`
    ///   long plus a trailing "\r" or an incomplete character, which then no longer fit in one line.
    @discardableResult
    public func finish(_ stream: OutputStream, nowMs: Int64) -> Int {
        if core.base == nil { return 0 }   // nothing was ever appended
        return core.finish(stream, nowMs)
    }

    /// Seq of the oldest retained line (== nextSeq when nothing is retained).
    public var headSeq: UInt64 { core.headSeq }
    /// Seq the next completed line will get.
    public var nextSeq: UInt64 { core.nextSeq }
    /// Total lines dropped from the head so far (always headSeq - 1).
    public var droppedLines: UInt64 { core.headSeq &- 1 }
    /// Total text bytes dropped so far.
    public var droppedBytes: UInt64 { core.droppedBytes }
    /// What counts against maxBytes: line text + 8 bytes per line (a record's header in the ring) + both
    /// partial lines. (Ring slack for wrapping and time-base records, and the heap index, are not counted.)
    public var retainedBytes: Int { core.retainedBytes }

    /// Visits the retained lines with seq >= `seq` (clamped to headSeq) whose stream is in `filter`, in
    /// seq order. Stops after `maxLines` visits, after scanning 4 * maxLines + 64 entries (lines skipped
    /// by the filter count here only), or after `body` returns false (the line it was given counts as
    /// consumed).
    ///
    /// `body` must not keep `entry.text` beyond the call. Mutating the journal from `body` is safe, but a
    /// mutation that drops lines invalidates the `entry.text` being visited, and ends the read early if it
    /// dropped the lines about to be visited.
    ///
    /// - Returns: the seq to resume from: one past the last entry scanned, or the clamped `seq` if none
    ///   was (a `seq` beyond nextSeq is clamped to nextSeq).
    public func read(from seq: UInt64, filter: StreamFilter, maxLines: Int, _ body: (JournalEntry) -> Bool) -> UInt64 {
        // A copy of the state (a few retains) keeps it unaliased during `body`.
        let snapshot = core
        return snapshot.read(from: seq, filter: filter, maxLines: maxLines, body)
    }

    /// For a reader whose cursor is `seq` (< headSeq): how many lines and text bytes it missed.
    /// `lines` is exact. `bytes` is exact when `seq` is 1, or the first seq of one of the last 64 drop
    /// batches (each drop removes at least min(64 KiB, maxBytes / 8) of the oldest output); otherwise an
    /// upper bound that also counts the earlier lines of the batch holding `seq` (or, beyond the
    /// recorded history, all dropped bytes).
    public func missed(from seq: UInt64) -> (lines: UInt64, bytes: UInt64) {
        core.missed(from: seq)
    }

    /// Text bytes of every line (dropped or retained) with a sequence number below `seq`, exact for
    /// `seq` in headSeq...nextSeq (clamped to that range). A reader that remembers this value for its
    /// cursor can later compute exactly how many bytes it missed: bytesBefore(headSeq) - remembered.
    public func bytesBefore(_ seq: UInt64) -> UInt64 {
        core.bytesBefore(seq)
    }
}

// MARK: - Region layout
//
// All integers are stored in native byte order (little-endian on every supported host; a region from a
// host of the other order fails the magic check), at any alignment.
//
//   [0, 128)            fixed header: magic u64, version u32, ringOffset u32, maxBytes u64,
//                       maxLineBytes u64, ringSize u64, areaSize u64, regionSize u64, geometry hash u64,
//                       then at `genOffset` the commit word: generation u64 (the slot in use is gen & 1).
//   [128, 128 + 2*1168) two state slots (see `Slot`), each with a hash of its fields.
//   [ringOffset, +ringSize)   the ring of records, in positions that only grow (a record at position p
//                       is at ring offset p % ringSize); a record never straddles the ring's end:
//                         line:      u32 (text length | 1 << 31 for stderr), i32 (timestamp - base), text
//                         time base: u32 0x7FFF_FFFE, u32 0, i64 base (for the following lines)
//                         wrap:      u32 0x7FFF_FFFF, or fewer than 8 bytes left: continue at offset 0
//   [area0, +areaSize)  stdout's partial line area, then stderr's. The committed partial line is one
//                       contiguous run in its area; a changed one is written where it does not overlap the
//                       committed run (at 0 if it fits before it, else right after it), so areaSize is 3x
//                       the longest partial line a commit can hold.

private let magic: UInt64 = 0x4C4E_5252_4A44_4E54   // "TNDJRRNL"
private let formatVersion: UInt32 = 2
private let fixedHeaderSize = 128
private let genOffset = 64
private let slotSize = sHistory + 16 * historyLimit   // 1168
private let ringStart = fixedHeaderSize + 2 * slotSize   // 2464
private let historyLimit = 64

// Slot field offsets.
private let sGen = 0, sHeadPos = 8, sTailPos = 16, sHeadSeq = 24, sNextSeq = 32, sDroppedBytes = 40
private let sHeadBase = 48, sTailBase = 56, sPartial = 64 /* 2 x (start u64, len u64, carry u32, carryCount u32) */
private let sHistoryCount = 112, sHistoryNext = 116, sHistoryVersion = 120, sHistoryHash = 128, sHash = 136
private let sHistory = 144   // historyLimit x (firstSeq u64, droppedBytesBefore u64)

private let wrapMarker: UInt32 = 0x7FFF_FFFF
private let baseMarker: UInt32 = 0x7FFF_FFFE
private let baseRecordSize = 16
/// Lines per sparse index entry (a power of two).
private let indexStride: UInt64 = 256
private let indexEntryBytes = 24   // MemoryLayout<IndexEntry>.stride

private struct Geometry {
    /// The memory bound the journal was configured with (`--journal-bytes`).
    let boundBytes: Int
    /// Bound on retainedBytes (the lines' budget).
    let maxBytes: Int
    let maxLineBytes: Int
    /// Longest partial line a commit may hold (a partial line being cut, mid-call).
    let maxPending: Int
    let ringSize: Int
    let areaSize: Int
    let regionSize: Int

    init(boundBytes: Int, maxLineBytes: Int, version: UInt32 = formatVersion) {
        let b = max(boundBytes, 1024)
        self.boundBytes = b
        let m: Int
        if version == 1 {
            // Format 1 (regions of older daemons, still recovered after an upgrade): the budget was the
            // bound, and the ring the bound plus one line and slack.
            m = max(4, min(maxLineBytes, (b - 64) / 4, 1 << 30))
            maxBytes = b
            ringSize = (b + m + 8 + baseRecordSize + 64 + 7) & ~7
        } else {
            // The header, the ring, the first page of each partial-line area and the heap's sparse index
            // (at its largest: every line empty) fit in the bound, so a flood of ordinary lines never
            // makes the journal's memory exceed it (below 64 KiB the ring is the bound and the header
            // and index come on top). The lines' budget is the ring minus what a wrap (< one record)
            // and a time-base record may waste, plus slack; a line and both partial lines always fit in
            // it (3m + 64 <= ring - m - 88).
            let ring = (b >= 64 << 10 ? b - ringStart - 2 * 4096 - Geometry.indexReserve(b) : b) & ~7
            m = max(4, min(maxLineBytes, (ring - 152) / 4, 1 << 30))
            maxBytes = ring - (m + 8 + baseRecordSize + 64)
            ringSize = ring
        }
        self.maxLineBytes = m
        maxPending = m + 8 + 3 * max(m, 256)
        areaSize = (3 * maxPending + 7) & ~7
        regionSize = (ringStart + ringSize + 2 * areaSize + 4095) & ~4095
    }

    /// Most heap bytes the sparse index can take for a ring of about `ring` bytes: one entry per
    /// `indexStride` lines of at least 8 bytes; the array holds up to twice the live entries plus 64
    /// before it is compacted (trimIndex), and its capacity at most doubles that.
    static func indexReserve(_ ring: Int) -> Int {
        let live = ring / 8 / Int(indexStride) + 1
        var cap = 1
        while cap < 2 * live + 64 { cap <<= 1 }
        return (cap * indexEntryBytes + 4095) & ~4095
    }

    var hash: UInt64 {
        var h = hashSeed
        for v in [maxBytes, maxLineBytes, ringSize, areaSize, regionSize, ringStart] { h = mix(h, UInt64(v)) }
        return h
    }
}

private let hashSeed: UInt64 = 0x243F_6A88_85A3_08D3

@inline(__always)
private func mix(_ h: UInt64, _ w: UInt64) -> UInt64 {
    var x = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
    x ^= x >> 29
    return x &* 0xBF58_476D_1CE4_E5B9
}

/// A hash of `words` 8-byte words (four independent lanes, so it is short on latency).
private func hashWords(_ p: UnsafeRawPointer, _ words: Int, _ seed: UInt64) -> UInt64 {
    var a = seed, b = seed &+ 1, c = seed &+ 2, d = seed &+ 3
    var i = 0
    while i &+ 4 <= words {
        a = mix(a, p.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self))
        b = mix(b, p.loadUnaligned(fromByteOffset: i &* 8 &+ 8, as: UInt64.self))
        c = mix(c, p.loadUnaligned(fromByteOffset: i &* 8 &+ 16, as: UInt64.self))
        d = mix(d, p.loadUnaligned(fromByteOffset: i &* 8 &+ 24, as: UInt64.self))
        i &+= 4
    }
    while i < words {
        a = mix(a, p.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self))
        i &+= 1
    }
    let h = mix(mix(mix(mix(a, b), c), d), UInt64(words))
    return h ^ (h >> 31)
}

@inline(__always)
private func commitFence() {
    #if canImport(Synchronization)
    if #available(macOS 15.0, *) { atomicMemoryFence(ordering: .releasing) }
    #endif
}

/// Unaligned load and store of an integer at a byte offset (the journal's and the disk tier's layouts).
@inline(__always)
func ld<T: FixedWidthInteger>(_ p: UnsafeRawPointer, _ off: Int, _: T.Type) -> T {
    p.loadUnaligned(fromByteOffset: off, as: T.self)
}

@inline(__always)
func st<T: FixedWidthInteger>(_ p: UnsafeMutableRawPointer, _ off: Int, _ v: T) {
    p.storeBytes(of: v, toByteOffset: off, as: T.self)
}

// MARK: - Storage

/// Ring bytes of a line record's header, counted (with the text) in `retainedBytes`.
private let lineOverhead = 8
private let stderrBit: UInt32 = 1 << 31
private let lenMask: UInt32 = ~stderrBit

/// Sparse index entry: where line `seq` (a multiple of indexStride) is.
private struct IndexEntry {
    var pos: UInt64
    /// bytesBefore(seq).
    var cum: UInt64
    /// The time base in effect for the record.
    var base: Int64
}

/// Where a drop batch started, for `missed(from:)`.
private struct DropMark {
    var firstSeq: UInt64
    var droppedBytesBefore: UInt64
}

private struct StreamState {
    /// The line in progress: sanitized bytes (valid UTF-8, whole characters only).
    var partial: [UInt8] = []
    /// An incomplete UTF-8 sequence (a valid prefix) that ended the last append, little-endian.
    var carry: UInt32 = 0
    var carryCount = 0
    /// How many leading bytes of `partial` are known to equal the committed copy in the region (reset
    /// to 0 by any change other than appending).
    var synced = 0
}

/// All of the journal's state and logic. A struct held by the `Journal` class, so that the hot path
/// works on plain struct fields (no dynamic exclusivity checks per field access).
private struct JournalCore {
    let geo: Geometry
    // Read from `geo` (stored inline: the same one load) rather than stored again (memory per process).
    var maxBytes: Int { geo.maxBytes }
    var maxLineBytes: Int { geo.maxLineBytes }
    var ringSize: Int { geo.ringSize }
    var ringSize64: UInt64 { UInt64(truncatingIfNeeded: geo.ringSize) }
    /// Bytes of line cost a drop removes at least (amortizes drops; makes `missed` history useful).
    let dropTarget: Int

    /// The region (nil in heap mode until the first output) and its ring.
    var base: UnsafeMutableRawPointer?
    var ring = UnsafeMutableRawPointer(bitPattern: 8)!

    // The ring. Positions only grow; `...Phys` are the matching ring offsets.
    var headPos: UInt64 = 0
    var tailPos: UInt64 = 0
    var headPhys = 0
    var tailPhys = 0
    var headSeq: UInt64 = 1
    var nextSeq: UInt64 = 1
    var droppedBytes: UInt64 = 0
    /// Time base of the record at the head, and for new records.
    var headBase: Int64 = 0
    var tailBase: Int64 = 0
    /// Sum of (text + lineOverhead) and of text over the retained lines.
    var retainedCost = 0
    var retainedText: UInt64 = 0

    /// Sparse index: entries for the seqs that are multiples of indexStride in (headSeq, nextSeq), from
    /// `indexStart` on; the first one is for `indexFirstSeq`.
    var index: ContiguousArray<IndexEntry> = []
    var indexStart = 0
    var indexFirstSeq: UInt64 = 0

    var history: [DropMark] = []
    var historyNext = 0
    var historyVersion: UInt64 = 0

    var out = StreamState()
    var err = StreamState()

    // What the last commit published.
    var gen: UInt64 = 0
    var committedHeadPos: UInt64 = 0
    /// Per stream: (start, length) of the committed partial line in its area.
    var committedPartial: (Int, Int, Int, Int) = (0, 0, 0, 0)
    var slotHistoryVersion: (UInt64, UInt64) = (0, 0)

    /// headSeq, visible to a `read` running on a copy of this struct.
    let live: UnsafeMutablePointer<UInt64>
    var commitHook: (() -> Void)?
    /// Retention (issue 13): the disk tier lines are spilled into before they are dropped.
    var spill: JournalSpill?
    /// Makes `spill` on first use (`sink()`).
    var spillProvider: JournalSpillProvider?
    var spillHandle = 0

    init(geometry g: Geometry) {
        geo = g
        dropTarget = min(64 << 10, max(256, g.maxBytes / 8))
        live = .allocate(capacity: 1)
        live.initialize(to: 1)
    }

    var partialBytes: Int { out.partial.count &+ err.partial.count }

    var retainedBytes: Int { retainedCost &+ partialBytes }

    // MARK: Region setup and recovery

    mutating func initialize(_ p: UnsafeMutableRawPointer) {
        base = p
        ring = p + ringStart
        st(p, 0, UInt64(0))   // no magic until the header is complete
        st(p, 8, formatVersion)
        st(p, 12, UInt32(ringStart))
        st(p, 16, UInt64(geo.maxBytes))
        st(p, 24, UInt64(geo.maxLineBytes))
        st(p, 32, UInt64(geo.ringSize))
        st(p, 40, UInt64(geo.areaSize))
        st(p, 48, UInt64(geo.regionSize))
        st(p, 56, geo.hash)
        gen = 0
        slotHistoryVersion = (UInt64.max, UInt64.max)
        writeSlot(0, gen: 0, placements: (0, 0, 0, 0), carries: (out.carry, out.carryCount, err.carry, err.carryCount))
        st(p, genOffset, UInt64(0))
        commitFence()
        st(p, 0, magic)
    }

    mutating func recover(_ p: UnsafeMutableRawPointer) throws {
        func fail(_ s: String) -> JournalRecoveryError { JournalRecoveryError("journal region: " + s) }
        guard ld(p, 0, UInt64.self) == magic else { throw fail("no journal header (bad magic)") }
        let version = ld(p, 8, UInt32.self)
        guard version == formatVersion || version == 1 else { throw fail("format version \(version), expected \(formatVersion)") }
        let stored = (Int(ld(p, 16, UInt64.self)), Int(ld(p, 24, UInt64.self)), Int(ld(p, 32, UInt64.self)),
                      Int(ld(p, 40, UInt64.self)), Int(ld(p, 48, UInt64.self)), Int(ld(p, 12, UInt32.self)))
        guard stored == (geo.maxBytes, geo.maxLineBytes, geo.ringSize, geo.areaSize, geo.regionSize, ringStart) else {
            throw fail("geometry maxBytes \(stored.0) maxLineBytes \(stored.1) (ring \(stored.2)), expected maxBytes " +
                       "\(geo.maxBytes) maxLineBytes \(geo.maxLineBytes) (ring \(geo.ringSize))")
        }
        guard ld(p, 56, UInt64.self) == geo.hash else { throw fail("corrupt geometry hash") }
        let g = ld(p, genOffset, UInt64.self)
        let slot = UnsafeRawPointer(p + (fixedHeaderSize + Int(g & 1) &* slotSize))
        guard ld(slot, sGen, UInt64.self) == g else { throw fail("slot generation mismatch") }
        guard hashWords(slot, sHash / 8, hashSeed) == ld(slot, sHash, UInt64.self) else { throw fail("corrupt header slot (hash)") }
        let hCount = Int(ld(slot, sHistoryCount, UInt32.self)), hNext = Int(ld(slot, sHistoryNext, UInt32.self))
        guard hCount <= historyLimit, hNext < historyLimit, hCount == historyLimit || hNext == hCount % historyLimit else {
            throw fail("corrupt drop history")
        }
        guard hashWords(slot + sHistory, hCount &* 2, hashSeed) == ld(slot, sHistoryHash, UInt64.self) else {
            throw fail("corrupt drop history (hash)")
        }

        base = p
        ring = p + ringStart
        gen = g
        headPos = ld(slot, sHeadPos, UInt64.self)
        tailPos = ld(slot, sTailPos, UInt64.self)
        headSeq = ld(slot, sHeadSeq, UInt64.self)
        nextSeq = ld(slot, sNextSeq, UInt64.self)
        droppedBytes = ld(slot, sDroppedBytes, UInt64.self)
        headBase = ld(slot, sHeadBase, Int64.self)
        tailBase = ld(slot, sTailBase, Int64.self)
        guard headPos <= tailPos, tailPos &- headPos <= ringSize64, headSeq >= 1, headSeq <= nextSeq else {
            throw fail("inconsistent ring state")
        }
        history = (0..<hCount).map { k in
            DropMark(firstSeq: ld(slot, sHistory &+ 16 &* k, UInt64.self),
                     droppedBytesBefore: ld(slot, sHistory &+ 16 &* k &+ 8, UInt64.self))
        }
        historyNext = hNext
        historyVersion = ld(slot, sHistoryVersion, UInt64.self)
        slotHistoryVersion = g & 1 == 0 ? (historyVersion, UInt64.max) : (UInt64.max, historyVersion)

        // Partial lines.
        var placements: [Int] = []
        for k in 0..<2 {
            let f = sPartial &+ 24 &* k
            let start64 = ld(slot, f, UInt64.self), len64 = ld(slot, f &+ 8, UInt64.self)
            let carry = ld(slot, f &+ 16, UInt32.self), carryCount = Int(ld(slot, f &+ 20, UInt32.self))
            guard len64 <= UInt64(geo.maxPending), start64 <= UInt64(geo.areaSize) else { throw fail("corrupt partial line state") }
            let start = Int(start64), len = Int(len64)
            guard start &+ len <= geo.areaSize, carryCount <= 3,
                  carryCount == 0 || utf8SequenceInfo(UInt8(truncatingIfNeeded: carry)).length > carryCount,
                  carry >> (8 &* UInt32(carryCount)) == 0 else {
                throw fail("corrupt partial line state")
            }
            var s = StreamState()
            s.partial = Array(UnsafeRawBufferPointer(start: areaBase(k) + start, count: len))
            s.carry = carry
            s.carryCount = carryCount
            s.synced = len
            if k == 0 { out = s } else { err = s }
            placements += [start, len]
        }
        committedPartial = (placements[0], placements[1], placements[2], placements[3])

        // Scan the committed records: validates them and rebuilds the index and the totals.
        var pos = headPos
        var phys = Int(headPos % ringSize64)
        headPhys = phys
        var tb = headBase
        var seq = headSeq
        var cum = droppedBytes
        while pos < tailPos {
            let left = ringSize &- phys
            if left < 8 || ld(ring, phys, UInt32.self) == wrapMarker {
                pos &+= UInt64(left)
                phys = 0
                continue
            }
            let w = ld(ring, phys, UInt32.self)
            if w == baseMarker {
                guard pos &+ UInt64(baseRecordSize) <= tailPos else { throw fail("time-base record past the tail") }
                tb = ld(ring, phys &+ 8, Int64.self)
                pos &+= UInt64(baseRecordSize)
                phys &+= baseRecordSize
                continue
            }
            let len = Int(w & lenMask)
            let size = len &+ lineOverhead
            guard len <= maxLineBytes, size <= left, pos &+ UInt64(size) <= tailPos else {
                throw fail("corrupt record at position \(pos)")
            }
            if seq & (indexStride &- 1) == 0 && seq != headSeq { pushIndex(seq, IndexEntry(pos: pos, cum: cum, base: tb)) }
            seq &+= 1
            cum &+= UInt64(len)
            retainedCost &+= size
            pos &+= UInt64(size)
            phys &+= size
        }
        guard pos == tailPos, seq == nextSeq, tb == tailBase else {
            throw fail("records do not match the header (\(seq - headSeq) lines, expected \(nextSeq - headSeq))")
        }
        retainedText = cum &- droppedBytes
        tailPhys = phys
        committedHeadPos = headPos
        live.pointee = headSeq
        // Only a commit made in the middle of cutting a long partial line can hold more than the bound.
        if retainedBytes > maxBytes {
            enforceBound()
            commit()
        }
    }

    @inline(__always)
    func areaBase(_ k: Int) -> UnsafeMutableRawPointer {
        ring + (ringSize &+ k &* geo.areaSize)
    }

    // MARK: Commit

    /// Publishes the current state. `midway`: the stream being processed mid-call, whose state is
    /// `pending` (its partial line; no carry) rather than the one in `self`.
    mutating func commit(midway: OutputStream? = nil, pending: UnsafeBufferPointer<UInt8> = .init(start: nil, count: 0)) {
        // Retention (issue 13): the spilled lines reach the disk before a commit forgets them.
        if let sink = spill { sink.spillCommit() }
        var placements = committedPartial
        var carries = (out.carry, out.carryCount, err.carry, err.carryCount)
        if midway == .stdout {
            (placements.0, placements.1) = placePartial(0, pending, synced: 0)
            carries.0 = 0; carries.1 = 0
        } else if out.synced != out.partial.count || out.synced != committedPartial.1 {
            out.partial.withUnsafeBufferPointer { (placements.0, placements.1) = placePartial(0, $0, synced: out.synced) }
        }
        if midway == .stderr {
            (placements.2, placements.3) = placePartial(1, pending, synced: 0)
            carries.2 = 0; carries.3 = 0
        } else if err.synced != err.partial.count || err.synced != committedPartial.3 {
            err.partial.withUnsafeBufferPointer { (placements.2, placements.3) = placePartial(1, $0, synced: err.synced) }
        }
        let next = gen &+ 1
        writeSlot(Int(next & 1), gen: next, placements: placements, carries: carries)
        commitFence()
        st(base!, genOffset, next)
        gen = next
        committedHeadPos = headPos
        committedPartial = placements
        if midway != .stdout { out.synced = out.partial.count }
        if midway != .stderr { err.synced = err.partial.count }
        if let hook = commitHook { hook() }
    }

    /// Writes stream `k`'s partial line (`bytes`, of which the first `synced` equal the committed copy)
    /// where it does not disturb the committed copy; returns its (start, length).
    mutating func placePartial(_ k: Int, _ bytes: UnsafeBufferPointer<UInt8>, synced: Int) -> (Int, Int) {
        let (s, c) = k == 0 ? (committedPartial.0, committedPartial.1) : (committedPartial.2, committedPartial.3)
        let n = bytes.count
        if n == 0 { return (0, 0) }
        let area = areaBase(k)
        if c == 0 {
            area.copyMemory(from: bytes.baseAddress!, byteCount: n)
            return (0, n)
        }
        if synced == c && n >= c && s &+ n <= geo.areaSize {
            if n > c { (area + (s &+ c)).copyMemory(from: bytes.baseAddress! + c, byteCount: n &- c) }
            return (s, n)
        }
        let start = n <= s ? 0 : s &+ c
        precondition(start &+ n <= geo.areaSize, "journal: partial line area overflow")
        (area + start).copyMemory(from: bytes.baseAddress!, byteCount: n)
        return (start, n)
    }

    mutating func writeSlot(_ which: Int, gen slotGen: UInt64, placements: (Int, Int, Int, Int), carries: (UInt32, Int, UInt32, Int)) {
        let slot = base! + (fixedHeaderSize &+ which &* slotSize)
        st(slot, sGen, slotGen)
        st(slot, sHeadPos, headPos)
        st(slot, sTailPos, tailPos)
        st(slot, sHeadSeq, headSeq)
        st(slot, sNextSeq, nextSeq)
        st(slot, sDroppedBytes, droppedBytes)
        st(slot, sHeadBase, headBase)
        st(slot, sTailBase, tailBase)
        st(slot, sPartial, UInt64(placements.0))
        st(slot, sPartial &+ 8, UInt64(placements.1))
        st(slot, sPartial &+ 16, carries.0)
        st(slot, sPartial &+ 20, UInt32(carries.1))
        st(slot, sPartial &+ 24, UInt64(placements.2))
        st(slot, sPartial &+ 32, UInt64(placements.3))
        st(slot, sPartial &+ 40, carries.2)
        st(slot, sPartial &+ 44, UInt32(carries.3))
        let stale = which == 0 ? slotHistoryVersion.0 != historyVersion : slotHistoryVersion.1 != historyVersion
        if stale {
            for (k, mark) in history.enumerated() {
                st(slot, sHistory &+ 16 &* k, mark.firstSeq)
                st(slot, sHistory &+ 16 &* k &+ 8, mark.droppedBytesBefore)
            }
            st(slot, sHistoryCount, UInt32(history.count))
            st(slot, sHistoryNext, UInt32(historyNext))
            st(slot, sHistoryVersion, historyVersion)
            st(slot, sHistoryHash, hashWords(slot + sHistory, history.count &* 2, hashSeed))
            if which == 0 { slotHistoryVersion.0 = historyVersion } else { slotHistoryVersion.1 = historyVersion }
        }
        st(slot, sHash, hashWords(slot, sHash / 8, hashSeed))
    }

    // MARK: Appending

    mutating func append(_ buf: UnsafeRawBufferPointer, _ stream: OutputStream, _ nowMs: Int64) -> Int {
        guard let base = buf.baseAddress, buf.count > 0 else { return 0 }
        // Take the stream's state out of `self` so it can be mutated alongside `self`.
        var st = StreamState()
        swapState(stream, &st)
        let completed = process(&st, base.assumingMemoryBound(to: UInt8.self), buf.count, stream, nowMs)
        swapState(stream, &st)
        enforceBound()
        commit()
        return completed
    }

    mutating func finish(_ stream: OutputStream, _ nowMs: Int64) -> Int {
        var st = StreamState()
        swapState(stream, &st)
        if st.carryCount > 0 {
            appendReplacement(to: &st.partial)
            st.carry = 0
            st.carryCount = 0
        }
        var completed = cutLongPartial(&st, stream, nowMs, trailingCRIsContent: true)
        if !st.partial.isEmpty {
            commitPartial(&st, count: st.partial.count, stream, nowMs)
            completed &+= 1
        }
        st.partial = []   // the stream is done: free the buffer
        st.synced = 0
        swapState(stream, &st)
        enforceBound()
        commit()
        return completed
    }

    @inline(__always)
    mutating func swapState(_ stream: OutputStream, _ st: inout StreamState) {
        switch stream {
        case .stdout: swap(&out, &st)
        case .stderr: swap(&err, &st)
        }
    }

    /// Splits `src[0..<n]` into lines for the stream whose state is `st` (taken out of `self`).
    mutating func process(
        _ st: inout StreamState, _ src: UnsafePointer<UInt8>, _ n: Int, _ stream: OutputStream, _ nowMs: Int64
    ) -> Int {
        var completed = 0
        var p = 0
        if st.carryCount > 0 {
            p = resolveCarry(&st, src, n)
            if st.carryCount > 0 { return 0 }   // still incomplete: the input was all continuation bytes
            completed &+= cutLongPartial(&st, stream, nowMs, trailingCRIsContent: false)
        }
        let none = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
        while p < n {
            let (nl, ascii) = findNewline(src, from: p, end: n)
            guard nl < n else {
                completed &+= feedPartial(&st, src + p, n &- p, endOfLine: false, stream, nowMs)
                break
            }
            if st.partial.isEmpty {
                // Fast path: the whole line is in this buffer.
                var len = nl &- p
                if len > 0 && src[nl &- 1] == 0x0D { len &-= 1 }
                if len <= maxLineBytes && (ascii || validUTF8Prefix(src + p, from: 0, count: len) == len) {
                    commitLine(src + p, len, stream, nowMs, keep: partialBytes, pending: none)
                    completed &+= 1
                    p = nl &+ 1
                    continue
                }
            }
            completed &+= feedPartial(&st, src + p, nl &- p, endOfLine: true, stream, nowMs)
            var len = st.partial.count
            if len > 0 && st.partial[len &- 1] == 0x0D { len &-= 1 }
            commitPartial(&st, count: len, stream, nowMs)
            completed &+= 1
            p = nl &+ 1
        }
        return completed
    }

    /// Completes (or fails) the carried-over incomplete character with the first bytes of `src`, into
    /// the partial line. Returns the number of input bytes used.
    mutating func resolveCarry(_ st: inout StreamState, _ src: UnsafePointer<UInt8>, _ n: Int) -> Int {
        let lead = UInt8(truncatingIfNeeded: st.carry)
        let (need, lo, hi) = utf8SequenceInfo(lead)
        var have = st.carryCount
        var i = 0
        var valid = true
        while have < need {
            if i == n {
                st.carryCount = have
                return n
            }
            let b = src[i]
            if have == 1 ? (b < lo || b > hi) : (b & 0xC0 != 0x80) {
                valid = false
                break
            }
            st.carry |= UInt32(b) << (8 &* UInt32(have))
            have &+= 1
            i &+= 1
        }
        if valid {
            for k in 0..<have { st.partial.append(UInt8(truncatingIfNeeded: st.carry >> (8 &* UInt32(k)))) }
        } else {
            appendReplacement(to: &st.partial)
        }
        st.carry = 0
        st.carryCount = 0
        return i
    }

    /// Adds `src[0..<n]` (no "\n" in it) to the partial line, repairing UTF-8 and cutting pieces off the
    /// front while it is too long. At the end of the input (`endOfLine` false) an incomplete trailing
    /// character is carried over. Works in chunks of about maxLineBytes so the buffer stays small.
    mutating func feedPartial(
        _ st: inout StreamState, _ src: UnsafePointer<UInt8>, _ n: Int, endOfLine: Bool,
        _ stream: OutputStream, _ nowMs: Int64
    ) -> Int {
        let chunk = max(maxLineBytes, 256)
        var completed = 0
        var q = 0
        while true {
            let e = min(n, q &+ chunk)
            let last = e == n
            let consumed = sanitizeUTF8(src + q, count: e &- q, final: last && endOfLine, into: &st.partial)
            completed &+= cutLongPartial(&st, stream, nowMs, trailingCRIsContent: false)
            if last {
                // Leftover bytes: a valid prefix of a character cut by the end of the input.
                for k in consumed..<(e &- q) {
                    st.carry |= UInt32(src[q &+ k]) << (8 &* UInt32(st.carryCount))
                    st.carryCount &+= 1
                }
                return completed
            }
            q &+= consumed   // an incomplete character at the chunk's end is re-read with the next chunk
        }
    }

    /// Cuts pieces of at most maxLineBytes (ending at a character boundary) off the front of the partial
    /// line while it is longer than that. A trailing "\r" does not count unless `trailingCRIsContent`
    /// (it may yet turn out to be part of a "\r\n"); so whatever way the bytes are split across calls,
    /// the pieces are the same.
    mutating func cutLongPartial(
        _ st: inout StreamState, _ stream: OutputStream, _ nowMs: Int64, trailingCRIsContent: Bool
    ) -> Int {
        var completed = 0
        while true {
            let c = st.partial.count
            let effective = !trailingCRIsContent && c > 0 && st.partial[c &- 1] == 0x0D ? c &- 1 : c
            if effective <= maxLineBytes { return completed }
            var cut = maxLineBytes
            while cut > 0 && st.partial[cut] & 0xC0 == 0x80 { cut &-= 1 }
            let keep = partialBytes &+ min(c &- cut, maxLineBytes &+ 1)
            st.partial.withUnsafeBufferPointer {
                commitLine($0.baseAddress!, cut, stream, nowMs, keep: keep, pending: $0)
            }
            st.partial.removeSubrange(0..<cut)
            st.synced = 0
            completed &+= 1
        }
    }

    /// Commits the first `count` bytes of the partial line as a line and clears it.
    mutating func commitPartial(_ st: inout StreamState, count: Int, _ stream: OutputStream, _ nowMs: Int64) {
        let keep = partialBytes
        st.partial.withUnsafeBufferPointer {
            commitLine($0.baseAddress!, count, stream, nowMs, keep: keep, pending: $0)
        }
        // Keep a small buffer for the next partial line; give a big one back.
        st.partial.removeAll(keepingCapacity: st.partial.capacity <= 4096)
        st.synced = 0
    }

    /// Stores one complete line. `keep` is how many partial-line bytes will be retained after it, which
    /// must fit in the bound alongside it. `pending` is the stream's partial line as it stands (holding
    /// the line, unless it comes straight from the input): what a commit made before the line is
    /// written records.
    @inline(__always)
    mutating func commitLine(
        _ src: UnsafePointer<UInt8>, _ len: Int, _ stream: OutputStream, _ nowMs: Int64, keep: Int,
        pending: UnsafeBufferPointer<UInt8>
    ) {
        let cost = len &+ lineOverhead
        if retainedCost &+ cost &+ keep > maxBytes { dropOldest(toFit: cost &+ keep) }
        var (delta, overflow) = nowMs.subtractingReportingOverflow(tailBase)
        if overflow || delta != Int64(Int32(truncatingIfNeeded: delta)) {
            newTimeBase(nowMs, stream, pending)
            delta = 0
        }
        var at = tailPhys
        if at &+ cost > ringSize || tailPos &+ UInt64(cost) > committedHeadPos &+ ringSize64 {
            at = reserveSlow(cost, stream, pending)
        }
        if nextSeq & (indexStride &- 1) == 0 && nextSeq != headSeq {
            pushIndex(nextSeq, IndexEntry(pos: tailPos, cum: droppedBytes &+ retainedText, base: tailBase))
        }
        let p = ring + at
        p.storeBytes(of: UInt32(truncatingIfNeeded: len) | (stream == .stderr ? stderrBit : 0), as: UInt32.self)
        p.storeBytes(of: Int32(truncatingIfNeeded: delta), toByteOffset: 4, as: Int32.self)
        if len > 0 { (p + 8).copyMemory(from: src, byteCount: len) }
        tailPos &+= UInt64(cost)
        tailPhys = at &+ cost
        retainedCost &+= cost
        retainedText &+= UInt64(len)
        nextSeq &+= 1
    }

    /// New lines need a time base their timestamps fit (as Int32 deltas) from.
    mutating func newTimeBase(_ nowMs: Int64, _ stream: OutputStream, _ pending: UnsafeBufferPointer<UInt8>) {
        if headPos == tailPos {
            headBase = nowMs
            tailBase = nowMs
            return
        }
        var at = tailPhys
        if at &+ baseRecordSize > ringSize || tailPos &+ UInt64(baseRecordSize) > committedHeadPos &+ ringSize64 {
            at = reserveSlow(baseRecordSize, stream, pending)
        }
        let p = ring + at
        p.storeBytes(of: baseMarker, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: nowMs, toByteOffset: 8, as: Int64.self)
        tailPos &+= UInt64(baseRecordSize)
        tailPhys = at &+ baseRecordSize
        tailBase = nowMs
    }

    /// Makes room for a record of `size` bytes at the tail: wraps the tail to the ring's start if the
    /// record would straddle the end, drops lines still in the way, and commits first if the record would
    /// overwrite bytes the last commit still uses. Returns the ring offset to write at.
    mutating func reserveSlow(_ size: Int, _ stream: OutputStream, _ pending: UnsafeBufferPointer<UInt8>) -> Int {
        let wraps = tailPhys &+ size > ringSize
        let end = tailPos &+ UInt64(wraps ? ringSize &- tailPhys &+ size : size)
        if end > headPos &+ ringSize64 {
            // The ring itself is full (only with many time-base records): drop lines until it fits.
            let first = headSeq, before = droppedBytes
            while end > headPos &+ ringSize64 && headSeq < nextSeq {
                if let sink = sink() { dropSpilling(sink) } else { dropRecord() }
            }
            if headSeq == nextSeq { emptyRing() }
            if headSeq > first { recordDrop(first, before) }
        }
        if end > committedHeadPos &+ ringSize64 {
            commit(midway: stream, pending: pending)
        }
        if wraps {
            if ringSize &- tailPhys >= 8 { (ring + tailPhys).storeBytes(of: wrapMarker, as: UInt32.self) }
            tailPos &+= UInt64(ringSize &- tailPhys)
            tailPhys = 0
            if headSeq == nextSeq { emptyRing() }
        }
        return tailPhys
    }

    @inline(__always)
    mutating func pushIndex(_ seq: UInt64, _ e: IndexEntry) {
        if indexStart == index.count {
            index.removeAll(keepingCapacity: true)
            indexStart = 0
            indexFirstSeq = seq
        }
        index.append(e)
    }

    /// Pops index entries at or below headSeq.
    @inline(__always)
    mutating func trimIndex() {
        while indexStart < index.count && indexFirstSeq <= headSeq {
            indexStart &+= 1
            indexFirstSeq &+= indexStride
        }
        if indexStart == index.count {
            index.removeAll(keepingCapacity: index.capacity <= 1024)
            indexStart = 0
        } else if indexStart >= 64 && indexStart &* 2 >= index.count {
            index.removeFirst(indexStart)
            indexStart = 0
        }
    }

    /// The spill sink, made by the provider when the first line is dropped.
    mutating func sink() -> JournalSpill? {
        if let s = spill { return s }
        guard let p = spillProvider else { return nil }
        spillProvider = nil
        spill = p.makeSpill(handle: spillHandle, headSeq: headSeq)
        return spill
    }

    /// Drops the line at the head after handing it to the spill sink (retention, issue 13).
    @inline(__always)
    mutating func dropSpilling(_ sink: JournalSpill) {
        let w = skipToLine(ring, ringSize, &headPos, &headPhys, &headBase)
        let len = Int(w & lenMask)
        let delta = Int64(ring.loadUnaligned(fromByteOffset: headPhys &+ 4, as: Int32.self))
        sink.spillLine(seq: headSeq, stream: w & stderrBit != 0 ? .stderr : .stdout, timestampMs: headBase &+ delta,
                       text: UnsafeRawBufferPointer(start: ring + (headPhys &+ lineOverhead), count: len),
                       bytesBefore: droppedBytes)
        dropRecord()
    }

    /// Drops the record at the head (a line, or a wrap / time-base record before one).
    mutating func dropRecord() {
        let w = skipToLine(ring, ringSize, &headPos, &headPhys, &headBase)
        let len = Int(w & lenMask)
        let size = len &+ lineOverhead
        headPos &+= UInt64(size)
        headPhys &+= size
        headSeq &+= 1
        droppedBytes &+= UInt64(len)
        retainedText &-= UInt64(len)
        retainedCost &-= size
        if indexStart < index.count && indexFirstSeq <= headSeq { trimIndex() }
    }

    /// No lines left: the head moves to the tail.
    mutating func emptyRing() {
        headPos = tailPos
        headPhys = tailPhys
        headBase = tailBase
        trimIndex()
    }

    /// Drops the oldest lines until `extra` more bytes fit in the bound: at least dropTarget bytes of
    /// line cost at a time, or all of them.
    mutating func dropOldest(toFit extra: Int) {
        guard retainedCost &+ extra > maxBytes, headSeq < nextSeq else { return }
        let target = max(retainedCost &+ extra &- maxBytes, dropTarget)
        let first = headSeq, before = droppedBytes, startCost = retainedCost
        // Retention (issue 13): with a disk tier every line is handed over, one at a time.
        if let sink = sink() {
            while headSeq < nextSeq && startCost &- retainedCost < target { dropSpilling(sink) }
        }
        while headSeq < nextSeq {
            let dropped = startCost &- retainedCost
            if dropped >= target { break }
            // Jump a whole index stride when it does not overshoot; else one line.
            if indexStart < index.count {
                let e = index[indexStart]
                let cost = Int(e.cum &- droppedBytes) &+ Int(indexFirstSeq &- headSeq) &* lineOverhead
                if cost <= target &- dropped {
                    let lines = indexFirstSeq &- headSeq
                    headPos = e.pos
                    headPhys = Int(e.pos % ringSize64)
                    headBase = e.base
                    retainedText &-= e.cum &- droppedBytes
                    retainedCost &-= cost
                    droppedBytes = e.cum
                    headSeq &+= lines
                    trimIndex()
                    continue
                }
            }
            dropRecord()
        }
        if headSeq == nextSeq { emptyRing() }
        recordDrop(first, before)
    }

    mutating func recordDrop(_ firstSeq: UInt64, _ droppedBytesBefore: UInt64) {
        let mark = DropMark(firstSeq: firstSeq, droppedBytesBefore: droppedBytesBefore)
        if history.count < historyLimit {
            history.append(mark)
        } else {
            history[historyNext] = mark
        }
        historyNext = (historyNext &+ 1) % historyLimit
        historyVersion &+= 1
        live.pointee = headSeq
    }

    /// After partial lines grew: drop old lines so that everything fits in the bound.
    @inline(__always)
    mutating func enforceBound() {
        let p = partialBytes
        if retainedCost &+ p > maxBytes { dropOldest(toFit: p) }
    }

    // MARK: Reading

    /// Where line `seq` (headSeq <= seq < nextSeq) is: position, ring offset, time base, bytesBefore(seq).
    func locate(_ seq: UInt64) -> (pos: UInt64, phys: Int, base: Int64, cum: UInt64) {
        var pos = headPos, phys = headPhys, tb = headBase, cum = droppedBytes, s = headSeq
        if indexStart < index.count && seq >= indexFirstSeq {
            let k = indexStart &+ Int((seq &- indexFirstSeq) / indexStride)
            let e = index[k]
            pos = e.pos
            phys = Int(e.pos % ringSize64)
            tb = e.base
            cum = e.cum
            s = indexFirstSeq &+ UInt64(k &- indexStart) &* indexStride
        }
        while true {
            let w = skipToLine(ring, ringSize, &pos, &phys, &tb)
            if s == seq { return (pos, phys, tb, cum) }
            let len = Int(w & lenMask)
            cum &+= UInt64(len)
            pos &+= UInt64(len &+ lineOverhead)
            phys &+= len &+ lineOverhead
            s &+= 1
        }
    }

    func read(from seq: UInt64, filter: StreamFilter, maxLines: Int, _ body: (JournalEntry) -> Bool) -> UInt64 {
        var cursor = min(max(seq, headSeq), nextSeq)
        guard cursor < nextSeq, maxLines > 0 else { return cursor }
        let scanLimit = maxLines > (Int.max - 64) / 4 ? Int.max : maxLines &* 4 &+ 64
        var scanned = 0
        var visited = 0
        var (_, phys, tb, _) = locate(cursor)
        let ring = self.ring, ringSize = self.ringSize, end = nextSeq
        while cursor < end {
            if visited == maxLines || scanned == scanLimit { break }
            if ringSize &- phys < 8 {
                phys = 0
                continue
            }
            let w = ld(ring, phys, UInt32.self)
            if w >= baseMarker && w <= wrapMarker {
                if w == wrapMarker {
                    phys = 0
                } else {
                    tb = ld(ring, phys &+ 8, Int64.self)
                    phys &+= baseRecordSize
                }
                continue
            }
            let len = Int(w & lenMask)
            let stream: OutputStream = w & stderrBit != 0 ? .stderr : .stdout
            scanned &+= 1
            cursor &+= 1
            if filter.includes(stream) {
                visited &+= 1
                let delta = Int64(ring.loadUnaligned(fromByteOffset: phys &+ 4, as: Int32.self))
                let entry = JournalEntry(
                    seq: cursor &- 1, stream: stream, timestampMs: tb &+ delta,
                    text: UnsafeRawBufferPointer(start: ring + (phys &+ lineOverhead), count: len))
                if !body(entry) { break }
                // `body` may have mutated the journal: stop if the lines ahead were dropped.
                if live.pointee > cursor { break }
            }
            phys &+= len &+ lineOverhead
        }
        return cursor
    }

    func bytesBefore(_ seq: UInt64) -> UInt64 {
        let s = min(max(seq, headSeq), nextSeq)
        if s == nextSeq { return droppedBytes &+ retainedText }
        if s == headSeq { return droppedBytes }
        return locate(s).cum
    }

    func missed(from seq: UInt64) -> (lines: UInt64, bytes: UInt64) {
        let head = headSeq
        let s = max(seq, 1)
        guard s < head else { return (0, 0) }
        // The latest recorded drop that started at or before `s`.
        var best: DropMark?
        for mark in history where mark.firstSeq <= s {
            if best == nil || mark.firstSeq > best!.firstSeq { best = mark }
        }
        let bytes = droppedBytes &- (best?.droppedBytesBefore ?? 0)
        return (head &- s, bytes)
    }
}

// MARK: - UTF-8 and newline scanning

private let lowBits: UInt64 = 0x0101_0101_0101_0101
private let highBits: UInt64 = 0x8080_8080_8080_8080

@inline(__always)
private func load8(_ p: UnsafePointer<UInt8>) -> UInt64 {
    UInt64(littleEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt64.self))
}

/// The bytes' high bits, folded into one word: zero if all sixteen are ASCII.
@inline(__always)
private func highBits(_ v: SIMD16<UInt8>) -> UInt64 {
    let words = unsafeBitCast(v, to: SIMD2<UInt64>.self)
    return (words[0] | words[1]) & highBits
}

/// The index of the first "\n" in `src[from..<end]` (or `end`), and whether every byte scanned was
/// ASCII (false may be a false alarm: bytes after the "\n" in its 16- or 8-byte block are included).
/// Sixteen bytes at a time (SIMD), then eight, then one.
@inline(__always)
private func findNewline(_ src: UnsafePointer<UInt8>, from: Int, end: Int) -> (Int, Bool) {
    var i = from
    // Vector-with-vector compares (a compare with a scalar is lowered lane by lane).
    let newline = SIMD16<UInt8>(repeating: 0x0A)
    var seen16 = SIMD16<UInt8>()
    while i &+ 16 <= end {
        let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<UInt8>.self)
        seen16 |= v
        let m = v .== newline
        if any(m) {
            // The mask's lanes are 0x00 or 0xFF bytes; lane 0 is the low byte of the first word (little-endian).
            let words = unsafeBitCast(m, to: SIMD2<UInt64>.self)
            let k = (words[0] != 0 ? words[0].trailingZeroBitCount : 64 &+ words[1].trailingZeroBitCount) >> 3
            return (i &+ k, highBits(seen16) == 0)
        }
        i &+= 16
    }
    var seen = highBits(seen16)
    while i &+ 8 <= end {
        let w = load8(src + i)
        seen |= w
        let x = w ^ (lowBits &* 0x0A)
        let m = (x &- lowBits) & ~x & highBits   // lowest set bit marks the first "\n" exactly
        if m != 0 { return (i &+ m.trailingZeroBitCount >> 3, seen & highBits == 0) }
        i &+= 8
    }
    while i < end {
        let b = src[i]
        if b == 0x0A { break }
        seen |= UInt64(b)
        i &+= 1
    }
    return (i, seen & highBits == 0)
}

/// Moves (pos, phys) past any wrap and time-base records to the next line record, taking the time base
/// of a time-base record it passes; returns that line record's header word. The caller knows a line
/// record follows (the position is before the tail).
@inline(__always)
private func skipToLine(_ ring: UnsafeMutableRawPointer, _ ringSize: Int, _ pos: inout UInt64, _ phys: inout Int,
                        _ tb: inout Int64) -> UInt32 {
    while true {
        let left = ringSize &- phys
        if left < 8 || ld(ring, phys, UInt32.self) == wrapMarker {
            pos &+= UInt64(left)
            phys = 0
            continue
        }
        let w = ld(ring, phys, UInt32.self)
        if w != baseMarker { return w }
        tb = ld(ring, phys &+ 8, Int64.self)
        pos &+= UInt64(baseRecordSize)
        phys &+= baseRecordSize
    }
}

/// For a UTF-8 lead byte: the sequence length (0 if `b` cannot start a sequence) and the valid range
/// of the second byte (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
@inline(__always)
private func utf8SequenceInfo(_ b: UInt8) -> (length: Int, lo: UInt8, hi: UInt8) {
    switch b {
    case 0x00...0x7F: return (1, 0, 0)
    case 0xC2...0xDF: return (2, 0x80, 0xBF)
    case 0xE0: return (3, 0xA0, 0xBF)
    case 0xED: return (3, 0x80, 0x9F)
    case 0xE1...0xEF: return (3, 0x80, 0xBF)
    case 0xF0: return (4, 0x90, 0xBF)
    case 0xF1...0xF3: return (4, 0x80, 0xBF)
    case 0xF4: return (4, 0x80, 0x8F)
    default: return (0, 0, 0)
    }
}

/// The index of the first byte in `src[from..<count]` that does not start a complete, valid UTF-8
/// character (or `count`). ASCII is skipped eight bytes at a time.
private func validUTF8Prefix(_ src: UnsafePointer<UInt8>, from: Int, count n: Int) -> Int {
    var i = from
    while i < n {
        while i &+ 8 <= n && load8(src + i) & highBits == 0 { i &+= 8 }
        guard i < n else { break }
        let b0 = src[i]
        if b0 < 0x80 {
            i &+= 1
            continue
        }
        let (len, lo, hi) = utf8SequenceInfo(b0)
        guard len > 0 && i &+ len <= n else { return i }
        let b1 = src[i &+ 1]
        guard b1 >= lo && b1 <= hi else { return i }
        if len >= 3 && src[i &+ 2] & 0xC0 != 0x80 { return i }
        if len == 4 && src[i &+ 3] & 0xC0 != 0x80 { return i }
        i &+= len
    }
    return n
}

@inline(__always)
private func appendReplacement(to dst: inout [UInt8]) {
    dst.append(0xEF)
    dst.append(0xBF)
    dst.append(0xBD)
}

/// Appends `src[0..<n]` to `dst` with each maximal invalid subpart replaced by U+FFFD. Unless `final`,
/// a trailing valid prefix of a character is left out (it may be completed by later bytes).
/// Returns the number of input bytes consumed.
private func sanitizeUTF8(_ src: UnsafePointer<UInt8>, count n: Int, final: Bool, into dst: inout [UInt8]) -> Int {
    var run = 0
    var i = 0
    while true {
        i = validUTF8Prefix(src, from: i, count: n)
        if i == n { break }
        // src[i] starts an invalid or truncated sequence: how long is its valid prefix?
        let (len, lo, hi) = utf8SequenceInfo(src[i])
        var good = len > 0 ? 1 : 0
        var truncated = false
        if len > 0 {
            while good < len {
                if i &+ good >= n {
                    truncated = true
                    break
                }
                let b = src[i &+ good]
                if good == 1 ? (b < lo || b > hi) : (b & 0xC0 != 0x80) { break }
                good &+= 1
            }
        }
        if i > run { dst.append(contentsOf: UnsafeBufferPointer(start: src + run, count: i &- run)) }
        if truncated && !final { return i }
        appendReplacement(to: &dst)
        i &+= max(good, 1)
        run = i
    }
    if n > run { dst.append(contentsOf: UnsafeBufferPointer(start: src + run, count: n &- run)) }
    return n
}
