// Tests for Journal: line splitting (CRLF, empty lines, EOF), interleaved streams, over-long lines,
// UTF-8 repair (also across appends, checked against String(decoding:) and an independent reference
// model), split-independence (byte-at-a-time == whole feed), the byte bound with 100 MiB fed through
// 1 MiB, missed(), read() with filters / resume / limits, and a printed (not asserted) throughput figure.
import Supervision
import XCTest

// XCTest brings in Foundation, whose OutputStream class shadows ours.
private typealias OutputStream = Supervision.OutputStream

private struct Line: Equatable, CustomStringConvertible {
    var seq: UInt64
    var stream: OutputStream
    var ts: Int64
    var text: [UInt8]
    var string: String { String(decoding: text, as: UTF8.self) }
    var description: String { "#\(seq) \(stream) @\(ts) \(string.debugDescription)" }
}

@discardableResult
private func feed(_ j: Journal, _ bytes: [UInt8], _ stream: OutputStream = .stdout, now: Int64 = 0) -> Int {
    bytes.withUnsafeBytes { j.append($0, from: stream, nowMs: now) }
}

@discardableResult
private func feed(_ j: Journal, _ s: String, _ stream: OutputStream = .stdout, now: Int64 = 0) -> Int {
    feed(j, Array(s.utf8), stream, now: now)
}

/// Every retained line (of `filter`), read in batches through the public cursor API.
private func lines(_ j: Journal, filter: StreamFilter = .both, from start: UInt64 = 0, batch: Int = 1000) -> [Line] {
    var out: [Line] = []
    var cursor = start
    while true {
        let next = j.read(from: cursor, filter: filter, maxLines: batch) { e in
            out.append(Line(seq: e.seq, stream: e.stream, ts: e.timestampMs, text: Array(e.text)))
            return true
        }
        if next == cursor { return out }
        cursor = next
    }
}

private func texts(_ j: Journal, filter: StreamFilter = .both) -> [String] {
    lines(j, filter: filter).map(\.string)
}

/// Deterministic generator for the randomized tests.
private struct SplitMix64 {
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

/// Independent model of one stream's line semantics: split at "\n", repair with String(decoding:),
/// strip one "\r" before "\n", cut greedily at character boundaries.
private func referenceLines(_ input: [UInt8], maxLineBytes: Int, finished: Bool) -> [[UInt8]] {
    var result: [[UInt8]] = []
    func cut(_ line: [UInt8]) {
        var rest = line[...]
        while rest.count > maxLineBytes {
            var c = rest.startIndex + maxLineBytes
            while rest[c] & 0xC0 == 0x80 { c -= 1 }
            result.append(Array(rest[..<c]))
            rest = rest[c...]
        }
        result.append(Array(rest))
    }
    var parts = input.split(separator: 0x0A, omittingEmptySubsequences: false)
    let last = parts.removeLast()
    for raw in parts {
        var text = Array(String(decoding: raw, as: UTF8.self).utf8)
        if text.last == 0x0D { text.removeLast() }
        cut(text)
    }
    if finished && !last.isEmpty { cut(Array(String(decoding: last, as: UTF8.self).utf8)) }
    return result
}

class JournalTests: XCTestCase {
    /// JournalSharedRegionTests overrides this: every test then runs on journals in caller-provided regions.
    class var sharedRegion: Bool { false }
    private var regions: [UnsafeMutableRawBufferPointer] = []

    override func tearDown() {
        for r in regions { r.deallocate() }   // the journals using them are gone by now
        regions = []
        super.tearDown()
    }

    /// A journal in this class's mode (heap, or shared region).
    func makeJournal(maxBytes: Int = 1 << 20, maxLineBytes: Int = 64 << 10) -> Journal {
        guard Self.sharedRegion else { return Journal(maxBytes: maxBytes, maxLineBytes: maxLineBytes) }
        let size = Journal.regionSize(maxBytes: maxBytes, maxLineBytes: maxLineBytes)
        let r = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        regions.append(r)
        return try! Journal(region: r, maxBytes: maxBytes, maxLineBytes: maxLineBytes, fresh: true)
    }

    // MARK: Line splitting

    func testEmptyJournal() {
        let j = makeJournal()
        XCTAssertEqual(j.headSeq, 1)
        XCTAssertEqual(j.nextSeq, 1)
        XCTAssertEqual(j.retainedBytes, 0)
        XCTAssertEqual(j.droppedLines, 0)
        XCTAssertEqual(j.missed(from: 0).lines, 0)
        XCTAssertEqual(j.read(from: 0, filter: .both, maxLines: 10) { _ in XCTFail(); return true }, 1)
        XCTAssertEqual(feed(j, []), 0)
        j.append(UnsafeRawBufferPointer(start: nil, count: 0), from: .stderr, nowMs: 0)
        XCTAssertEqual(j.finish(.stdout, nowMs: 0), 0)
        XCTAssertEqual(j.nextSeq, 1)
    }

