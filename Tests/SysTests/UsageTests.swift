// Usage: the daemon's own figures and the stepped /proc scan, against this test process.
import XCTest
import Glibc
@testable import Sys

final class UsageTests: XCTestCase {
    func testSelfStatsDescribeThisProcess() {
        let s = Usage.ofSelf()
        XCTAssertGreaterThan(s.residentBytes, 1 << 20)
        XCTAssertGreaterThanOrEqual(s.virtualBytes, s.residentBytes)
        XCTAssertGreaterThan(s.openFDs, 2)
        let before = s.openFDs
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        XCTAssertEqual(Usage.ofSelf().openFDs, before + 1)
        close(fd)
        var rl = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl), 0)
        XCTAssertEqual(s.maxFDs, Int64(rl.rlim_cur))
        let now = Double(time(nil))
        XCTAssertLessThan(s.startTimeSeconds, now + 2)
        XCTAssertGreaterThan(s.startTimeSeconds, now - 24 * 3600)
    }

    func testSteppedScanFindsThisProcessWithItsParent() {
        let scan = ProcScanner()
        var steps = 0
        while !scan.step(max: 7) { steps += 1 }
        XCTAssertGreaterThan(steps, 0)              // more than 7 processes on any host running tests
        XCTAssertTrue(scan.done)
        XCTAssertTrue(scan.step(max: 7))            // done stays done
        let me = scan.table[getpid()]
        XCTAssertEqual(me?.ppid, getppid())
        XCTAssertGreaterThan(me?.rssPages ?? 0, 0)
    }

    func testCgroupFiguresAreNilWhereTheFilesAreMissing() {
        let t = Usage.ofCgroup("/nonexistent-tend-leaf", memory: true, pids: true)
        XCTAssertEqual(t, Usage.Tree())
    }
}
