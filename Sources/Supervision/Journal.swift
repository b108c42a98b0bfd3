// Journal: the captured output of one process. stdout and stderr become ONE ordered sequence of lines
// (sequence number, timestamp, stream tag), bounded in bytes. This file owns turning raw pipe bytes
// into lines (per-stream partial lines, CRLF, UTF-8 repair, cutting over-long lines), storing them
// compactly, dropping the oldest output when over budget, and reading lines back for followers, which
// are plain cursors (a seq number): nothing is copied per follower.
//
// Storage: lines live in segments. A segment is one byte buffer holding its lines' text back to back
// plus an index of 8 bytes per line (end offset + stream bit, timestamp delta from the segment's base);
// a line's seq is implicit (segment's first seq + position). Only the newest segment (the tail) grows;
// it is sealed once it reaches `segmentTarget` bytes (64 KiB at the default bound). When the bound is
// hit, the oldest whole segments are dropped. Nothing is allocated until the first line arrives and
// the first segment grows from small, so an idle or quiet process costs next to nothing; a dropped
// segment's buffers are recycled for the next tail, so a busy process at its bound does not allocate.
//
// Hot path (valid UTF-8 lines shorter than maxLineBytes whose previous line ended in an earlier read):
// find "\n" eight bytes at a time while noting whether any byte was non-ASCII, validate UTF-8 only in
// that case, and copy the line from the read buffer straight into the tail. Everything else (a line
// split across reads, invalid UTF-8, over-long lines) goes through the stream's partial-line buffer.

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

/// The bounded, ordered output of one process. See the top of this file for the design.
///
/// Not thread-safe (it belongs to the daemon's single event-loop thread).
public final class Journal {
    private var core: JournalCore

    /// - Parameters:
    ///   - maxBytes: bound on `retainedBytes` (at least 1 KiB).
    ///   - maxLineBytes: longer lines are cut into pieces of at most this many bytes. Clamped to
    ///     4...(maxBytes - 64) / 4 so that a line plus both partial lines always fit in the bound.
    public init(maxBytes: Int = 1 << 20, maxLineBytes: Int = 64 << 10) {
        core = JournalCore(maxBytes: maxBytes, maxLineBytes: maxLineBytes)
    }

    /// The effective bound on `retainedBytes`.
    public var maxBytes: Int { core.maxBytes }
    /// The effective maximum line length in bytes.
    public var maxLineBytes: Int { core.maxLineBytes }

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
        core.append(bytes, stream, nowMs)
    }

    /// EOF on `stream`: an incomplete trailing character becomes U+FFFD and a non-empty partial line
    /// becomes a line (a trailing "\r" is kept: it is not followed by "\n"). The stream can be reused.
    ///
    /// - Returns: lines completed: 0 or 1, or 2 when the last partial line was exactly `maxLineBytes`
    ///   long plus a trailing "\r" or an incomplete character, which then no longer fit in one line.
    @discardableResult
    public func finish(_ stream: OutputStream, nowMs: Int64) -> Int {
        core.finish(stream, nowMs)
    }

    /// Seq of the oldest retained line (== nextSeq when nothing is retained).
    public var headSeq: UInt64 { core.headSeq }
    /// Seq the next completed line will get.
    public var nextSeq: UInt64 { core.nextSeq }
    /// Total lines dropped from the head so far (always headSeq - 1).
    public var droppedLines: UInt64 { core.droppedLines }
    /// Total text bytes dropped so far.
    public var droppedBytes: UInt64 { core.droppedBytes }
    /// What counts against maxBytes: line text + 8 bytes of index per line + both partial lines.
    /// (Buffer slack and one recycled spare segment are not counted.)
    public var retainedBytes: Int { core.retainedBytes }

    /// Visits the retained lines with seq >= `seq` (clamped to headSeq) whose stream is in `filter`, in
    /// seq order. Stops after `maxLines` visits, after scanning 4 * maxLines + 64 entries (lines skipped
    /// by the filter count here only), or after `body` returns false (the line it was given counts as
    /// consumed).
    ///
    /// `body` must not keep `entry.text` beyond the call. (Mutating the journal from `body` is safe but
    /// makes the journal copy its newest segment.)
    ///
    /// - Returns: the seq to resume from: one past the last entry scanned, or the clamped `seq` if none
    ///   was (a `seq` beyond nextSeq is clamped to nextSeq).
    public func read(from seq: UInt64, filter: StreamFilter, maxLines: Int, _ body: (JournalEntry) -> Bool) -> UInt64 {
        // A copy of the state (a few retains) keeps every buffer alive and unaliased during `body`.
        let snapshot = core
        return snapshot.read(from: seq, filter: filter, maxLines: maxLines, body)
    }

    /// For a reader whose cursor is `seq` (< headSeq): how many lines and text bytes it missed.
    /// `lines` is exact. `bytes` is exact when `seq` is 1, or the first seq of one of the last 64 dropped
    /// segments; otherwise an upper bound that also counts the earlier lines of the dropped segment
    /// holding `seq` (or, beyond the recorded history, all dropped bytes).
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