    func testLineSplitting() {
        let j = makeJournal()
        XCTAssertEqual(feed(j, "hello\nworld\n", now: 5), 2)
        XCTAssertEqual(feed(j, "par", now: 6), 0)
        XCTAssertEqual(j.retainedBytes, 10 + 2 * 8 + 3, "text + 8 bytes per line + the partial line")
        XCTAssertEqual(feed(j, "tial\nnext", now: 7), 1)
        let got = lines(j)
        XCTAssertEqual(got, [
            Line(seq: 1, stream: .stdout, ts: 5, text: Array("hello".utf8)),
            Line(seq: 2, stream: .stdout, ts: 5, text: Array("world".utf8)),
            Line(seq: 3, stream: .stdout, ts: 7, text: Array("partial".utf8)),
        ])
        XCTAssertEqual(j.headSeq, 1)
        XCTAssertEqual(j.nextSeq, 4)
    }

    func testEmptyLinesPreserved() {
        let j = makeJournal()
        XCTAssertEqual(feed(j, "a\n\nb\n"), 3)
        XCTAssertEqual(texts(j), ["a", "", "b"])
        feed(j, "\n\n")
        XCTAssertEqual(texts(j), ["a", "", "b", "", ""])
        XCTAssertEqual(j.retainedBytes, 2 + 5 * 8)
    }

    func testCRLF() {
        let j = makeJournal()
        feed(j, "a\r\nb\r\n\r\nin\rner\nx\r\r\n")
        XCTAssertEqual(texts(j), ["a", "b", "", "in\rner", "x\r"])
        let k = makeJournal()
        feed(k, "split\r")
        feed(k, "\nnext\n")
        XCTAssertEqual(texts(k), ["split", "next"])
        // At EOF a trailing "\r" is not followed by "\n": it is kept.
        feed(k, "eof\r")
        XCTAssertEqual(k.finish(.stdout, nowMs: 0), 1)
        XCTAssertEqual(texts(k), ["split", "next", "eof\r"])
    }

    func testFinish() {
        let j = makeJournal()
        feed(j, "one\ntwo", .stdout, now: 1)
        feed(j, "err", .stderr, now: 2)
        XCTAssertEqual(j.finish(.stdout, nowMs: 3), 1)
        XCTAssertEqual(j.finish(.stdout, nowMs: 4), 0, "nothing left")
        XCTAssertEqual(texts(j), ["one", "two"])
        XCTAssertEqual(lines(j).last?.ts, 3)
        XCTAssertEqual(j.retainedBytes, 6 + 2 * 8 + 3, "stderr's partial line is untouched")
        XCTAssertEqual(j.finish(.stderr, nowMs: 5), 1)
        XCTAssertEqual(texts(j, filter: .stderr), ["err"])
        // A finished stream can be used again.
        feed(j, "again\n")
        XCTAssertEqual(texts(j).last, "again")
    }

    func testInterleavedStreamsCompleteInOrder() {
        let j = makeJournal()
        feed(j, "o1-part", .stdout, now: 1)
        feed(j, "e1\ne2-part", .stderr, now: 2)
        feed(j, "-rest\no2", .stdout, now: 3)
        feed(j, "-rest\n", .stderr, now: 4)
        j.finish(.stdout, nowMs: 5)
        XCTAssertEqual(lines(j), [
            Line(seq: 1, stream: .stderr, ts: 2, text: Array("e1".utf8)),
            Line(seq: 2, stream: .stdout, ts: 3, text: Array("o1-part-rest".utf8)),
            Line(seq: 3, stream: .stderr, ts: 4, text: Array("e2-part-rest".utf8)),
            Line(seq: 4, stream: .stdout, ts: 5, text: Array("o2".utf8)),
        ])
    }

    // MARK: Long lines

