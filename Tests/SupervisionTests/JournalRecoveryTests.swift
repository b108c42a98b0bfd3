// Tests for Journal's shared-region mode and crash recovery: a journal recovered from (a copy of) its
// region answers exactly as the original did at its last commit, and continues seamlessly; a crash at every
// append boundary, commits in the middle of a call, torn records and a torn header commit all recover to
// the last committed state; a corrupt header, a geometry mismatch or a too-small region throw; and a quiet
// process only touches the first page of its region.
//
// A few tests know the region's header layout (documented in Journal.swift): the generation word at byte
// 64, the two 1168-byte slots from byte 128, the ring from byte 2464.
import Supervision
import XCTest

// XCTest brings in Foundation, whose OutputStream class shadows ours.
private typealias OutputStream = Supervision.OutputStream

private let genOffset = 64
private let slotStart = 128
private let slotBytes = 1168
private let ringStart = 2464

private struct Rng {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Every region a test made: a journal does not retain its region, so the test keeps them alive until
/// it knows their journals are gone.
private var liveRegions: [Region] = []

private func releaseRegions(except keep: Region...) {
    liveRegions.removeAll { r in !keep.contains { $0 === r } }
}

/// A caller-provided region (as tendd's memfd mapping), initially garbage so nothing relies on zeroes.
private final class Region {
    let bytes: UnsafeMutableRawBufferPointer
    let maxBytes: Int
    let maxLineBytes: Int

    init(maxBytes: Int, maxLineBytes: Int, size: Int? = nil, fill: UInt8 = 0xA5) {
        self.maxBytes = maxBytes
        self.maxLineBytes = maxLineBytes
        let n = size ?? Journal.regionSize(maxBytes: maxBytes, maxLineBytes: maxLineBytes)
        bytes = .allocate(byteCount: n, alignment: 4096)
        bytes.initializeMemory(as: UInt8.self, repeating: fill)
        liveRegions.append(self)
    }

    convenience init(copying snapshot: [UInt8], maxBytes: Int, maxLineBytes: Int) {
        self.init(maxBytes: maxBytes, maxLineBytes: maxLineBytes, size: snapshot.count)
        snapshot.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    deinit { bytes.deallocate() }

    var snapshot: [UInt8] { Array(bytes) }
    var generation: UInt64 { UnsafeRawPointer(bytes.baseAddress!).loadUnaligned(fromByteOffset: genOffset, as: UInt64.self) }

    func fresh() -> Journal {
        try! Journal(region: bytes, maxBytes: maxBytes, maxLineBytes: maxLineBytes, fresh: true)
    }

    func recover() throws -> Journal {
        try Journal(region: bytes, maxBytes: maxBytes, maxLineBytes: maxLineBytes, fresh: false)
    }
}

/// One step of a feed: an append (or, with `finish`, EOF on the stream).
private struct Step {
    var bytes: [UInt8]
    var stream: OutputStream
    var now: Int64
    var finish = false

