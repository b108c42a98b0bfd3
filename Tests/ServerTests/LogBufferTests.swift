// The log writes once per loop turn: info/debug lines wait in the buffer until flush(), a warn or error
// line goes out at once together with everything before it (order kept), and a full buffer is
// written without waiting. Checked by pointing fd 2 at a pipe for the duration of each test.
import XCTest
import Sys
@testable import Server

final class LogBufferTests: XCTestCase {
    private var saved: Int32 = -1
    private var pipe: (read: Int32, write: Int32) = (-1, -1)

    override func setUpWithError() throws {
        saved = try FD.dup(2, atLeast: 10)
        pipe = try FD.pipe(size: 1 << 20)
        try FD.dup2(pipe.write, 2)
    }

    override func tearDownWithError() throws {
        try FD.dup2(saved, 2)
        FD.close(saved); FD.close(pipe.read); FD.close(pipe.write)
    }

    /// What reached fd 2 so far.
    private func written() throws -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while case .bytes(let n) = try buf.withUnsafeMutableBytes({ try FD.read(pipe.read, into: $0) }) { out += buf[0..<n] }
        return String(decoding: out, as: UTF8.self)
    }

    func testInfoWaitsForFlushAndWarnCarriesWhatCameBefore() throws {
        let log = Log(level: .info)
        log.debug("msg=hidden")
        log.info("msg=first")
        log.info("msg=second")
        XCTAssertEqual(try written(), "", "info lines are buffered until the loop turn ends")
        log.warn("msg=third")
        let lines = try written().split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[0].hasSuffix("level=info msg=first"), String(lines[0]))
        XCTAssertTrue(lines[1].hasSuffix("level=info msg=second"))
        XCTAssertTrue(lines[2].hasSuffix("level=warn msg=third"))
        XCTAssertTrue(lines[0].hasPrefix("ts="))
        log.info("msg=fourth")
        log.flush()
        XCTAssertTrue(try written().hasSuffix("level=info msg=fourth\n"))
        log.flush()
        XCTAssertEqual(try written(), "", "nothing is written twice")
    }

    func testLevelChosenByTheCallerAndFullBufferWrittenAtOnce() throws {
        let log = Log(level: .info)
        log.at(.debug, "msg=request status=200")
        log.at(.info, "msg=request status=404")
        log.flush()
        XCTAssertEqual(try written().split(separator: "\n").count, 1)
        let line = String(repeating: "x", count: 1000)
        for _ in 0..<(Log.flushBytes / 1000 + 1) { log.info("msg=\(line)") }
        XCTAssertGreaterThanOrEqual(try written().utf8.count, Log.flushBytes, "a full buffer does not wait for the loop")
    }
}