    func testLongLineSplitting() {
        let j = makeJournal(maxLineBytes: 10)
        XCTAssertEqual(j.maxLineBytes, 10)
        XCTAssertEqual(feed(j, "0123456789\n"), 1, "exactly maxLineBytes is one line")
        XCTAssertEqual(feed(j, "0123456789a\n"), 2)
        XCTAssertEqual(feed(j, "0123456789abcdefghij\n"), 2)
        XCTAssertEqual(feed(j, "0123456789abcdefghijXYZ\n"), 3)
        XCTAssertEqual(feed(j, "0123456789\r\n"), 1, "the \\r of a \\r\\n does not count")
        XCTAssertEqual(texts(j), ["0123456789", "0123456789", "a", "0123456789", "abcdefghij",
                                  "0123456789", "abcdefghij", "XYZ", "0123456789"])
        // A partial line is cut as it grows; the rest waits for "\n" or EOF.
        let k = makeJournal(maxLineBytes: 10)
        XCTAssertEqual(feed(k, String(repeating: "x", count: 25)), 2)
        XCTAssertEqual(k.retainedBytes, 20 + 2 * 8 + 5)
        XCTAssertEqual(feed(k, "yyyyyy"), 1)
        XCTAssertEqual(k.finish(.stdout, nowMs: 0), 1)
        XCTAssertEqual(texts(k), ["xxxxxxxxxx", "xxxxxxxxxx", "xxxxxyyyyy", "y"])
        // maxLineBytes is clamped to hold at least one character.
        XCTAssertEqual(makeJournal(maxLineBytes: 1).maxLineBytes, 4)
        // ... and so that a line and both partial lines fit in the budget (ring 4096 below 64 KiB).
        let small = makeJournal(maxBytes: 4096, maxLineBytes: 1 << 20)
        XCTAssertEqual(small.maxLineBytes, (4096 - 152) / 4)
        XCTAssertLessThanOrEqual(3 * small.maxLineBytes + 64, small.maxBytes)
    }

    func testLongLineCutsAtCharacterBoundary() {
        let cases: [(String, [String])] = [
            ("aaaaaaaaaé", ["aaaaaaaaa", "é"]),           // 9 + 2 bytes: cut before é
            ("aaaaaaaa€b", ["aaaaaaaa", "€b"]),           // 8 + 3: cut before €
            ("aaaaaaa😀", ["aaaaaaa", "😀"]),             // 7 + 4
            ("aaaaaaaaaa😀", ["aaaaaaaaaa", "😀"]),       // 10 + 4: cut right at the boundary
            ("ééééééé", ["ééééé", "éé"]),                 // 14 bytes of 2-byte characters
            ("😀😀😀", ["😀😀", "😀"]),
        ]
        for (input, expected) in cases {
            for bytewise in [false, true] {
                let j = makeJournal(maxLineBytes: 10)
                let bytes = Array((input + "\n").utf8)
                if bytewise { for b in bytes { feed(j, [b]) } } else { feed(j, bytes) }
                let got = texts(j)
                XCTAssertEqual(got, expected, "\(input) bytewise: \(bytewise)")
                XCTAssertTrue(lines(j).allSatisfy { $0.text.count <= 10 })
                XCTAssertEqual(got.joined(), input)
            }
        }
    }

    func testFinishOfMaximalLineWithTrailingCR() {
        // maxLineBytes of content plus a "\r" at EOF no longer fits one line: two lines, 2 returned.
        let j = makeJournal(maxLineBytes: 10)
        feed(j, "0123456789\r")
        XCTAssertEqual(j.finish(.stdout, nowMs: 0), 2)
        XCTAssertEqual(texts(j), ["0123456789", "\r"])
    }

    // MARK: UTF-8

    func testInvalidUTF8IsReplaced() {
        let r = "\u{FFFD}"
        let cases: [([UInt8], String)] = [
            ([0x61, 0xFF, 0x62], "a\(r)b"),
            ([0xC0, 0x80], r + r),                   // overlong: each byte is invalid
            ([0xED, 0xA0, 0x80], r + r + r),         // encoded surrogate
            ([0xF4, 0x90, 0x80, 0x80], r + r + r + r),  // above U+10FFFF
            ([0xE2, 0x82], r),                       // truncated by the end of the line: one replacement
            ([0xE2, 0x82, 0x41], r + "A"),
            ([0xF0, 0x9F, 0x98], r),
            ([0x80, 0x80, 0x41], r + r + "A"),
            ([0xC3, 0xA9, 0xFE, 0xC3, 0xA9], "é\(r)é"),
            ([0xE2, 0x82, 0x0D], r),                 // then "\r\n"
        ]
        for (bytes, expected) in cases {
            let j = makeJournal()
            feed(j, bytes + [0x0A])
            XCTAssertEqual(texts(j), [expected], "\(bytes)")
            XCTAssertEqual(expected, String(decoding: bytes.last == 0x0D ? bytes.dropLast() : bytes[...], as: UTF8.self))
        }
        // Long lines with invalid bytes after the eight-bytes-at-a-time ASCII scan.
        let j = makeJournal()
        feed(j, Array("abcdefghijklmnopqrstuvwxyz".utf8) + [0xFF] + Array("tail\n".utf8))
        XCTAssertEqual(texts(j), ["abcdefghijklmnopqrstuvwxyz\(r)tail"])
    }

