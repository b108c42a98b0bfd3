// DirEntryTests — regression test for the readdir overflow AddressSanitizer found (hardening): names
// are read up to their NUL only. Under scripts/sanitize.sh the old code fails here with a
// heap-buffer-overflow; in a normal build these check the names are right.
import XCTest
import Glibc
@testable import Sys

final class DirEntryTests: XCTestCase {
    func testListDirectoryNamesOfEveryLength() throws {
        var template = Array("/tmp/tend-direntXXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { return XCTFail("mkdtemp") }
        let path = String(cString: dir)
        var want: Set<String> = []
        for len in [1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 200, 254, 255] {
            let name = String(repeating: "n", count: len - 1) + "\(len % 10)"
            let fd = open(path + "/" + name, O_CREAT | O_WRONLY, 0o600)
            XCTAssertGreaterThanOrEqual(fd, 0, name)
            close(fd)
            want.insert(name)
        }
        XCTAssertEqual(Set(FD.listDirectory(path)), want)
        for n in want { unlink(path + "/" + n) }
        rmdir(path)
    }

    func testProcScanSeesThisProcess() {
        let me = getpid()
        let all = ProcScan.all()
        XCTAssertTrue(all.contains { $0.pid == me && $0.ppid == getppid() }, "\(all.count) entries")
    }
}
