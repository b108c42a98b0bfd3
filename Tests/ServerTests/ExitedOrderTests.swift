// ExitedOrder against a plain array model: the same records in the same order after any mix of
// appends (duplicates keep their place), removals (front, middle, absent), evictions from the front
// and a sort, including enough removals to trigger compaction.
import XCTest
@testable import Server

private final class R { let n: Int; init(_ n: Int) { self.n = n } }

final class ExitedOrderTests: XCTestCase {
    private func check(_ o: ExitedOrder<R>, _ model: [R], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(o.records.map(\.n), model.map(\.n), file: file, line: line)
        XCTAssertEqual(o.count, model.count, file: file, line: line)
        XCTAssertTrue(o.first === model.first, file: file, line: line)
        for r in model { XCTAssertTrue(o.contains(r), file: file, line: line) }
    }

    func testBasicOperations() {
        let o = ExitedOrder<R>()
        let rs = (0..<5).map(R.init)
        XCTAssertNil(o.first); XCTAssertTrue(o.isEmpty)
        for r in rs { o.append(r) }
        o.append(rs[1])                       // already kept: keeps its place
        check(o, rs)
        o.remove(rs[2]); check(o, [rs[0], rs[1], rs[3], rs[4]])
        o.remove(rs[0]); check(o, [rs[1], rs[3], rs[4]])
        o.remove(rs[0]); check(o, [rs[1], rs[3], rs[4]])   // absent: nothing
        XCTAssertFalse(o.contains(rs[0]))
        o.append(rs[0]); check(o, [rs[1], rs[3], rs[4], rs[0]])
        o.sort { $0.n < $1.n }; check(o, [rs[0], rs[1], rs[3], rs[4]])
        for r in rs { o.remove(r) }
        check(o, []); XCTAssertNil(o.first)
    }

    func testRandomMixMatchesTheArrayModel() {
        var rng = SystemRandomNumberGenerator()
        let o = ExitedOrder<R>()
        var model: [R] = []
        var pool = (0..<300).map(R.init)
        for step in 0..<20_000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:                                   // a record retires
                let r = pool.randomElement(using: &rng)!
                if !model.contains(where: { $0 === r }) { model.append(r) }
                o.append(r)
            case 4..<6:                                   // eviction of the oldest
                if let f = model.first { model.removeFirst(); o.remove(f) } else { XCTAssertNil(o.first) }
            case 6..<9:                                   // unretire / forget from anywhere
                let r = pool.randomElement(using: &rng)!
                model.removeAll { $0 === r }
                o.remove(r)
            default:                                      // records replaced by new ones (pids reused)
                pool[Int.random(in: 0..<pool.count, using: &rng)] = R(1000 + step)
            }
            if step % 500 == 0 { check(o, model) }
        }
        check(o, model)
    }
}