    func testMultibyteCharacterSplitAcrossAppends() {
        for ch in ["é", "€", "😀"] {
            let bytes = Array("h\(ch)llo\n".utf8)
            for split in 1..<bytes.count {
                let j = makeJournal()
                feed(j, Array(bytes[..<split]))
                feed(j, Array(bytes[split...]))
                XCTAssertEqual(texts(j), ["h\(ch)llo"], "\(ch) split at \(split)")
            }
        }
        // Three appends within one character.
        let j = makeJournal()
        feed(j, [0x61, 0xF0])
        feed(j, [0x9F, 0x98])
        XCTAssertEqual(j.nextSeq, 1)
        feed(j, [0x80, 0x0A])
        XCTAssertEqual(texts(j), ["a😀"])
        // A carried prefix that turns out to be invalid.
        let k = makeJournal()
        feed(k, [0xE2])
        feed(k, Array("A\n".utf8))
        feed(k, [0xE2, 0x82])
        feed(k, Array("\n".utf8))
        feed(k, [0xF0])
        feed(k, [0x9F, 0xFF, 0x0A])
        feed(k, [0xC3])
        XCTAssertEqual(k.finish(.stdout, nowMs: 0), 1, "an incomplete character at EOF is replaced")
        XCTAssertEqual(texts(k), ["\u{FFFD}A", "\u{FFFD}", "\u{FFFD}\u{FFFD}", "\u{FFFD}"])
        // Each stream carries its own incomplete character.
        let m = makeJournal()
        feed(m, [0xC3], .stdout)
        feed(m, [0xE2, 0x82], .stderr)
        feed(m, [0xA9, 0x0A], .stdout)
        feed(m, [0xAC, 0x0A], .stderr)
        XCTAssertEqual(texts(m), ["é", "€"])
    }

    func testRandomUTF8RepairMatchesStringDecoding() {
        var rng = SplitMix64(state: 7)
        let pool: [UInt8] = [0x41, 0x7A, 0x20, 0x0D, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1,
                             0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]
        for _ in 0..<2000 {
            var bytes: [UInt8] = []
            for _ in 0..<rng.below(24) { bytes.append(pool[rng.below(pool.count)]) }
            let j = makeJournal()
            let split = rng.below(bytes.count + 1)
            feed(j, Array(bytes[..<split]))
            feed(j, Array(bytes[split...]))
            j.finish(.stdout, nowMs: 0)
            let expected = bytes.isEmpty ? [] : [String(decoding: bytes, as: UTF8.self)]
            XCTAssertEqual(texts(j), expected, "\(bytes) split at \(split)")
        }
    }

    func testNewlineAndNonASCIIAtEveryOffset() {
        // Lines of every length 0...40 starting at every offset of a 16-byte block, with a multi-byte
        // character or an invalid byte at every position: the newline scan (16 bytes, then 8, then 1
        // at a time) finds each "\n", and its ASCII flag never lets a non-ASCII byte skip validation.
        let specials: [[UInt8]] = [[0xC3, 0xA9], [0xFF], [0xE2, 0x82], [0x0D]]
        for shift in 0..<16 {
            for length in 0...40 {
                var input = [UInt8](repeating: UInt8(ascii: "s"), count: shift) + [0x0A]
                for pos in 0..<max(length, 1) {
                    for s in specials where length > 0 {
                        var line = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                        line.replaceSubrange(pos..<(pos + 1), with: s)
                        input += line + [0x0A]
                    }
                }
                input += [UInt8](repeating: UInt8(ascii: "b"), count: length) + [0x0A]
                let j = makeJournal()
                feed(j, input)
                XCTAssertEqual(lines(j).map(\.text), referenceLines(input, maxLineBytes: 64 << 10, finished: false),
                               "shift \(shift) length \(length)")
            }
        }
    }

    // MARK: Split independence

    /// Random input mixing ASCII, CRLF, lone CRs, multi-byte and invalid bytes, empty and over-long lines.
    private func randomInput(_ rng: inout SplitMix64, lines count: Int) -> [UInt8] {
        let pieces: [[UInt8]] = [Array("abc".utf8), Array("hello world ".utf8), [0x0D], [0xC3, 0xA9], [0xE2, 0x82, 0xAC],
                                 [0xF0, 0x9F, 0x98, 0x80], [0xFF], [0xE2, 0x82], [0xC3], Array("0123456789".utf8), [0x09]]
        var out: [UInt8] = []
        for _ in 0..<count {
            for _ in 0..<rng.below(8) { out += pieces[rng.below(pieces.count)] }
            out += rng.below(4) == 0 ? [0x0D, 0x0A] : [0x0A]
        }
        for _ in 0..<rng.below(5) { out += pieces[rng.below(pieces.count)] }   // unterminated last line
        return out
    }

