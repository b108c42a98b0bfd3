// Cgroup.populated reads "populated 0|1" from a leaf's cgroup.events with one small read; checked on
// files of the same layout (the real file needs a cgroup v2 leaf; the e2e ownership tests cover that),
// by absolute path and relative to an open directory fd (how Ownership reaches its leaves).
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

    func testRelativeToADirectoryFD() throws {
        let parent = try leaf(nil)
        let dir = try Cgroup.openDir(parent)
        defer { FD.close(dir) }
        XCTAssertTrue(try Cgroup.makeNewDirectory("l1", in: dir))
        XCTAssertFalse(try Cgroup.makeNewDirectory("l1", in: dir), "an existing leaf is never reused")
        let fd = try FD.open("l1/cgroup.events", at: dir, flags: O_WRONLY | O_CREAT)
        try FD.writeAll(fd, Array("populated 1\n".utf8))
        FD.close(fd)
        XCTAssertTrue(Cgroup.populated("l1", in: dir))
        XCTAssertTrue(Cgroup.populated(parent + "/l1", in: dir), "an absolute path ignores the directory fd")
        let sub = try Cgroup.openDir("l1", in: dir)
        FD.close(sub)
        XCTAssertFalse(Cgroup.remove("l1", in: dir), "not empty")
        XCTAssertEqual(unlink(parent + "/l1/cgroup.events"), 0)
        XCTAssertTrue(Cgroup.remove("l1", in: dir))
        XCTAssertTrue(Cgroup.remove("l1", in: dir), "already gone counts as removed")
        XCTAssertFalse(Cgroup.populated("l1", in: dir))
    }
}