    @discardableResult
    func apply(_ j: Journal) -> Int {
        finish ? j.finish(stream, nowMs: now) : bytes.withUnsafeBytes { j.append($0, from: stream, nowMs: now) }
    }
}

private struct Line: Equatable, CustomStringConvertible {
    var seq: UInt64
    var stream: OutputStream
    var ts: Int64
    var text: [UInt8]
    var description: String { "#\(seq) \(stream) @\(ts) \(String(decoding: text, as: UTF8.self).debugDescription)" }
}

private func allLines(_ j: Journal) -> [Line] {
    var out: [Line] = []
    var cursor: UInt64 = 0
    while true {
        let next = j.read(from: cursor, filter: .both, maxLines: 333) { e in
            out.append(Line(seq: e.seq, stream: e.stream, ts: e.timestampMs, text: Array(e.text)))
            return true
        }
        if next == cursor { return out }
        cursor = next
    }
}

/// Asserts that two journals answer every query identically.
private func assertSame(_ a: Journal, _ b: Journal, _ context: @autoclosure () -> String,
                        file: StaticString = #filePath, line: UInt = #line) {
    let what = context()
    XCTAssertEqual(a.headSeq, b.headSeq, "headSeq, \(what)", file: file, line: line)
    XCTAssertEqual(a.nextSeq, b.nextSeq, "nextSeq, \(what)", file: file, line: line)
    XCTAssertEqual(a.droppedLines, b.droppedLines, "droppedLines, \(what)", file: file, line: line)
    XCTAssertEqual(a.droppedBytes, b.droppedBytes, "droppedBytes, \(what)", file: file, line: line)
    XCTAssertEqual(a.retainedBytes, b.retainedBytes, "retainedBytes (includes the partial lines), \(what)", file: file, line: line)
    let la = allLines(a), lb = allLines(b)
    XCTAssertEqual(la.count, lb.count, "line count, \(what)", file: file, line: line)
    if let k = la.indices.first(where: { $0 < lb.count && la[$0] != lb[$0] }) {
        XCTFail("first different line: \(la[k]) vs \(lb[k]), \(what)", file: file, line: line)
    }
    guard a.headSeq == b.headSeq && a.nextSeq == b.nextSeq else { return }
    let span = a.nextSeq - a.headSeq
    let stride = max(1, span / 300)
    for s in Swift.stride(from: a.headSeq, through: a.nextSeq, by: Int(stride)) + [a.nextSeq, a.nextSeq + 3, 0] {
        XCTAssertEqual(a.bytesBefore(s), b.bytesBefore(s), "bytesBefore(\(s)), \(what)", file: file, line: line)
    }
    let missedStride = max(1, Int(a.headSeq) / 300)
    for s in Swift.stride(from: 0, through: a.headSeq + 1, by: missedStride) {
        XCTAssertTrue(a.missed(from: s) == b.missed(from: s), "missed(from: \(s)), \(what)", file: file, line: line)
    }
}

/// Finishes both streams of both journals (revealing their partial lines and pending UTF-8 bytes) and
/// compares them again.
private func assertSameAfterFinish(_ a: Journal, _ b: Journal, now: Int64, _ context: @autoclosure () -> String,
                                   file: StaticString = #filePath, line: UInt = #line) {
    for s in [OutputStream.stderr, .stdout] {
        XCTAssertEqual(a.finish(s, nowMs: now), b.finish(s, nowMs: now), "finish(\(s)), \(context())", file: file, line: line)
    }
    assertSame(a, b, "after finish, " + context(), file: file, line: line)
}

/// Random output of both streams: ASCII, CRLF, lone CRs, multi-byte characters (split across appends by
/// the chunking), invalid bytes, empty and over-long lines, partial lines, occasional EOFs; timestamps
/// that mostly creep up but sometimes jump by more than an Int32 of milliseconds, or backwards.
private func randomSteps(_ rng: inout Rng, count: Int, maxChunk: Int, longLines: Bool = true) -> [Step] {
    let pieces: [[UInt8]] = [Array("abc".utf8), Array("hello world ".utf8), [0x0D], [0xC3, 0xA9], [0xE2, 0x82, 0xAC],
                             [0xF0, 0x9F, 0x98, 0x80], [0xFF], [0xE2, 0x82], [0xC3], Array("0123456789".utf8), [0x09],
                             [0x0A], [0x0D, 0x0A], [0x0A], [0x0A, 0x0A]]
    var steps: [Step] = []
    var now: Int64 = 1_700_000_000_000
    var pending: [[UInt8]] = [[], []]
    for _ in 0..<count {
        let k = rng.below(2)
        let stream: OutputStream = k == 0 ? .stdout : .stderr
        switch rng.below(50) {
        case 0: now &+= 3_000_000_000
        case 1: now &-= 5_000_000_000
        case 2: now = [Int64.max, Int64.min, 0, -1][rng.below(4)]
        default: now &+= Int64(rng.below(20))
        }
        if rng.below(40) == 0 {
            steps.append(Step(bytes: [], stream: stream, now: now, finish: true))
            continue
        }
        while pending[k].count < maxChunk {
            if longLines && rng.below(30) == 0 {
                pending[k] += [UInt8](repeating: UInt8(0x61 + rng.below(26)), count: rng.below(700))
            }
            pending[k] += pieces[rng.below(pieces.count)]
        }
        let n = 1 + rng.below(maxChunk)
        steps.append(Step(bytes: Array(pending[k].prefix(n)), stream: stream, now: now))
        pending[k].removeFirst(n)
    }
    return steps
}

final class JournalRecoveryTests: XCTestCase {
    override func tearDown() {
        releaseRegions()
        super.tearDown()
    }