    func testByteAtATimeEqualsWholeFeed() {
        var rng = SplitMix64(state: 1)
        for round in 0..<40 {
            let input = randomInput(&rng, lines: 60)
            let maxLine = [8, 16, 64 << 10][round % 3]
            let whole = makeJournal(maxLineBytes: maxLine)
            feed(whole, input, now: 1)
            whole.finish(.stdout, nowMs: 1)
            let bytewise = makeJournal(maxLineBytes: maxLine)
            for b in input { feed(bytewise, [b], now: 1) }
            bytewise.finish(.stdout, nowMs: 1)
            let chunked = makeJournal(maxLineBytes: maxLine)
            var i = 0
            while i < input.count {
                let n = min(input.count - i, 1 + rng.below(23))
                feed(chunked, Array(input[i..<(i + n)]), now: 1)
                i += n
            }
            chunked.finish(.stdout, nowMs: 1)

            let expected = referenceLines(input, maxLineBytes: maxLine, finished: true)
            XCTAssertEqual(lines(whole).map(\.text), expected, "whole feed, round \(round)")
            XCTAssertEqual(lines(bytewise), lines(whole), "byte-at-a-time, round \(round)")
            XCTAssertEqual(lines(chunked), lines(whole), "random chunks, round \(round)")
            XCTAssertEqual(bytewise.retainedBytes, whole.retainedBytes)
        }
    }

    func testInterleavedByteAtATimeEqualsWholeFeed() {
        var rng = SplitMix64(state: 99)
        for _ in 0..<10 {
            // Alternate chunks of two streams; feeding each chunk byte by byte keeps the completion order.
            var chunks: [([UInt8], OutputStream)] = []
            for k in 0..<30 { chunks.append((randomInput(&rng, lines: rng.below(3)), k % 2 == 0 ? .stdout : .stderr)) }
            let whole = makeJournal(maxLineBytes: 12)
            let bytewise = makeJournal(maxLineBytes: 12)
            for (c, s) in chunks {
                feed(whole, c, s)
                for b in c { feed(bytewise, [b], s) }
            }
            for s in [OutputStream.stderr, .stdout] {
                whole.finish(s, nowMs: 0)
                bytewise.finish(s, nowMs: 0)
            }
            XCTAssertEqual(lines(bytewise), lines(whole))
            XCTAssertEqual(lines(whole, filter: .stdout).map(\.text),
                           referenceLines(chunks.filter { $0.1 == .stdout }.flatMap(\.0), maxLineBytes: 12, finished: true))
            XCTAssertEqual(lines(whole, filter: .stderr).map(\.text),
                           referenceLines(chunks.filter { $0.1 == .stderr }.flatMap(\.0), maxLineBytes: 12, finished: true))
        }
    }

    // MARK: The bound

    /// Writes "NNNNNNNN xxx…x\n" (80 bytes) for consecutive line numbers into a byte stream.
    private struct LineSource {
        var template: [UInt8] = Array((String(repeating: "0", count: 8) + " " + String(repeating: "x", count: 70) + "\n").utf8)
        var line = 0       // number of the line being written
        var offset = 0     // bytes of it already written

        mutating func fill(_ out: inout [UInt8], count: Int) {
            out.removeAll(keepingCapacity: true)
            while out.count < count {
                if offset == 0 {
                    var n = line + 1   // seqs start at 1
                    for k in stride(from: 7, through: 0, by: -1) {
                        template[k] = UInt8(0x30 + n % 10)
                        n /= 10
                    }
                }
                let take = min(80 - offset, count - out.count)
                out += template[offset..<(offset + take)]
                offset += take
                if offset == 80 {
                    offset = 0
                    line += 1
                }
            }
        }
    }

