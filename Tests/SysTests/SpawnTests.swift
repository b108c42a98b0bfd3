// Sys and Reactor against the real kernel: spawn through the C shim, pidfd reap, pipes through the
// event loop stepped one runOnce at a time, timers in order, and no leaked fds at the end.
import XCTest
@testable import Sys
@testable import Reactor

final class SpawnTests: XCTestCase {
    var fdsBefore = 0
    override func setUp() { fdsBefore = FD.openCount() }
    override func tearDown() { XCTAssertEqual(FD.openCount(), fdsBefore, "fd leak") }

    private func devNull() throws -> Int32 { try FD.open("/dev/null", flags: FD.readWrite) }

    private func waitExit(_ pidfd: Int32) throws -> ExitReport {
        for _ in 0..<500 {
            if let r = try Proc.reap(pidfd: pidfd) { return r }
            usleep(10_000)
        }
        XCTFail("child did not exit")
        return .exited(-1)
    }

    func testExitCodeAndSignal() throws {
        let null = try devNull()
        defer { FD.close(null) }
        let (_, pidfd) = try Proc.spawn(SpawnPlan(path: "/bin/sh", argv: ["sh", "-c", "exit 7"], env: [], cwd: nil,
                                                  stdin: null, stdout: null, stderr: null, ids: nil))
        XCTAssertEqual(try waitExit(pidfd), .exited(7))
        FD.close(pidfd)
        let (_, pidfd2) = try Proc.spawn(SpawnPlan(path: "/bin/sleep", argv: ["sleep", "10"], env: [], cwd: nil,
                                                   stdin: null, stdout: null, stderr: null, ids: nil))
        XCTAssertTrue(try Proc.signal(pidfd: pidfd2, 9))
        XCTAssertEqual(try waitExit(pidfd2), .signaled(9, coreDumped: false))
        FD.close(pidfd2)
    }

    func testExecFailureIsReported() throws {
        let null = try devNull()
        defer { FD.close(null) }
        XCTAssertThrowsError(try Proc.spawn(SpawnPlan(path: "/nonexistent/x", argv: ["x"], env: [], cwd: nil,
                                                      stdin: null, stdout: null, stderr: null, ids: nil))) { e in
            let f = e as? SpawnFailure
            XCTAssertEqual(f?.step, "execve")
            XCTAssertEqual(f?.errno, ENOENT)
        }
        XCTAssertThrowsError(try Proc.spawn(SpawnPlan(path: "/bin/true", argv: ["true"], env: [], cwd: "/nonexistent-dir",
                                                      stdin: null, stdout: null, stderr: null, ids: nil))) { e in
            XCTAssertEqual((e as? SpawnFailure)?.step, "chdir")
        }
    }

    func testChildIsSessionLeaderWithCleanFdsAndEnv() throws {
        let null = try devNull()
        defer { FD.close(null) }
        let p = try FD.pipe()
        try FD.setBlocking(p.write)
        // Prints: its sid == pid check, its open fds, and an env var.
        let script = "[ \"$(cut -d' ' -f6 /proc/$$/stat)\" = $$ ] && echo leader; ls /proc/$$/fd | tr '\\n' ' '; echo; echo \"$FOO\""
        let (_, pidfd) = try Proc.spawn(SpawnPlan(path: "/bin/sh", argv: ["sh", "-c", script], env: ["FOO=bar"], cwd: "/",
                                                  stdin: null, stdout: p.write, stderr: null, ids: nil))
        FD.close(p.write)
        XCTAssertEqual(try waitExit(pidfd), .exited(0))
        FD.close(pidfd)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while case .bytes(let n) = try buf.withUnsafeMutableBytes({ try FD.read(p.read, into: $0) }) { out += buf[0..<n] }
        FD.close(p.read)
        let lines = String(decoding: out, as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.first, "leader")
        // fds 0, 1, 2 and the one `ls` opens for /proc/$$/fd (which is the shell's: ls is a child) -> only 0 1 2 (+255 for some shells)
        let fds = Set(lines[1].split(separator: " ").map(String.init))
        XCTAssertTrue(fds.isSubset(of: ["0", "1", "2", "255"]), "unexpected fds \(fds)")
        XCTAssertEqual(lines.last, "bar")
    }

