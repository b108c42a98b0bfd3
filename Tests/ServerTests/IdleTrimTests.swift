// IdleTrim: a trim once per idle period, only after `quietMs` without activity, never while busy.
import XCTest
@testable import Server

final class IdleTrimTests: XCTestCase {
    func testTrimsOnceAfterAQuietSecondAndAgainOnlyAfterActivity() {
        var t = IdleTrim()
        let q = IdleTrim.quietMs
        XCTAssertFalse(t.tick(busy: false, now: 0), "start-up trimmed already")
        XCTAssertFalse(t.tick(busy: false, now: 5 * q))
        XCTAssertFalse(t.tick(busy: true, now: 6 * q))
        XCTAssertFalse(t.tick(busy: false, now: 6 * q + 10), "quiet starts here")
        XCTAssertFalse(t.tick(busy: false, now: 7 * q))
        XCTAssertTrue(t.tick(busy: false, now: 7 * q + 10))
        XCTAssertFalse(t.tick(busy: false, now: 9 * q), "once per idle period")
        XCTAssertFalse(t.tick(busy: true, now: 10 * q))
        XCTAssertFalse(t.tick(busy: false, now: 10 * q + 1))
        XCTAssertFalse(t.tick(busy: true, now: 10 * q + 500), "activity restarts the quiet period")
        XCTAssertFalse(t.tick(busy: false, now: 11 * q))
        XCTAssertFalse(t.tick(busy: false, now: 12 * q - 1))
        XCTAssertTrue(t.tick(busy: false, now: 12 * q))
    }

    func testAConnectionBetweenTicksCountsAsActivity() {
        var t = IdleTrim()
        let q = IdleTrim.quietMs
        t.noteActivity()                                   // accepted and closed before any tick saw it
        XCTAssertFalse(t.tick(busy: false, now: 100))
        XCTAssertFalse(t.tick(busy: false, now: 100 + q - 1))
        XCTAssertTrue(t.tick(busy: false, now: 100 + q))
        XCTAssertFalse(t.tick(busy: false, now: 100 + 5 * q))
    }
}