    func testBoundWith100MiBThrough1MiB() {
        let j = makeJournal()
        XCTAssertEqual(j.boundBytes, 1 << 20)
        // The budget is what the bound leaves after the header (2464 B), a page per partial-line area,
        // the sparse index at its largest (48 KiB)
        // and the ring's slack (one max line + 88 B).
        XCTAssertEqual(j.maxBytes, ((1 << 20) - 2464 - 8192 - 49152) & ~7 - (64 << 10) - 88)
        var source = LineSource()
        var chunk: [UInt8] = []
        var total = 0
        var lastHead: UInt64 = 1
        var observedHeads: [UInt64] = []
        var maxRetained = 0
        for _ in 0..<(100 * 16) {   // 100 MiB in 64 KiB reads, which end mid-line
            source.fill(&chunk, count: 64 << 10)
            total += feed(j, chunk, now: Int64(total))
            maxRetained = max(maxRetained, j.retainedBytes)
            XCTAssertLessThanOrEqual(j.retainedBytes, j.maxBytes)
            XCTAssertGreaterThanOrEqual(j.headSeq, lastHead)
            if j.headSeq != lastHead { observedHeads.append(j.headSeq) }
            lastHead = j.headSeq
            XCTAssertEqual(j.droppedLines, j.headSeq - 1)
            XCTAssertEqual(j.droppedLines + (j.nextSeq - j.headSeq), UInt64(total))
        }
        XCTAssertEqual(total, 100 * (1 << 20) / 80)
        XCTAssertEqual(j.nextSeq, UInt64(total) + 1)
        XCTAssertEqual(j.droppedBytes, j.droppedLines * 79)
        XCTAssertGreaterThan(maxRetained, j.maxBytes * 9 / 10, "the bound is used, not just respected")
        XCTAssertGreaterThan(j.retainedBytes, j.maxBytes * 3 / 4)

        // The retained lines are exactly the newest ones, intact and in order.
        let kept = lines(j)
        XCTAssertEqual(kept.count, Int(j.nextSeq - j.headSeq))
        XCTAssertEqual(kept.first?.seq, j.headSeq)
        for (i, l) in kept.enumerated() where i % 97 == 0 || i == kept.count - 1 {
            XCTAssertEqual(l.seq, j.headSeq + UInt64(i))
            XCTAssertEqual(l.text.count, 79)
            let digits = String(l.seq)
            XCTAssertEqual(String(decoding: l.text.prefix(8), as: UTF8.self), String(repeating: "0", count: 8 - digits.count) + digits)
        }

        // missed(): lines always exact; bytes exact from seq 1 and at recent segment starts, else bounded.
        let head = j.headSeq
        XCTAssertTrue(j.missed(from: 0) == (head - 1, j.droppedBytes))
        XCTAssertTrue(j.missed(from: 1) == (head - 1, j.droppedBytes))
        XCTAssertTrue(j.missed(from: head) == (0, 0))
        XCTAssertTrue(j.missed(from: head + 5) == (0, 0))
        for back: UInt64 in [1, 5, 100, 1000, 5000] {
            let m = j.missed(from: head - back)
            XCTAssertEqual(m.lines, back)
            XCTAssertGreaterThanOrEqual(m.bytes, back * 79)
            XCTAssertLessThanOrEqual(m.bytes, back * 79 + 64 << 10)
        }
        let recent = observedHeads.suffix(60).filter { $0 < head }
        XCTAssertGreaterThan(recent.count, 10)
        for s in recent {
            let m = j.missed(from: s)
            XCTAssertTrue(m == (head - s, (head - s) * 79), "missed(from: \(s)) = \(m)")
        }
        // Reading from before the head clamps to the head.
        var first: UInt64 = 0
        _ = j.read(from: 1, filter: .both, maxLines: 1) { e in first = e.seq; return true }
        XCTAssertEqual(first, head)
    }

    func testBoundWithSmallJournalAndBothStreams() {
        // A small bound: many segments, partial lines on both streams counted, long lines.
        let j = makeJournal(maxBytes: 4096, maxLineBytes: 300)
        var rng = SplitMix64(state: 3)
        var total = 0
        for i in 0..<5000 {
            let len = rng.below(400)
            var bytes = [UInt8](repeating: UInt8(0x61 + i % 26), count: len)
            if rng.below(3) > 0 { bytes.append(0x0A) }
            total += feed(j, bytes, i % 3 == 0 ? .stderr : .stdout, now: Int64(i))
            XCTAssertLessThanOrEqual(j.retainedBytes, 4096)
            XCTAssertEqual(j.droppedLines + (j.nextSeq - j.headSeq), UInt64(total))
            XCTAssertEqual(j.droppedLines, j.headSeq - 1)
        }
        let kept = lines(j)
        XCTAssertEqual(kept.map(\.seq), Array(j.headSeq..<j.nextSeq))
        XCTAssertTrue(kept.allSatisfy { $0.text.count <= 300 })
        let textBytes = kept.reduce(0) { $0 + $1.text.count }
        XCTAssertLessThanOrEqual(textBytes + kept.count * 8, j.retainedBytes)
    }