    private let geometries: [(maxBytes: Int, maxLineBytes: Int)] = [(1024, 8), (1024, 1 << 20), (2048, 40), (4096, 200), (8192, 1000)]

    // MARK: Recovery equals the original

    func testRecoveryEqualsOriginalAfterRandomFeeds() {
        var rng = Rng(state: 11)
        for round in 0..<40 {
            let (mb, ml) = geometries[round % geometries.count]
            let maxChunk = [1, 3, 40, 700, 5000][(round / geometries.count) % 5]   // byte-at-a-time ... big chunks
            let steps = randomSteps(&rng, count: max(600, 24000 / maxChunk), maxChunk: maxChunk)
            let more = randomSteps(&rng, count: max(100, 4000 / maxChunk), maxChunk: maxChunk)
            let region = Region(maxBytes: mb, maxLineBytes: ml)
            let shared = region.fresh()
            let heap = Journal(maxBytes: mb, maxLineBytes: ml)
            for s in steps {
                XCTAssertEqual(s.apply(shared), s.apply(heap))
            }
            let what = "round \(round) (\(mb)/\(ml), chunks \(maxChunk))"
            XCTAssertGreaterThan(heap.droppedLines, 0, "the bound was hit, \(what)")
            assertSame(shared, heap, "shared vs heap, " + what)
            let copy = Region(copying: region.snapshot, maxBytes: mb, maxLineBytes: ml)
            let recovered: Journal
            do { recovered = try copy.recover() } catch { return XCTFail("\(error), \(what)") }
            assertSame(recovered, shared, "recovered vs original, " + what)
            // It continues seamlessly: same seqs, same partial lines, same pending UTF-8 bytes.
            for s in more {
                XCTAssertEqual(s.apply(recovered), s.apply(heap))
            }
            assertSame(recovered, heap, "recovered + more vs heap, " + what)
            assertSameAfterFinish(recovered, heap, now: 7, what)
        }
    }

    func testRecoveryOfEmptyAndIdleJournals() throws {
        let region = Region(maxBytes: 1 << 20, maxLineBytes: 64 << 10)
        _ = region.fresh()
        let empty = try Region(copying: region.snapshot, maxBytes: 1 << 20, maxLineBytes: 64 << 10).recover()
        XCTAssertEqual(empty.headSeq, 1)
        XCTAssertEqual(empty.nextSeq, 1)
        XCTAssertEqual(empty.retainedBytes, 0)
        XCTAssertEqual(empty.finish(.stdout, nowMs: 0), 0)
        // Only a partial line and an incomplete character.
        let j = try region.recover()
        Step(bytes: Array("prompt> ".utf8) + [0xE2, 0x82], stream: .stdout, now: 5).apply(j)
        Step(bytes: [0xF0], stream: .stderr, now: 6).apply(j)
        let r = try Region(copying: region.snapshot, maxBytes: 1 << 20, maxLineBytes: 64 << 10).recover()
        XCTAssertEqual(r.retainedBytes, 8)
        Step(bytes: [0xAC, 0x0A], stream: .stdout, now: 9).apply(r)
        XCTAssertEqual(allLines(r), [Line(seq: 1, stream: .stdout, ts: 9, text: Array("prompt> €".utf8))])
        XCTAssertEqual(r.finish(.stderr, nowMs: 10), 1)
        XCTAssertEqual(allLines(r).last?.text, Array("\u{FFFD}".utf8))
    }

    // MARK: Crashes