    /// argv and envp reach the child byte for byte (one packed block: empty strings, UTF-8, many entries).
    func testArgvAndEnvironmentBlock() throws {
        let null = try devNull()
        defer { FD.close(null) }
        let p = try FD.pipe()
        try FD.setBlocking(p.write)
        var env = (0..<200).map { "V\($0)=value-\($0)" }
        env += ["EMPTY=", "UTF=h\u{e9}llo \u{1F600}"]
        let args = ["", "two words", "\u{e9}t\u{e9}", String(repeating: "x", count: 5000)]
        // Prints each argument's length in bytes (dash, no locale), then the environment the child got, one per line.
        let script = "for a in \"$@\"; do printf '%s\\n' \"${#a}:$a\" | cut -c1-40; done; env"
        let (_, pidfd) = try Proc.spawn(SpawnPlan(path: "/bin/sh", argv: ["sh", "-c", script, "sh"] + args, env: env, cwd: "/",
                                                  stdin: null, stdout: p.write, stderr: null, ids: nil))
        FD.close(p.write)
        XCTAssertEqual(try waitExit(pidfd), .exited(0))   // its few KiB of output wait in the pipe
        FD.close(pidfd)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while case .bytes(let n) = try buf.withUnsafeMutableBytes({ try FD.read(p.read, into: $0) }) { out += buf[0..<n] }
        FD.close(p.read)
        let lines = String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(Array(lines.prefix(4)), ["0:", "9:two words", "5:\u{e9}t\u{e9}", "5000:" + String(repeating: "x", count: 35)])
        let got = Set(lines.dropFirst(4).filter { !$0.isEmpty && !$0.hasPrefix("PWD=") && !$0.hasPrefix("SHLVL=") && !$0.hasPrefix("_=") })
        XCTAssertEqual(got, Set(env))
    }

    func testResolveExecutable() {
        XCTAssertEqual(Proc.resolveExecutable("sh", path: "/nonexistent:/bin", cwd: nil), "/bin/sh")
        XCTAssertNil(Proc.resolveExecutable("no-such-command-xyz", path: "/bin:/usr/bin", cwd: nil))
        XCTAssertEqual(Proc.resolveExecutable("./x", path: "/bin", cwd: "/tmp"), "/tmp/./x")
    }

    func testListenAddressParse() {
        XCTAssertEqual(ListenAddress.parse("127.0.0.1:9501"), .tcp(host: "127.0.0.1", port: 9501))
        XCTAssertEqual(ListenAddress.parse("[::1]:80"), .tcp(host: "::1", port: 80))
        XCTAssertEqual(ListenAddress.parse(":9501"), .tcp(host: "0.0.0.0", port: 9501))
        XCTAssertEqual(ListenAddress.parse("unix:/run/t.sock"), .unix(path: "/run/t.sock"))
        XCTAssertNil(ListenAddress.parse("127.0.0.1"))
        XCTAssertNil(ListenAddress.parse("1.2.3.4:99999"))
        XCTAssertNil(ListenAddress.parse("unix:"))
    }