    func testIdleJournalIsCheap() {
        let j = makeJournal()
        XCTAssertEqual(j.retainedBytes, 0)
        feed(j, "x\n")
        XCTAssertEqual(j.retainedBytes, 1 + 8)
    }

    // MARK: Reading

    private func alternating(_ n: Int) -> Journal {
        let j = makeJournal()
        for i in 1...n {
            feed(j, "line \(i)\n", i % 2 == 1 ? .stdout : .stderr, now: Int64(1000 + i))
        }
        return j
    }

    func testReadFiltersAndResume() {
        let j = alternating(20)
        var got: [Line] = []
        var next = j.read(from: 0, filter: .stderr, maxLines: 3) { e in
            got.append(Line(seq: e.seq, stream: e.stream, ts: e.timestampMs, text: Array(e.text)))
            return true
        }
        XCTAssertEqual(got.map(\.seq), [2, 4, 6])
        XCTAssertTrue(got.allSatisfy { $0.stream == .stderr })
        XCTAssertEqual(got.map(\.string), ["line 2", "line 4", "line 6"])
        XCTAssertEqual(got.map(\.ts), [1002, 1004, 1006])
        XCTAssertEqual(next, 7, "one past the last entry scanned")
        got = []
        next = j.read(from: next, filter: .stderr, maxLines: 100) { e in
            got.append(Line(seq: e.seq, stream: e.stream, ts: e.timestampMs, text: Array(e.text)))
            return true
        }
        XCTAssertEqual(got.map(\.seq), [8, 10, 12, 14, 16, 18, 20])
        XCTAssertEqual(next, 21)
        XCTAssertEqual(j.read(from: next, filter: .both, maxLines: 100) { _ in XCTFail(); return true }, 21)
        XCTAssertEqual(lines(j, filter: .stdout).map(\.seq), Array(stride(from: 1, through: 19, by: 2)))
        XCTAssertEqual(lines(j, filter: .both).count, 20)
        XCTAssertEqual(lines(j, filter: []).count, 0)
    }

    func testReadMaxLinesAndEarlyStop() {
        let j = alternating(20)
        var seqs: [UInt64] = []
        var next = j.read(from: 5, filter: .both, maxLines: 4) { e in seqs.append(e.seq); return true }
        XCTAssertEqual(seqs, [5, 6, 7, 8])
        XCTAssertEqual(next, 9)
        seqs = []
        next = j.read(from: next, filter: .both, maxLines: 100) { e in seqs.append(e.seq); return e.seq < 11 }
        XCTAssertEqual(seqs, [9, 10, 11], "false from body stops after that entry")
        XCTAssertEqual(next, 12)
        XCTAssertEqual(j.read(from: next, filter: .both, maxLines: 0) { _ in XCTFail(); return true }, 12)
        XCTAssertEqual(j.read(from: 500, filter: .both, maxLines: 10) { _ in XCTFail(); return true }, 21,
                       "a cursor past the end is clamped to nextSeq")
    }

    func testReadScanBound() {
        let j = makeJournal()
        for i in 0..<500 { feed(j, "out \(i)\n", .stdout) }
        feed(j, "the error\n", .stderr)
        var visited = 0
        var cursor: UInt64 = 1
        var calls = 0
        var found: String?
        while found == nil && calls < 100 {
            let next = j.read(from: cursor, filter: .stderr, maxLines: 1) { e in
                found = String(decoding: e.text, as: UTF8.self)
                visited += 1
                return true
            }
            if found == nil { XCTAssertEqual(next - cursor, 4 * 1 + 64, "scan stops after 4 * maxLines + 64 entries") }
            cursor = next
            calls += 1
        }
        XCTAssertEqual(found, "the error")
        XCTAssertEqual(visited, 1)
        XCTAssertEqual(cursor, 502)
        XCTAssertEqual(calls, 8)   // 500 skipped lines / 68 per call, then the hit
    }

    func testReadAcrossManySegments() {
        // A small bound makes small segments; reading from any seq finds the right line.
        let j = makeJournal(maxBytes: 16 << 10)
        for i in 1...3000 { feed(j, "l\(i)\n", i % 5 == 0 ? .stderr : .stdout, now: Int64(i)) }
        XCTAssertGreaterThan(j.headSeq, 1)
        let all = lines(j, batch: 7)
        XCTAssertEqual(all.map(\.seq), Array(j.headSeq..<j.nextSeq))
        for l in all { XCTAssertEqual(l.string, "l\(l.seq)"); XCTAssertEqual(l.ts, Int64(l.seq)) }
        for s in stride(from: j.headSeq, to: j.nextSeq, by: 13) {
            var got: UInt64 = 0
            _ = j.read(from: s, filter: .both, maxLines: 1) { e in got = e.seq; return true }
            XCTAssertEqual(got, s)
        }
    }