// MARK: - Storage

/// Index bytes per line, counted in `retainedBytes`.
private let lineOverhead = MemoryLayout<LineRecord>.stride
private let stderrBit: UInt32 = 1 << 31
private let endMask: UInt32 = ~stderrBit

private struct LineRecord {
    /// Offset one past the line's last byte in the segment's buffer; bit 31 set for stderr.
    var end: UInt32
    /// Timestamp minus the segment's `baseTs`.
    var tsDelta: Int32
}

private struct Segment {
    var firstSeq: UInt64
    var baseTs: Int64
    var bytes: [UInt8]
    var lines: [LineRecord]

    var cost: Int { bytes.count &+ lines.count &* lineOverhead }
}

/// Where a dropped segment started, for `missed(from:)`.
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
}

private let historyLimit = 64

/// All of the journal's state and logic. A struct held by the `Journal` class, so that the hot path
/// works on plain struct fields (no dynamic exclusivity checks per field access).
private struct JournalCore {
    let maxBytes: Int
    let maxLineBytes: Int
    /// A tail is sealed when adding a line would take its cost past this.
    let segmentTarget: Int

    /// Sealed segments, oldest first, from `sealedHead` on (a simple deque).
    var sealed: [Segment] = []
    var sealedHead = 0
    /// The segment being appended to. Empty (and firstSeq meaningless) when `lines` is empty.
    var tail = Segment(firstSeq: 1, baseTs: 0, bytes: [], lines: [])
    /// Total cost of the retained segments.
    var segmentBytes = 0

    var nextSeq: UInt64 = 1
    var droppedLines: UInt64 = 0
    var droppedBytes: UInt64 = 0
    var history: [DropMark] = []
    var historyNext = 0

    var out = StreamState()
    var err = StreamState()

    /// Buffers of the last dropped segment, reused by the next tail.
    var spareBytes: [UInt8] = []
    var spareLines: [LineRecord] = []

    init(maxBytes: Int, maxLineBytes: Int) {
        let mb = max(maxBytes, 1024)
        self.maxBytes = mb
        self.maxLineBytes = max(4, min(maxLineBytes, (mb - 64) / 4, 1 << 30))
        segmentTarget = min(64 << 10, max(256, mb / 8))
    }

    var headSeq: UInt64 {
        if sealedHead < sealed.count { return sealed[sealedHead].firstSeq }
        return tail.lines.isEmpty ? nextSeq : tail.firstSeq
    }

    var partialBytes: Int { out.partial.count &+ err.partial.count }

    var retainedBytes: Int { segmentBytes &+ partialBytes }

    // MARK: Appending

