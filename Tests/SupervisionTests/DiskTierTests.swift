// Tests for the disk tier of output retention (DiskTier.swift, Retained.swift) with real files in a temp
// directory: every line that left a small memory journal is read back with its seq, stream, timestamp and
// byte count; the per-process and daemon-wide budgets drop the oldest and the gap says exactly what; and a
// crash at a commit (the region as it was then, segment files written further and torn at any byte)
// recovers exactly the committed lines, with no duplicate when the recovered journal goes on.
import Foundation
import Supervision
import XCTest

private typealias OutputStream = Supervision.OutputStream

private struct Line: Equatable {
    var seq: UInt64
    var stream: OutputStream
    var ts: Int64
    var text: String
}

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

private func tempDir() -> String {
    let d = NSTemporaryDirectory() + "tend-disktier-\(UInt64.random(in: 0 ... .max))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

private func retention(_ dir: String, process: Int = 64 << 20, total: Int? = nil) -> DiskRetention {
    try! DiskRetention(dir: dir, processBudget: process, totalBudget: total, maxLineBytes: 4096,
                       log: { _ in }, clock: { Int64(ProcessInfo.processInfo.systemUptime * 1000) })
}

/// Reads everything a follower from seq 1 would get: lines and gaps (lines, bytes).
private func readAll(_ j: Journal, filter: StreamFilter = .both) -> (lines: [Line], gaps: [(UInt64, UInt64)]) {
    var lines: [Line] = []
    var gaps: [(UInt64, UInt64)] = []
    var cursor: UInt64 = 1
    var known: UInt64? = 0
    var guardCount = 0
    while cursor < j.nextSeq {
        guardCount += 1
        precondition(guardCount < 10_000_000)
        if let g = j.gap(at: cursor, knownBytes: known) {
            gaps.append((g.lines, g.bytes))
            cursor = g.resume
            known = g.resumeBytes
            continue
        }
        let (next, bytes) = j.readRetained(from: cursor, filter: filter, maxLines: 1000) { e in
            lines.append(Line(seq: e.seq, stream: e.stream, ts: e.timestampMs, text: String(decoding: e.text, as: UTF8.self)))
            return true
        }
        if next == cursor { continue }
        cursor = next
        known = bytes
    }
    return (lines, gaps)
}

/// Feeds `count` lines (both streams, varying lengths and timestamps) and returns them.
private func feed(_ j: Journal, from first: Int, count: Int, rng: inout Rng, ts: inout Int64) -> [Line] {
    var out: [Line] = []
    var seq = j.nextSeq
    var i = first
    while i < first + count {
        let n = 1 + rng.below(40)
        let stream: OutputStream = rng.below(3) == 0 ? .stderr : .stdout
        var chunk: [UInt8] = []
        for _ in 0..<n where i < first + count {
            let text = "line \(i) " + String(repeating: "x", count: rng.below(120))
            chunk += Array(text.utf8) + [0x0A]
            out.append(Line(seq: seq, stream: stream, ts: ts, text: text))
            seq += 1
            i += 1
        }
        chunk.withUnsafeBytes { _ = j.append($0, from: stream, nowMs: ts) }
        ts += Int64(rng.below(3))
    }
    return out
}

final class DiskTierTests: XCTestCase {
    func testEveryLineIsReadBackAcrossBothTiers() {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = retention(dir)
        let j = Journal(maxBytes: 16 << 10, maxLineBytes: 4096)
        r.attach(j, handle: 1)
        var rng = Rng(state: 1), ts: Int64 = 1_700_000_000_000
        let want = feed(j, from: 0, count: 60_000, rng: &rng, ts: &ts)
        XCTAssertGreaterThan(j.headSeq, 50_000, "the memory journal dropped most lines")
        let (got, gaps) = readAll(j)
        XCTAssertEqual(gaps.count, 0)
        XCTAssertEqual(got.count, want.count)
        XCTAssertTrue(got == want)
        XCTAssertEqual(j.oldestSeq, 1)
        // A stream filter skips the other stream's lines on disk as in memory.
        XCTAssertTrue(readAll(j, filter: .stderr).lines == want.filter { $0.stream == .stderr })
        // Byte counts match the journal's: bytes before the memory head == the text of every earlier line.
        let textBefore = want.prefix(Int(j.headSeq - 1)).reduce(UInt64(0)) { $0 + UInt64($1.text.utf8.count) }
        XCTAssertEqual(j.bytesBefore(j.headSeq), textBefore)
        // Reading from the middle of the disk tier.
        var mid: [UInt64] = []
        _ = j.readRetained(from: 12_345, filter: .both, maxLines: 3) { mid.append($0.seq); return true }
        XCTAssertEqual(mid, [12_345, 12_346, 12_347])
    }

    func testProcessBudgetDropsTheOldestAndTheGapIsExact() {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = retention(dir, process: 1 << 20)
        let j = Journal(maxBytes: 16 << 10, maxLineBytes: 4096)
        let tier = r.attach(j, handle: 3)
        var rng = Rng(state: 2), ts: Int64 = 5
        let want = feed(j, from: 0, count: 100_000, rng: &rng, ts: &ts)   // ~8 MB
        XCTAssertLessThanOrEqual(tier.bytes, 1 << 20)
        XCTAssertGreaterThan(tier.bytes, 1 << 19)
        let (got, gaps) = readAll(j)
        XCTAssertEqual(gaps.count, 1)
        let first = Int(got[0].seq)
        XCTAssertEqual(gaps[0].0, UInt64(first - 1))
        XCTAssertEqual(gaps[0].1, want.prefix(first - 1).reduce(UInt64(0)) { $0 + UInt64($1.text.utf8.count) })
        XCTAssertTrue(got == Array(want[(first - 1)...]))
        XCTAssertGreaterThan(r.evictedLines, 0)
        // Without knowing its byte count, a reader from seq 1 still gets the exact count.
        XCTAssertEqual(j.gap(at: 1, knownBytes: nil)?.bytes, gaps[0].1)
    }

    func testTotalBudgetEvictsTheOldestSegmentsAcrossProcesses() {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = retention(dir, process: 2 << 20, total: 3 << 20)
        var journals: [Journal] = []
        var rng = Rng(state: 3), ts: Int64 = 0
        for h in 1...4 {
            let j = Journal(maxBytes: 16 << 10, maxLineBytes: 4096)
            r.attach(j, handle: h)
            journals.append(j)
            _ = feed(j, from: 0, count: 25_000, rng: &rng, ts: &ts)   // ~2 MB each, one after the other
            XCTAssertLessThanOrEqual(r.totalBytes, 3 << 20)
        }
        let onDisk = try! FileManager.default.contentsOfDirectory(atPath: dir).reduce(0) {
            $0 + ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + $1)[.size] as? Int) ?? 0)
        }
        XCTAssertEqual(onDisk, r.totalBytes)
        // The oldest process lost the most; the newest kept its whole tier.
        XCTAssertNil(journals[0].diskTier?.firstSeq)
        XCTAssertEqual(journals[3].oldestSeq, 1)
        for j in journals {
            let (got, gaps) = readAll(j)
            XCTAssertEqual(UInt64(got.count) + gaps.reduce(0) { $0 + $1.0 }, j.nextSeq - 1)
        }
        r.remove(handle: 4)
        XCTAssertFalse(try! FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.hasPrefix("4.") })
        r.removeAll()
        XCTAssertEqual(try! FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    func testSlowDiskSuspendsSpillingAndTheLossIsAGap() {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A clock that jumps 600 ms at every reading: every write looks slow (> 500 ms).
        var now: Int64 = 0
        var slow = false
        let r = try! DiskRetention(dir: dir, processBudget: 64 << 20, totalBudget: nil, maxLineBytes: 4096,
                                   log: { _ in }, clock: { now += slow ? 600 : 1; return now })
        let j = Journal(maxBytes: 16 << 10, maxLineBytes: 4096)
        r.attach(j, handle: 1)
        var rng = Rng(state: 5), ts: Int64 = 0
        var want = feed(j, from: 0, count: 5_000, rng: &rng, ts: &ts)
        slow = true
        want += feed(j, from: 5_000, count: 20_000, rng: &rng, ts: &ts)
        XCTAssertGreaterThan(r.failedLines, 0)
        let (got, gaps) = readAll(j)
        XCTAssertFalse(gaps.isEmpty)
        // What was read is exactly the lines kept; lines + gaps account for every line once.
        XCTAssertEqual(UInt64(got.count) + gaps.reduce(0) { $0 + $1.0 }, UInt64(want.count))
        XCTAssertTrue(got.allSatisfy { want[Int($0.seq) - 1] == $0 })
        // The memory journal's newest lines are all there.
        XCTAssertEqual(got.last, want.last)
    }

    /// kill -9 after an append: the region as committed, the segment files as written up to any later byte.
    func testCrashAtAnyCommitRecoversExactlyTheCommittedLines() throws {
        let maxBytes = 8 << 10, maxLine = 1024
        var rng = Rng(state: 4)
        for round in 0..<12 {
            let dir = tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let size = Journal.regionSize(maxBytes: maxBytes, maxLineBytes: maxLine)
            let region = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
            defer { region.deallocate() }
            let j = try Journal(region: region, maxBytes: maxBytes, maxLineBytes: maxLine, fresh: true)
            let r = retention(dir)
            r.attach(j, handle: 9)
            // The crash: right after the crashAt-th append (each append ends with a commit).
            let crashAt = 20 + rng.below(200)
            var ts: Int64 = 1000
            var want: [Line] = []
            for _ in 0..<crashAt { want += feed(j, from: want.count, count: 1 + rng.below(60), rng: &rng, ts: &ts) }
            let snapshot = Array(region)
            var sizesAtCrash: [String: Int] = [:]
            for n in try FileManager.default.contentsOfDirectory(atPath: dir) {
                sizesAtCrash[n] = (try FileManager.default.attributesOfItem(atPath: dir + "/" + n)[.size] as? Int) ?? 0
            }
            // Write on past the crash point, then tear every file somewhere after what the commit needed.
            _ = feed(j, from: want.count, count: 2000, rng: &rng, ts: &ts)
            let crashDir = tempDir()
            defer { try? FileManager.default.removeItem(atPath: crashDir) }
            for n in try FileManager.default.contentsOfDirectory(atPath: dir) {
                var data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + n))
                let keep = (sizesAtCrash[n] ?? 0) + rng.below(data.count - (sizesAtCrash[n] ?? 0) + 1)
                data = data.prefix(keep)
                if round % 3 == 0 && keep < data.count { data.append(contentsOf: [0x54, 0x4E, 0x44]) }
                try data.write(to: URL(fileURLWithPath: crashDir + "/" + n))
            }
            // Recover: the region as it was at the crash, the torn files.
            let region2 = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
            defer { region2.deallocate() }
            snapshot.withUnsafeBytes { region2.copyMemory(from: $0) }
            let j2 = try Journal(region: region2, maxBytes: maxBytes, maxLineBytes: maxLine, fresh: false)
            let r2 = retention(crashDir)
            r2.attach(j2, handle: 9)
            let committed = Array(want.prefix(Int(j2.nextSeq - 1)))
            XCTAssertGreaterThan(j2.headSeq, 1, "round \(round): the crash came after spills")
            let (got, gaps) = readAll(j2)
            XCTAssertEqual(gaps.count, 0, "round \(round)")
            XCTAssertTrue(got == committed, "round \(round): \(got.count) vs \(committed.count) lines")
            // Going on: no line is spilled twice, none is missing.
            var ts2 = ts
            let more = feed(j2, from: 10_000_000, count: 3000, rng: &rng, ts: &ts2)
            let (all, gaps2) = readAll(j2)
            XCTAssertEqual(gaps2.count, 0, "round \(round)")
            let expect = committed + more
            XCTAssertTrue(all == expect, "round \(round)")
            if all != expect {
                let k = (0..<min(all.count, expect.count)).first { all[$0] != expect[$0] } ?? min(all.count, expect.count)
                print("round \(round): counts \(all.count) \(expect.count) first diff at \(k): \(k < all.count ? "\(all[k])" : "-") vs \(k < expect.count ? "\(expect[k])" : "-") head \(j2.headSeq)")
            }
            r2.removeAll()
            r.removeAll()
        }
    }
}
