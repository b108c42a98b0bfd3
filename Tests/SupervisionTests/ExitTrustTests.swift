// Tests for ExitTrust.verdict (issue 18): the table of which exit report can be trusted now, and the kernel
// contract it relies on, checked against the real kernel: a process we are not the parent of turns its pidfd
// readable when it exits, but PIDFD_INFO_EXIT appears only once its parent reaped it (EPOLLHUP).
import Supervision
import Sys
import XCTest

final class ExitTrustTests: XCTestCase {
    func v(_ reap: ReapAnswer, _ info: ExitInfoAnswer?, exited: Bool = true, hungUp: Bool = false,
           waited: Int64? = nil) -> ExitVerdict {
        ExitTrust.verdict(reap: reap, info: info, exited: exited, hungUp: hungUp, waitedMs: waited)
    }

    func testOurChildIsExactOrRunning() {
        XCTAssertEqual(v(.reaped(.exited(3)), nil), .exited(.exited(3)))
        XCTAssertEqual(v(.reaped(.signaled(9, coreDumped: false)), nil), .exited(.signaled(9, coreDumped: false)))
        // A spurious wake-up of our own child: not an exit.
        XCTAssertEqual(v(.notExited, nil), .running)
        // The reap's answer wins over whatever the pidfd info would say.
        XCTAssertEqual(v(.reaped(.exited(0)), .known(.exited(5))), .exited(.exited(0)))
    }

    func testNotOurChildWaitsForTheReap() {
        // Readable, not hung up, no exit info: the issue-18 window. Never a status, never -1.
        XCTAssertEqual(v(.notOurChild, .notYet, exited: true, hungUp: false), .awaitReap)
        XCTAssertEqual(v(.notOurChild, .notYet, exited: true, hungUp: false, waited: ExitTrust.reapWaitMs - 1), .awaitReap)
        // Hung up: reaped, the info is there.
        XCTAssertEqual(v(.notOurChild, .known(.exited(3)), exited: true, hungUp: true), .exited(.exited(3)))
        // Info present even before the hang-up was seen (the reap happened between epoll and the ioctl).
        XCTAssertEqual(v(.notOurChild, .known(.signaled(15, coreDumped: false)), exited: true, hungUp: false),
                       .exited(.signaled(15, coreDumped: false)))
        // Not readable at all (a restore's check of a process that still runs).
        XCTAssertEqual(v(.notOurChild, .notYet, exited: false, hungUp: false), .running)
    }

    func testUnknownIsExplicit() {
        // Reaped but no info: looked at again for a moment (the info follows the hang-up), then unknown (a
        // kernel that keeps no exit info), never a code.
        XCTAssertEqual(v(.notOurChild, .notYet, exited: true, hungUp: true), .awaitReap)
        XCTAssertEqual(v(.notOurChild, .notYet, exited: true, hungUp: true, waited: ExitTrust.hangupGraceMs - 1), .awaitReap)
        guard case .unknown = v(.notOurChild, .notYet, exited: true, hungUp: true, waited: ExitTrust.hangupGraceMs) else { return XCTFail() }
        // Never reaped within the bound.
        guard case .unknown(let why) = v(.notOurChild, .notYet, exited: true, waited: ExitTrust.reapWaitMs) else { return XCTFail() }
        XCTAssertTrue(why.contains("not reaped"), why)
        // A kernel without PIDFD_GET_INFO: unknown once it exited; running while it has not.
        guard case .unknown(let why2) = v(.notOurChild, .unsupported(25), exited: true) else { return XCTFail() }
        XCTAssertTrue(why2.contains("6.15"), why2)
        XCTAssertEqual(v(.notOurChild, .unsupported(25), exited: false), .running)
        // waitid failing otherwise: the pidfd info still decides.
        XCTAssertEqual(v(.failed(22), .known(.exited(4))), .exited(.exited(4)))
        guard case .unknown = v(.failed(22), .unsupported(25)) else { return XCTFail() }
    }

    /// The contract against the real kernel: a grandchild whose parent does not reap it.
    func testKernelContractForANonChild() throws {
        XCTAssertTrue(Proc.becomeSubreaper())   // so the orphaned zombie comes to us for the final reap
        let null = try FD.open("/dev/null", flags: FD.readWrite)
        defer { FD.close(null) }
        let out = try FD.pipe()
        defer { FD.close(out.read) }
        // The middle process starts the target, prints its pid, then becomes `sleep`, which never reaps.
        let (_, middle) = try Proc.spawn(SpawnPlan(
            path: "/bin/sh", argv: ["sh", "-c", "(sleep 0.2; exit 3) & echo $!; exec sleep 30"], env: [], cwd: nil,
            stdin: null, stdout: out.write, stderr: null, ids: nil))
        FD.close(out.write)
        defer { _ = try? Proc.signal(pidfd: middle, 9); _ = try? waitReaped(middle); FD.close(middle) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = try FD.readSome(out.read, into: &buf)
        let target = Int32(String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n")[0])!
        let pidfd = try Proc.openPidfd(target)
        defer { FD.close(pidfd) }

        // Running: neither readable nor hung up; no info.
        XCTAssertEqual(Proc.pidfdReadiness(pidfd).exited, false)
        XCTAssertThrowsError(try Proc.reap(pidfd: pidfd)) { XCTAssertEqual(($0 as? SysError)?.errno, ECHILD_) }

        // Exited, not reaped by its parent: readable, not hung up, and no exit info yet.
        try waitUntil { Proc.pidfdReadiness(pidfd).exited }
        XCTAssertFalse(Proc.pidfdReadiness(pidfd).reaped)
        XCTAssertNil(try Proc.exitStatus(pidfd: pidfd))
        XCTAssertEqual(ExitTrust.verdict(reap: .notOurChild, info: .notYet, exited: true, hungUp: false, waitedMs: nil), .awaitReap)

        // Its parent dies; the zombie comes to us (subreaper) and is reaped by pid, not through this pidfd.
        _ = try Proc.signal(pidfd: middle, 9)
        _ = try waitReaped(middle)
        try waitUntil { Proc.reap(pid: target); return Proc.pidfdReadiness(pidfd).reaped }

        // Hung up: the exact status is there for anyone holding the pidfd.
        let r = Proc.pidfdReadiness(pidfd)
        XCTAssertTrue(r.exited && r.reaped)
        let info = try Proc.exitStatus(pidfd: pidfd)
        XCTAssertEqual(info, .exited(3))
        XCTAssertEqual(ExitTrust.verdict(reap: .notOurChild, info: .known(info!), exited: true, hungUp: true, waitedMs: 5),
                       .exited(.exited(3)))
    }

    private func waitUntil(_ cond: () throws -> Bool) throws {
        let end = Clock.monotonicMs() + 10_000
        while try !cond() {
            if Clock.monotonicMs() > end { XCTFail("condition not reached in 10 s"); return }
            _ = try? Poll.wait([], events: 0, timeoutMs: 5)
        }
    }

    private func waitReaped(_ pidfd: Int32) throws -> ExitReport? {
        let end = Clock.monotonicMs() + 10_000
        while Clock.monotonicMs() < end {
            if let r = try Proc.reap(pidfd: pidfd) { return r }
            _ = try? Poll.wait([], events: 0, timeoutMs: 5)
        }
        return nil
    }
}