    func testTimestamps() {
        // Deltas that do not fit the compact index start a new segment; negative times are fine.
        let j = makeJournal()
        let times: [Int64] = [-5, 0, 1_700_000_000_000, 1_700_000_000_001, 1_600_000_000_000, Int64.max, Int64.min, 42]
        for (i, t) in times.enumerated() { feed(j, "t\(i)\n", now: t) }
        XCTAssertEqual(lines(j).map(\.ts), times)
        XCTAssertEqual(texts(j), times.indices.map { "t\($0)" })
    }

    // MARK: Throughput (printed, not asserted)

    func testThroughput80ByteLines() {
        #if DEBUG
        let megabytes = 32
        #else
        let megabytes = 1024
        #endif
        let j = makeJournal()
        var source = LineSource()
        var chunk: [UInt8] = []
        // Pre-generate 64 KiB reads (they end mid-line, as pipe reads do). 5 reads hold exactly 4096 lines,
        // so cycling through them continues the byte stream seamlessly.
        var reads: [[UInt8]] = []
        for _ in 0..<5 {
            source.fill(&chunk, count: 64 << 10)
            reads.append(chunk)
        }
        let readCount = megabytes * 16
        let clock = ContinuousClock()
        var total = 0
        let elapsed = clock.measure {
            for k in 0..<readCount {
                total += reads[k % 5].withUnsafeBytes { j.append($0, from: .stdout, nowMs: Int64(k)) }
            }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let mbps = Double(megabytes) / seconds
        let lps = Double(total) / seconds
        print("Journal throughput (\(Self.sharedRegion ? "shared region" : "heap")), 80-byte lines in 64 KiB reads: \(Int(mbps)) MiB/s, \(Double(Int(lps / 1e5)) / 10) M lines/s (\(megabytes) MiB in \(seconds) s)")
        XCTAssertEqual(total, readCount * (64 << 10) / 80)
    }
}

/// The same tests, with every journal in a caller-provided region (as tendd's memfds). Each test is
/// repeated here because Linux test discovery only finds test methods a class declares itself: a new test
/// in JournalTests needs its line here too.
final class JournalSharedRegionTests: JournalTests {
    override class var sharedRegion: Bool { true }

    override func testEmptyJournal() { super.testEmptyJournal() }
    override func testLineSplitting() { super.testLineSplitting() }
    override func testEmptyLinesPreserved() { super.testEmptyLinesPreserved() }
    override func testCRLF() { super.testCRLF() }
    override func testFinish() { super.testFinish() }
    override func testInterleavedStreamsCompleteInOrder() { super.testInterleavedStreamsCompleteInOrder() }
    override func testLongLineSplitting() { super.testLongLineSplitting() }
    override func testLongLineCutsAtCharacterBoundary() { super.testLongLineCutsAtCharacterBoundary() }
    override func testFinishOfMaximalLineWithTrailingCR() { super.testFinishOfMaximalLineWithTrailingCR() }
    override func testInvalidUTF8IsReplaced() { super.testInvalidUTF8IsReplaced() }
    override func testMultibyteCharacterSplitAcrossAppends() { super.testMultibyteCharacterSplitAcrossAppends() }
    override func testRandomUTF8RepairMatchesStringDecoding() { super.testRandomUTF8RepairMatchesStringDecoding() }
    override func testNewlineAndNonASCIIAtEveryOffset() { super.testNewlineAndNonASCIIAtEveryOffset() }
    override func testByteAtATimeEqualsWholeFeed() { super.testByteAtATimeEqualsWholeFeed() }
    override func testInterleavedByteAtATimeEqualsWholeFeed() { super.testInterleavedByteAtATimeEqualsWholeFeed() }
    override func testBoundWith100MiBThrough1MiB() { super.testBoundWith100MiBThrough1MiB() }
    override func testBoundWithSmallJournalAndBothStreams() { super.testBoundWithSmallJournalAndBothStreams() }
    override func testIdleJournalIsCheap() { super.testIdleJournalIsCheap() }
    override func testReadFiltersAndResume() { super.testReadFiltersAndResume() }
    override func testReadMaxLinesAndEarlyStop() { super.testReadMaxLinesAndEarlyStop() }
    override func testReadScanBound() { super.testReadScanBound() }
    override func testReadAcrossManySegments() { super.testReadAcrossManySegments() }
    override func testTimestamps() { super.testTimestamps() }
    override func testThroughput80ByteLines() { super.testThroughput80ByteLines() }
}
