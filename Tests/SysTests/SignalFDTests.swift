// Signal.drain against the real kernel: every pending signal of the calling thread comes out once, in
// order, with its sender, also when more are queued than one read takes (real-time signals queue).
import XCTest
import Glibc
@testable import Sys

final class SignalFDTests: XCTestCase {
    private let rt: Int32 = 40   // a real-time signal (SIGRTMIN is 34 here): each raise is queued
    private var fd: Int32 = -1

    override func setUp() {
        fd = (try? Signal.openFD([SIGUSR1, SIGUSR2, rt])) ?? -1   // blocks them for this thread
    }

    override func tearDown() {
        FD.close(fd)
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGUSR1, SIGUSR2, rt] { sigaddset(&set, s) }
        sigprocmask(SIG_UNBLOCK, &set, nil)
    }

    private func drained() -> [(Int32, Int32)] {
        var got: [(Int32, Int32)] = []
        Signal.drain(fd) { got.append(($0, $1)) }
        return got
    }

    func testNothingPending() {
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertTrue(drained().isEmpty)
    }

    func testTwoSignalsWithTheirSender() {
        raise(SIGUSR2); raise(SIGUSR1)
        let got = drained()
        XCTAssertEqual(got.map { $0.0 }, [SIGUSR1, SIGUSR2], "lower standard signal first")
        XCTAssertEqual(got.map { $0.1 }, [getpid(), getpid()])
        XCTAssertTrue(drained().isEmpty, "each signal comes out once")
    }

    func testMoreThanOneReadTakes() {
        for _ in 0..<19 { raise(rt) }   // 8 + 8 + 3: two full reads, then a short one
        raise(SIGUSR1)
        let got = drained()
        XCTAssertEqual(got.count, 20)
        XCTAssertEqual(got.filter { $0.0 == rt }.count, 19)
        XCTAssertEqual(got.first?.0, SIGUSR1, "standard signals are delivered before real-time ones")
        XCTAssertTrue(drained().isEmpty)
    }
}
