// Tests for ByteRing (the raw byte view's storage): offsets and wrapping against a reference model for
// random append sizes (including appends larger than the window), reads in two pieces, lazy allocation,
// and crash recovery from a region snapshot taken at every commit point of an append.
import Supervision
import XCTest

final class ByteRingTests: XCTestCase {
    private struct Rng {
        var s: UInt64
        mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    private func pattern(_ offset: UInt64, _ n: Int) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: (offset &+ UInt64($0)) &* 2654435761 >> 7) }
    }

    func testEmptyAndLazy() {
        let r = ByteRing(capacity: 4096)
        XCTAssertEqual(r.total, 0)
        XCTAssertEqual(r.firstOffset, 0)
        XCTAssertEqual(r.bytes(from: 0), [])
        XCTAssertEqual(r.window, 4096, "a heap ring keeps its whole capacity")
    }

    func testMatchesModelForRandomAppends() {
        var rng = Rng(s: 0x9E3779B97F4A7C15)
        for capacity in [4096, 5000, 65536] {
            let r = ByteRing(capacity: capacity)
            var model: [UInt8] = []   // every byte ever written
            for _ in 0..<400 {
                let n = [0, 1, 7, rng.below(300), rng.below(capacity), capacity + rng.below(3 * capacity)][rng.below(6)]
                let chunk = pattern(UInt64(model.count), n)
                chunk.withUnsafeBytes { r.append($0) }
                model += chunk
                XCTAssertEqual(r.total, UInt64(model.count))
                XCTAssertLessThanOrEqual(r.total - r.firstOffset, UInt64(r.window))
                // Everything retained is the byte written at that offset; a big append keeps its tail.
                let first = Int(r.firstOffset)
                XCTAssertEqual(r.bytes(from: 0), Array(model[first...]))
                if n >= r.window { XCTAssertEqual(Int(r.total) - first, r.window, "a big append keeps a full window") }
                let probe = UInt64(first + rng.below(model.count - first + 1))
                let max = rng.below(capacity)
                let got = r.bytes(from: probe, max: max)
                XCTAssertEqual(got, Array(model[Int(probe)..<min(model.count, Int(probe) + max)]))
            }
        }
    }

    func testWrappedReadComesInTwoPieces() {
        let r = ByteRing(capacity: 4096)
        let a = pattern(0, 3000), b = pattern(3000, 2000)
        a.withUnsafeBytes { r.append($0) }
        b.withUnsafeBytes { r.append($0) }
        r.withBytes(from: 2500, max: .max) { p, q in
            XCTAssertEqual(p.count, 4096 - 2500)
            XCTAssertEqual(q.count, 5000 - 4096)
            XCTAssertEqual(Array(p) + Array(q), Array((a + b)[2500...]))
        }
    }

    func testRecoveryAtEveryCommitIsExact() throws {
        let capacity = 8192
        let size = ByteRing.regionSize(capacity: capacity)
        let mem = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { mem.deallocate() }
        let ring = try ByteRing(region: mem, capacity: capacity, fresh: true)
        var rng = Rng(s: 42)
        var written: [UInt8] = []
        for _ in 0..<200 {
            let n = rng.below(3 * capacity)
            let chunk = pattern(UInt64(written.count), n)
            chunk.withUnsafeBytes { ring.append($0) }
            written += chunk
            // A crash right after this append: the recovered ring serves exactly what the live one does.
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
            defer { copy.deallocate() }
            copy.copyMemory(from: UnsafeRawBufferPointer(mem))
            let back = try ByteRing(region: copy, capacity: capacity, fresh: false)
            XCTAssertEqual(back.total, ring.total)
            XCTAssertEqual(back.firstOffset, ring.firstOffset)
            XCTAssertEqual(back.bytes(from: 0), Array(written[Int(ring.firstOffset)...]))
        }
    }

    func testTornAppendNeverServesWrongBytes() throws {
        // Simulates a crash in the middle of an append: the data area has new bytes past the committed
        // total (up to commitEvery of them), the header still has the old total.
        let capacity = 16384
        let size = ByteRing.regionSize(capacity: capacity)
        let mem = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { mem.deallocate() }
        let ring = try ByteRing(region: mem, capacity: capacity, fresh: true)
        var written = pattern(0, 50_000)
        written.withUnsafeBytes { ring.append($0) }
        let committed = mem.load(fromByteOffset: 8, as: UInt64.self)
        XCTAssertEqual(committed, 50_000)
        // Scribble over the bytes an uncommitted piece could touch: the next commitEvery positions.
        let at = Int(ring.total % UInt64(capacity))
        for i in 0..<ring.commitEvery { mem[64 + (at + i) % capacity] = 0xEE }
        let back = try ByteRing(region: mem, capacity: capacity, fresh: false)
        XCTAssertEqual(back.bytes(from: 0), Array(written[Int(back.firstOffset)...]))
        written += pattern(50_000, 10)
        Array(written[50_000..<50_010]).withUnsafeBytes { back.append($0) }
        XCTAssertEqual(back.bytes(from: 0), Array(written[Int(back.firstOffset)...]))
    }

    func testRecoveryRejectsForeignRegions() throws {
        let size = ByteRing.regionSize(capacity: 8192)
        let mem = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { mem.deallocate() }
        mem.initializeMemory(as: UInt8.self, repeating: 0)
        XCTAssertThrowsError(try ByteRing(region: mem, capacity: 8192, fresh: false))   // no header
        _ = try ByteRing(region: mem, capacity: 8192, fresh: true)
        XCTAssertThrowsError(try ByteRing(region: mem, capacity: 4096, fresh: false))   // other capacity
        XCTAssertThrowsError(try ByteRing(region: UnsafeMutableRawBufferPointer(start: mem.baseAddress, count: 100), capacity: 8192, fresh: true))
    }
}