    /// Snapshot the region after every append, recover each snapshot and compare it with a heap journal
    /// fed the same prefix; finish both to compare the partial lines; continue some of them to the end.
    func testCrashAtEveryAppendBoundary() {
        var rng = Rng(state: 5)
        for round in 0..<6 {
            let (mb, ml) = geometries[round % geometries.count]
            let steps = randomSteps(&rng, count: [500, 150, 150][round % 3], maxChunk: [5, 60, 900][round % 3])
            let region = Region(maxBytes: mb, maxLineBytes: ml)
            let shared = region.fresh()
            let heap = Journal(maxBytes: mb, maxLineBytes: ml)
            var snapshots: [[UInt8]] = []
            for (k, s) in steps.enumerated() {
                releaseRegions(except: region)
                s.apply(shared)
                s.apply(heap)
                let what = "round \(round), crash after step \(k)"
                let snap = region.snapshot
                snapshots.append(snap)
                let recovered: Journal
                do {
                    recovered = try Region(copying: snap, maxBytes: mb, maxLineBytes: ml).recover()
                } catch {
                    XCTFail("\(error), \(what)")
                    continue
                }
                assertSame(recovered, heap, what)
                // Partial lines: a heap journal fed the same prefix, then both finished.
                let prefix = Journal(maxBytes: mb, maxLineBytes: ml)
                for s in steps[...k] { s.apply(prefix) }
                assertSameAfterFinish(recovered, prefix, now: 1, what)
            }
            // Recovered at a few boundaries, fed the rest: the same as never crashing.
            for k in Swift.stride(from: 0, to: steps.count, by: 37) {
                let r = try! Region(copying: snapshots[k], maxBytes: mb, maxLineBytes: ml).recover()
                for s in steps[(k + 1)...] { s.apply(r) }
                assertSame(r, heap, "round \(round), recovered after step \(k) and continued")
            }
        }
    }

    /// Calls that write more than the ring's free space commit in the middle; every such commit is a
    /// consistent journal: its lines are the ones a journal that never drops has under the same seqs,
    /// its dropped bytes are exact, its bound holds.
    func testCommitsInTheMiddleOfACallRecover() {
        var rng = Rng(state: 3)
        var midway = 0
        for round in 0..<8 {
            let (mb, ml) = [(1024, 8), (2048, 40), (4096, 200), (1024, 200)][round % 4]
            let steps = randomSteps(&rng, count: 60, maxChunk: 6000)
            let region = Region(maxBytes: mb, maxLineBytes: ml)
            let shared = region.fresh()
            var snaps: [[UInt8]] = []
            shared._commitHook = { snaps.append(region.snapshot) }
            let everything = Journal(maxBytes: 64 << 20, maxLineBytes: ml)   // never drops
            var lines: [Line] = []
            for (k, s) in steps.enumerated() {
                releaseRegions(except: region)
                let before = everything.nextSeq
                snaps = []
                s.apply(shared)
                s.apply(everything)
                lines += allLines(everything).filter { $0.seq >= before }
                midway += snaps.count - 1
                XCTAssertGreaterThanOrEqual(snaps.count, 1)
                for (c, snap) in snaps.enumerated() {
                    let what = "round \(round), step \(k), commit \(c) of \(snaps.count)"
                    let r: Journal
                    do { r = try Region(copying: snap, maxBytes: mb, maxLineBytes: ml).recover() } catch {
                        XCTFail("\(error), \(what)")
                        continue
                    }
                    XCTAssertGreaterThanOrEqual(r.nextSeq, before, what)
                    XCTAssertLessThanOrEqual(r.nextSeq, everything.nextSeq, what)
                    XCTAssertLessThanOrEqual(r.retainedBytes, mb, what)
                    XCTAssertEqual(r.droppedLines, r.headSeq - 1, what)
                    XCTAssertEqual(r.droppedBytes, everything.bytesBefore(r.headSeq), what)
                    XCTAssertEqual(r.bytesBefore(r.nextSeq), everything.bytesBefore(r.nextSeq), what)
                    let got = allLines(r)
                    XCTAssertEqual(got.map(\.seq), Array(r.headSeq..<r.nextSeq), what)
                    XCTAssertEqual(got, got.map { lines[Int($0.seq) - 1] }, what)
                }
                if let last = snaps.last {
                    let r = try! Region(copying: last, maxBytes: mb, maxLineBytes: ml).recover()
                    assertSame(r, shared, "round \(round), step \(k), last commit")
                }
            }
        }
        XCTAssertGreaterThan(midway, 50, "big appends into small journals commit in the middle")
    }