    /// FD.childPipe: both ends close-on-exec, only our end non-blocking.
    func testChildPipeFlags() throws {
        for end in [FD.ChildEnd.read, .write] {
            let p = try FD.childPipe(childEnd: end, size: 1 << 16)
            defer { FD.close(p.read); FD.close(p.write) }
            let (child, ours) = end == .read ? (p.read, p.write) : (p.write, p.read)
            XCTAssertEqual(fcntl(child, F_GETFL) & O_NONBLOCK, 0, "the child's end blocks")
            XCTAssertNotEqual(fcntl(ours, F_GETFL) & O_NONBLOCK, 0, "our end does not")
            for fd in [child, ours] { XCTAssertNotEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0) }
        }
    }

    /// CLONE_FILES with the plan's fds used where they are (no parking): the child still ends up with
    /// exactly 0, 1, 2 and its stdout is the pipe.
    func testSharedFilesSpawnKeepsOnlyStdio() throws {
        let null = try devNull()
        defer { FD.close(null) }
        let p = try FD.childPipe(childEnd: .write)
        defer { FD.close(p.read) }
        var plan = SpawnPlan(path: "/bin/sh", argv: ["sh", "-c", "ls /proc/$$/fd"], env: [], cwd: nil,
                             stdin: null, stdout: p.write, stderr: null, ids: nil)
        plan.keepBelow = UInt32(max(null, p.write) + 1)
        let (_, pidfd) = try Proc.spawn(plan)
        FD.close(p.write)
        XCTAssertEqual(try waitExit(pidfd), .exited(0))
        FD.close(pidfd)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 256)
        while true {
            let r = try buf.withUnsafeMutableBytes { try FD.read(p.read, into: $0) }
            guard case .bytes(let n) = r else { break }
            out += buf[..<n]
        }
        // The shell's fds (`ls` is its child; no pipeline, whose pipe the shell may still hold): only 0 1 2
        // (+255 for some shells), none of the low fds the plan's fds sat above.
        let fds = Set(String(decoding: out, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        XCTAssertTrue(fds.isSuperset(of: ["0", "1", "2"]) && fds.isSubset(of: ["0", "1", "2", "255"]), "unexpected fds \(fds)")
    }
}

final class EventLoopTests: XCTestCase {
    final class Recorder: EventHandler {
        var events: [EpollEvents] = []
        func handle(_ e: EpollEvents, _ loop: EventLoop) { events.append(e) }
    }

    func testPipeReadinessAndStaleRegistration() throws {
        let before = FD.openCount()
        do {
            let loop = try EventLoop()
            let p = try FD.pipe()
            let r = Recorder()
            let reg = try loop.register(p.read, .input, handler: r)
            try loop.runOnce(maxWaitMs: 0)
            XCTAssertTrue(r.events.isEmpty)
            _ = try FD.write(p.write, [1, 2, 3], from: 0)
            try loop.runOnce(maxWaitMs: 100)
            XCTAssertEqual(r.events.count, 1)
            XCTAssertTrue(r.events[0].contains(.input))
            loop.deregister(reg)
            try loop.runOnce(maxWaitMs: 0)
            XCTAssertEqual(r.events.count, 1, "no event after deregister")
            // The slot is reused with a new generation.
            let r2 = Recorder()
            let reg2 = try loop.register(p.read, .input, handler: r2)
            XCTAssertEqual(reg2.slot, reg.slot)
            XCTAssertNotEqual(reg2.generation, reg.generation)
            try loop.runOnce(maxWaitMs: 100)
            XCTAssertEqual(r2.events.count, 1)
            loop.deregister(reg2)
            XCTAssertEqual(loop.registrationCount, 0)
            FD.close(p.read); FD.close(p.write)
        }
        XCTAssertEqual(FD.openCount(), before)
    }

    func testTimersFireInDeadlineThenCreationOrderAndCancel() throws {
        let loop = try EventLoop()
        var fired: [Int] = []
        let base = loop.now
        loop.schedule(at: base + 20) { fired.append(3) }
        loop.schedule(at: base + 10) { fired.append(1) }
        loop.schedule(at: base + 10) { fired.append(2) }
        let c = loop.schedule(at: base + 15) { fired.append(99) }
        loop.cancel(c)
        let deadline = Clock.monotonicMs() + 1000
        while fired.count < 3 && Clock.monotonicMs() < deadline { try loop.runOnce(maxWaitMs: 50) }
        XCTAssertEqual(fired, [1, 2, 3])
        XCTAssertEqual(loop.timerCount, 0)
    }

    func testDeferredWorkRunsBeforeSleeping() throws {
        let loop = try EventLoop()
        var order: [String] = []
        loop.addBeforeSleep { order.append("sleep") }
        loop.defer_ { order.append("deferred") }
        try loop.runOnce(maxWaitMs: 1000)   // must not block: deferred work is pending
        XCTAssertEqual(order, ["deferred", "sleep"])
    }

}
