// Cgroup.populated reads "populated 0|1" from a leaf's cgroup.events with one small read; checked on
// files of the same layout (the real file needs a cgroup v2 leaf; the e2e ownership tests cover that).
import XCTest
import Glibc
@testable import Sys

final class CgroupEventsTests: XCTestCase {
    private func leaf(_ content: String?) throws -> String {
        let dir = "/tmp/tend-cgev-\(Proc.myPid)-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkdir(dir, 0o700), 0)
        if let content {
            let fd = try FD.open(dir + "/cgroup.events", flags: O_WRONLY | O_CREAT, mode: 0o600)
            try FD.writeAll(fd, Array(content.utf8))
            FD.close(fd)
        }
        addTeardownBlock { unlink(dir + "/cgroup.events"); rmdir(dir) }
        return dir
    }

    func testPopulatedFlag() throws {
        XCTAssertTrue(Cgroup.populated(try leaf("populated 1\nfrozen 0\n")))
        XCTAssertFalse(Cgroup.populated(try leaf("populated 0\nfrozen 0\n")))
    }

    func testOtherLayoutIsSearched() throws {
        XCTAssertTrue(Cgroup.populated(try leaf("frozen 0\npopulated 1\n")))
        XCTAssertFalse(Cgroup.populated(try leaf("frozen 1\npopulated 0\n")))
    }

    func testMissingOrEmptyFileIsNotPopulated() throws {
        XCTAssertFalse(Cgroup.populated(try leaf(nil)))
        XCTAssertFalse(Cgroup.populated(try leaf("")))
    }
}