    /// A crash in the middle of an append: the records and partial-line bytes it wrote are there (some,
    /// all, or garbage instead), the header slot it was writing may be torn, the commit word is not
    /// written. Recovery gives the state before the append.
    func testTornAppendRecoversLastCommit() {
        var rng = Rng(state: 77)
        var checked = 0
        for round in 0..<10 {
            let (mb, ml) = geometries[round % geometries.count]
            let steps = randomSteps(&rng, count: 120, maxChunk: [3, 50, 300][round % 3])
            let region = Region(maxBytes: mb, maxLineBytes: ml)
            let shared = region.fresh()
            for (k, s) in steps.enumerated() {
                releaseRegions(except: region)
                let before = region.snapshot
                let genBefore = region.generation
                s.apply(shared)
                let after = region.snapshot
                guard region.generation == genBefore + 1 else { continue }   // committed in the middle too
                let what = "round \(round), step \(k)"
                let expected = try! Region(copying: before, maxBytes: mb, maxLineBytes: ml).recover()
                let changed = (0..<after.count).filter { before[$0] != after[$0] && !(0..<slotStart).contains($0) }

                // Everything written but the commit word.
                var torn = after
                torn.replaceSubrange(0..<slotStart, with: before[0..<slotStart])
                // Only the first bytes it wrote (a record cut short), the others as before.
                var cut = before
                for i in changed.prefix(rng.below(changed.count + 1)) { cut[i] = after[i] }
                // Garbage wherever it wrote.
                var garbage = before
                for i in changed { garbage[i] = UInt8(truncatingIfNeeded: rng.next()) }

                for (name, bytes) in [("torn", torn), ("cut", cut), ("garbage", garbage)] {
                    do {
                        let r = try Region(copying: bytes, maxBytes: mb, maxLineBytes: ml).recover()
                        assertSame(r, expected, "\(name), \(what)")
                        if k % 10 == 0 {
                            let e2 = try Region(copying: before, maxBytes: mb, maxLineBytes: ml).recover()
                            assertSameAfterFinish(r, e2, now: 3, "\(name), \(what)")
                        }
                    } catch {
                        XCTFail("\(name): \(error), \(what)")
                    }
                }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 500)
    }

    // MARK: Bad regions

    func testCorruptHeaderThrows() throws {
        let (mb, ml) = (4096, 200)
        let region = Region(maxBytes: mb, maxLineBytes: ml)
        let j = region.fresh()
        var rng = Rng(state: 1)
        for s in randomSteps(&rng, count: 200, maxChunk: 100) { s.apply(j) }
        XCTAssertGreaterThan(j.droppedLines, 0)   // so the drop history is not empty
        let good = region.snapshot
        XCTAssertNoThrow(try Region(copying: good, maxBytes: mb, maxLineBytes: ml).recover())
        let active = slotStart + Int(region.generation & 1) * slotBytes
        // The fixed header's fields (magic, version, geometry, its hash, the commit word), and the active
        // slot's fields, hash and drop history.
        var offsets = Array(0..<72) + Array(active..<(active + 144))
        let historyCount = Int(good.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: active + 112, as: UInt32.self) })
        XCTAssertGreaterThan(historyCount, 0)
        offsets += Swift.stride(from: active + 144, to: active + 144 + 16 * historyCount, by: 5)
        for off in offsets {
            var bad = good
            bad[off] ^= 0x5A
            XCTAssertThrowsError(try Region(copying: bad, maxBytes: mb, maxLineBytes: ml).recover(), "byte \(off) flipped") { e in
                XCTAssertTrue(e is JournalRecoveryError)
            }
        }
        // A corrupt record in the committed ring.
        var bad = good
        let head = Int(UnsafeRawPointer(good.withUnsafeBytes { $0.baseAddress! }).loadUnaligned(fromByteOffset: active + 8, as: UInt64.self))
        let ringSize = Int(good.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 32, as: UInt64.self) })
        for i in 0..<4 { bad[ringStart + head % ringSize + i] = 0xEE }
        XCTAssertThrowsError(try Region(copying: bad, maxBytes: mb, maxLineBytes: ml).recover())
        // A zeroed (new memfd) and a random region.
        XCTAssertThrowsError(try Region(maxBytes: mb, maxLineBytes: ml, fill: 0).recover()) { e in
            XCTAssertTrue("\(e)".contains("magic"), "\(e)")
        }
        XCTAssertThrowsError(try Region(maxBytes: mb, maxLineBytes: ml, fill: 0x77).recover())
    }

    func testGeometryMismatchThrows() {
        let region = Region(maxBytes: 4096, maxLineBytes: 100, size: 1 << 20)
        let j = region.fresh()
        Step(bytes: Array("x\ny".utf8), stream: .stdout, now: 1).apply(j)
        for (mb, ml) in [(8192, 100), (4096, 200), (2048, 100), (4096, 64 << 10)] {
            XCTAssertThrowsError(try Journal(region: region.bytes, maxBytes: mb, maxLineBytes: ml, fresh: false), "\(mb)/\(ml)") { e in
                XCTAssertTrue("\(e)".contains("geometry"), "\(e)")
            }
        }
        XCTAssertNoThrow(try Journal(region: region.bytes, maxBytes: 4096, maxLineBytes: 100, fresh: false))
        // Too small a region, fresh or not.
        let size = Journal.regionSize(maxBytes: 4096, maxLineBytes: 100)
        XCTAssertEqual(size % 4096, 0)
        let small = UnsafeMutableRawBufferPointer(rebasing: region.bytes[0..<(size - 1)])
        XCTAssertThrowsError(try Journal(region: small, maxBytes: 4096, maxLineBytes: 100, fresh: true))
        XCTAssertThrowsError(try Journal(region: small, maxBytes: 4096, maxLineBytes: 100, fresh: false))
    }

    // MARK: Memory

    /// A quiet process touches only the first page of its region (plus the first page of a stream's
    /// partial-line area while it has a partial line).
    func testQuietJournalTouchesOnlyTheFirstPage() {
        let region = Region(maxBytes: 1 << 20, maxLineBytes: 64 << 10)
        let j = region.fresh()
        func touchedPages() -> [Int] {
            Swift.stride(from: 0, to: region.bytes.count, by: 4096).filter { p in
                region.bytes[p..<(p + 4096)].contains { $0 != 0xA5 }
            }.map { $0 / 4096 }
        }
        XCTAssertEqual(touchedPages(), [0])
        for i in 0..<30 {
            Step(bytes: Array("service started, listening on port \(8000 + i)\n".utf8), stream: i % 3 == 0 ? .stderr : .stdout,
                 now: 1_700_000_000_000 + Int64(i) * 60_000).apply(j)
        }
        XCTAssertEqual(j.nextSeq, 31)
        XCTAssertEqual(touchedPages(), [0], "30 lines live in the header page")
        Step(bytes: Array("password: ".utf8), stream: .stdout, now: 1_700_000_000_000).apply(j)
        let pages = touchedPages()
        XCTAssertEqual(pages.count, 2, "and a partial line in the first page of its area: \(pages)")
        print("Journal region: \(region.bytes.count) bytes mapped for 1 MiB / 64 KiB lines; a quiet process touches pages \(pages)")
    }

    /// However much a child prints (ordinary lines, on both streams, reads ending mid-line), the pages the
    /// journal ever writes stay within its configured bound.
    func testFloodTouchesNoMoreThanTheBound() {
        for (mb, ml) in [(1 << 20, 64 << 10), (256 << 10, 16 << 10), (64 << 10, 4096)] {
            let region = Region(maxBytes: mb, maxLineBytes: ml)
            let j = region.fresh()
            var rng = Rng(state: UInt64(mb))
            var total = 0
            while total < 8 * mb {
                var chunk: [UInt8] = []
                while chunk.count < 60_000 {
                    let len = rng.below(200)
                    chunk += Array(repeating: UInt8(ascii: "a") + UInt8(len % 26), count: len) + [0x0A]
                }
                chunk += Array("partial line ".utf8)   // each read ends mid-line
                Step(bytes: chunk, stream: rng.below(4) == 0 ? .stderr : .stdout, now: 1_700_000_000_000 + Int64(total)).apply(j)
                total += chunk.count
            }
            let touched = Swift.stride(from: 0, to: region.bytes.count, by: 4096).filter { p in
                region.bytes[p..<min(region.bytes.count, p + 4096)].contains { $0 != 0xA5 }
            }.count
            XCTAssertLessThanOrEqual(touched * 4096, mb, "journal of \(mb) B touched \(touched) pages")
            XCTAssertGreaterThan(touched * 4096, mb * 3 / 4, "and uses most of it")
            XCTAssertGreaterThan(j.droppedLines, 0)
        }
    }

    /// A heap-mode journal allocates nothing until its first output (as before).
    func testHeapModeJournalRegionIsLazy() {
        let j = Journal()
        XCTAssertEqual(j.read(from: 0, filter: .both, maxLines: 5) { _ in XCTFail(); return true }, 1)
        XCTAssertEqual(j.finish(.stderr, nowMs: 0), 0)
        XCTAssertEqual(j.bytesBefore(1), 0)
        XCTAssertTrue(j.missed(from: 0) == (0, 0))
    }
}
