// `tend top`'s pure parts: rates between two samples, the sort order, units, and the screen layout.
import XCTest
import JSON
@testable import TendClient

final class TopTests: XCTestCase {
    func testRatesOverTheIntervalAndSortByCPU() {
        let before = [TopSample(handle: 1, pid: 10, cpuUsec: 1_000_000, outputBytes: 0),
                      TopSample(handle: 2, pid: 20, cpuUsec: 0, outputBytes: 100),
                      TopSample(handle: 3, pid: 30, cpuUsec: 500, outputBytes: 0)]
        let after = [TopSample(handle: 1, pid: 10, cpuUsec: 1_250_000, outputBytes: 0),   // 0.25 s of CPU in 0.5 s: 50 %
                     TopSample(handle: 2, pid: 20, cpuUsec: 400_000, outputBytes: 2_148),  // 80 %, 4096 B/s
                     TopSample(handle: 3, pid: 31, cpuUsec: 0, outputBytes: 0),            // restarted (new pid): no rate
                     TopSample(handle: 4, pid: 40, cpuUsec: 9)]                            // new: no rate
        let rows = topRows(previous: before, current: after, elapsedMs: 500)
        XCTAssertEqual(rows.map(\.sample.pid), [20, 10, 31, 40])
        XCTAssertEqual(rows[0].cpuPercent!, 80, accuracy: 1e-9)
        XCTAssertEqual(rows[0].outputPerSec!, 4096, accuracy: 1e-9)
        XCTAssertEqual(rows[1].cpuPercent!, 50, accuracy: 1e-9)
        XCTAssertNil(rows[2].cpuPercent)
        XCTAssertNil(rows[3].outputPerSec)
    }

    func testSampleFromProcessInfo() {
        let info = JSONValue.object([("pid", .int(7)), ("handle", .int(3)), ("status", .string("running")),
                                     ("command", .string("sleep")), ("args", .array([.string("9")])),
                                     ("managed", .null),
                                     ("resources", .object([("cpu_usec", .int(5)), ("memory_bytes", .null), ("pids", .int(2)),
                                                            ("output_bytes", .int(11))]))])
        XCTAssertEqual(TopSample(info), TopSample(handle: 3, pid: 7, name: "-", status: "running", command: "sleep 9",
                                                  cpuUsec: 5, memoryBytes: nil, pids: 2, outputBytes: 11))
        XCTAssertNil(TopSample(.object([("pid", .int(7)), ("handle", .int(3)), ("status", .string("exited"))])))
    }

    func testUnitsAndLayoutFitTheTerminal() {
        XCTAssertEqual(humanBytes(nil), "-")
        XCTAssertEqual(humanBytes(512), "512B")
        XCTAssertEqual(humanBytes(1536), "1.5K")
        XCTAssertEqual(humanBytes(3 * 1024 * 1024 * 1024), "3.0G")
        let rows = (1...10).map { i in TopRow(sample: TopSample(handle: Int64(i), pid: Int64(i), command: String(repeating: "x", count: 200)),
                                              cpuPercent: Double(i), outputPerSec: nil) }
        let screen = renderTop(rows, width: 60, height: 6, intervalMs: 1500, url: "unix:/run/tendd.sock")
        XCTAssertEqual(screen.count, 6)   // summary, header, 3 rows, "… 7 more"
        XCTAssertTrue(screen[0].contains("10 running") && screen[0].contains("every 1.5s"))
        XCTAssertTrue(screen[1].hasPrefix("PID"))
        XCTAssertEqual(screen.last, "… 7 more")
        XCTAssertTrue(screen[2...4].allSatisfy { $0.count <= 60 })
        XCTAssertEqual(topTSV(rows[0]), "1\t-\t1.0\t-\t-\t-\trunning\t" + String(repeating: "x", count: 200))
    }
}