    mutating func append(_ buf: UnsafeRawBufferPointer, _ stream: OutputStream, _ nowMs: Int64) -> Int {
        guard let base = buf.baseAddress, buf.count > 0 else { return 0 }
        // Take the stream's state out of `self` so it can be mutated alongside `self`.
        var st = StreamState()
        swapState(stream, &st)
        let completed = process(&st, base.assumingMemoryBound(to: UInt8.self), buf.count, stream, nowMs)
        swapState(stream, &st)
        enforceBound()
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
        swapState(stream, &st)
        enforceBound()
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
                    commitLine(src + p, len, stream, nowMs, keep: partialBytes)
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
            st.partial.withUnsafeBufferPointer { commitLine($0.baseAddress!, cut, stream, nowMs, keep: keep) }
            st.partial.removeSubrange(0..<cut)
            completed &+= 1
        }
    }

    /// Commits the first `count` bytes of the partial line as a line and clears it.
    mutating func commitPartial(_ st: inout StreamState, count: Int, _ stream: OutputStream, _ nowMs: Int64) {
        let keep = partialBytes
        st.partial.withUnsafeBufferPointer { commitLine($0.baseAddress!, count, stream, nowMs, keep: keep) }
        // Keep a small buffer for the next partial line; give a big one back.
        st.partial.removeAll(keepingCapacity: st.partial.capacity <= 4096)
    }

    /// Stores one complete line. `keep` is how many partial-line bytes will be retained after it, which
    /// must fit in the bound alongside it.
    @inline(__always)
    mutating func commitLine(
        _ src: UnsafePointer<UInt8>, _ len: Int, _ stream: OutputStream, _ nowMs: Int64, keep: Int
    ) {
        let cost = len &+ lineOverhead
        if segmentBytes &+ cost &+ keep > maxBytes { dropOldest(toFit: cost &+ keep) }
        if tail.lines.isEmpty {
            startTail(nowMs)
        } else {
            let (delta, overflow) = nowMs.subtractingReportingOverflow(tail.baseTs)
            if tail.cost &+ cost > segmentTarget || overflow || delta != Int64(Int32(truncatingIfNeeded: delta)) {
                sealTail(nowMs)
            }
        }
        if len > 0 { tail.bytes.append(contentsOf: UnsafeBufferPointer(start: src, count: len)) }
        let end = UInt32(truncatingIfNeeded: tail.bytes.count) | (stream == .stderr ? stderrBit : 0)
        tail.lines.append(LineRecord(end: end, tsDelta: Int32(truncatingIfNeeded: nowMs &- tail.baseTs)))
        segmentBytes &+= cost
        nextSeq &+= 1
    }

    /// Starts the (empty) tail at the next seq.
    mutating func startTail(_ nowMs: Int64) {
        tail.firstSeq = nextSeq
        tail.baseTs = nowMs
        if tail.bytes.capacity == 0 && spareBytes.capacity > 0 {
            swap(&tail.bytes, &spareBytes)
            swap(&tail.lines, &spareLines)
        }
    }

    /// Moves the tail to the sealed segments and starts a new one.
    mutating func sealTail(_ nowMs: Int64) {
        var fresh = Segment(firstSeq: nextSeq, baseTs: nowMs, bytes: [], lines: [])
        if spareBytes.capacity > 0 {
            swap(&fresh.bytes, &spareBytes)
            swap(&fresh.lines, &spareLines)
        } else {
            // This process has filled a segment already: size the next one for a full segment.
            fresh.bytes.reserveCapacity(segmentTarget)
            fresh.lines.reserveCapacity(tail.lines.count)
        }
        swap(&fresh, &tail)
        sealed.append(fresh)
    }

    /// Drops the oldest segments (possibly the tail) until `extra` more bytes fit in the bound.
    mutating func dropOldest(toFit extra: Int) {
        while segmentBytes &+ extra > maxBytes {
            if sealedHead < sealed.count {
                var seg = Segment(firstSeq: 0, baseTs: 0, bytes: [], lines: [])
                swap(&seg, &sealed[sealedHead])
                sealedHead &+= 1
                if sealedHead == sealed.count {
                    sealed.removeAll(keepingCapacity: true)
                    sealedHead = 0
                } else if sealedHead >= 32 && sealedHead &* 2 >= sealed.count {
                    sealed.removeFirst(sealedHead)
                    sealedHead = 0
                }
                recordDrop(seg)
                if spareBytes.capacity == 0 && seg.bytes.capacity <= 2 &* segmentTarget {
                    seg.bytes.removeAll(keepingCapacity: true)
                    seg.lines.removeAll(keepingCapacity: true)
                    spareBytes = seg.bytes
                    spareLines = seg.lines
                }
            } else if !tail.lines.isEmpty {
                recordDrop(tail)
                tail.bytes.removeAll(keepingCapacity: true)
                tail.lines.removeAll(keepingCapacity: true)
            } else {
                return
            }
        }
    }

    mutating func recordDrop(_ seg: Segment) {
        let mark = DropMark(firstSeq: seg.firstSeq, droppedBytesBefore: droppedBytes)
        if history.count < historyLimit {
            history.append(mark)
        } else {
            history[historyNext] = mark
        }
        historyNext = (historyNext &+ 1) % historyLimit
        droppedLines &+= UInt64(seg.lines.count)
        droppedBytes &+= UInt64(seg.bytes.count)
        segmentBytes &-= seg.cost
    }

    /// After partial lines grew: drop old segments so that everything fits in the bound.
    @inline(__always)
    mutating func enforceBound() {
        let p = partialBytes
        if segmentBytes &+ p > maxBytes { dropOldest(toFit: p) }
    }

    // MARK: Reading

    func read(from seq: UInt64, filter: StreamFilter, maxLines: Int, _ body: (JournalEntry) -> Bool) -> UInt64 {
        var cursor = min(max(seq, headSeq), nextSeq)
        guard cursor < nextSeq, maxLines > 0 else { return cursor }
        let scanLimit = maxLines > (Int.max - 64) / 4 ? Int.max : maxLines &* 4 &+ 64
        var scanned = 0
        var visited = 0

        // The segment holding `cursor`: the tail, or the last sealed one starting at or before it.
        var index: Int
        if !tail.lines.isEmpty && cursor >= tail.firstSeq {
            index = sealed.count
        } else {
            var lo = sealedHead, hi = sealed.count - 1
            while lo < hi {
                let mid = (lo &+ hi &+ 1) / 2
                if sealed[mid].firstSeq <= cursor { lo = mid } else { hi = mid &- 1 }
            }
            index = lo
        }

        while index <= sealed.count {
            let seg = index < sealed.count ? sealed[index] : tail
            let stop = seg.bytes.withUnsafeBytes { text -> Bool in
                seg.lines.withUnsafeBufferPointer { lines -> Bool in
                    var k = Int(cursor &- seg.firstSeq)
                    var start = k == 0 ? 0 : Int(lines[k &- 1].end & endMask)
                    while k < lines.count {
                        if visited == maxLines || scanned == scanLimit { return true }
                        let rec = lines[k]
                        let end = Int(rec.end & endMask)
                        let stream: OutputStream = rec.end & stderrBit != 0 ? .stderr : .stdout
                        scanned &+= 1
                        cursor &+= 1
                        if filter.includes(stream) {
                            visited &+= 1
                            let entry = JournalEntry(
                                seq: cursor &- 1, stream: stream, timestampMs: seg.baseTs &+ Int64(rec.tsDelta),
                                text: UnsafeRawBufferPointer(start: text.baseAddress.map { $0 + start }, count: end &- start))
                            if !body(entry) { return true }
                        }
                        start = end
                        k &+= 1
                    }
                    return false
                }
            }
            if stop { break }
            index &+= 1
        }
        return cursor
    }

    func bytesBefore(_ seq: UInt64) -> UInt64 {
        let s = min(max(seq, headSeq), nextSeq)
        var total = droppedBytes
        func prefix(_ seg: Segment, _ k: Int) -> UInt64 {
            k <= 0 ? 0 : UInt64(seg.lines[k &- 1].end & 0x7FFF_FFFF)
        }
        var i = sealedHead
        while i < sealed.count {
            let end = sealed[i].firstSeq &+ UInt64(sealed[i].lines.count)
            if s < end { return total &+ prefix(sealed[i], Int(s &- sealed[i].firstSeq)) }
            total &+= UInt64(sealed[i].bytes.count)
            i &+= 1
        }
        if !tail.lines.isEmpty && s >= tail.firstSeq { return total &+ prefix(tail, Int(s &- tail.firstSeq)) }
        return total
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

/// The index of the first "\n" in `src[from..<end]` (or `end`), and whether every byte scanned was
/// ASCII (false may be a false alarm: bytes after the "\n" in its 8-byte word are included).
@inline(__always)
private func findNewline(_ src: UnsafePointer<UInt8>, from: Int, end: Int) -> (Int, Bool) {
    var i = from
    var seen: UInt64 = 0
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
