// The compact forms a held process's record keeps (issue 17, memory per idle process): the follower set,
// the cgroup leaf kept as a shared directory and a name, the raw rings made when first needed, the
// managed settings and the machine's options behind a reference. Each must read back exactly what was
// stored.
import XCTest
@testable import Server
import Supervision

private final class P: StreamProducer {
    let n: Int
    init(_ n: Int) { self.n = n }
    func pump() {}
    func detach() {}
}

final class ProcessMemoryTests: XCTestCase {
    private func record(stderr: OutputMode = .capture, rawBytes: Int = 4096, managed: ManagedSpec? = nil) -> ProcessRecord {
        var spec = StartSpec(command: "/bin/true", args: [], env: [], workingDir: nil, user: nil)
        spec.stderrMode = stderr
        spec.managed = managed
        let output = OutputStorage(journal: Journal(), rawOut: nil, rawErr: nil, region: nil, lazyRawBytes: rawBytes)
        return ProcessRecord(server: nil, handle: 1, spec: spec, output: output, machine: ProcessMachine(policy: nil, pipesOpen: true))
    }

    func testFollowerSetKeepsOrderAndRemovesByIdentity() {
        var s = FollowerSet()
        XCTAssertTrue(s.isEmpty)
        let ps = (0..<5).map(P.init)
        for p in ps { s.insert(p) }
        XCTAssertEqual(s.count, 5)
        XCTAssertEqual(s.map { ($0 as! P).n }, [0, 1, 2, 3, 4])
        s.remove(ps[2]); s.remove(ps[0])
        XCTAssertEqual(s.map { ($0 as! P).n }, [1, 3, 4])
        s.remove(ps[0])                                  // absent: nothing
        s.remove(P(3))                                   // an equal number, another object: nothing
        XCTAssertEqual(s.count, 3)
        for p in ps { s.remove(p) }
        XCTAssertTrue(s.isEmpty)
    }

    func testCgroupLeafReadsBackWhatWasSet() {
        let r = record()
        XCTAssertNil(r.cgroupLeaf)
        let dir = "/sys/fs/cgroup/tendd.service/tendd-42"
        r.setCgroupLeaf(dir + "/l17", sharing: dir)                       // the daemon's own leaf
        XCTAssertEqual(r.cgroupLeaf, dir + "/l17")
        r.setCgroupLeaf("/sys/fs/cgroup/tendd.service/tendd-7/l3", sharing: dir)   // a previous daemon's
        XCTAssertEqual(r.cgroupLeaf, "/sys/fs/cgroup/tendd.service/tendd-7/l3")
        r.setCgroupLeaf(dir + "/a/b", sharing: dir)                       // deeper than a leaf name
        XCTAssertEqual(r.cgroupLeaf, dir + "/a/b")
        r.setCgroupLeaf(dir + "0/l1", sharing: dir)                       // a sibling with the same prefix
        XCTAssertEqual(r.cgroupLeaf, dir + "0/l1")
        r.setCgroupLeaf("/l1", sharing: nil)                              // fallback mode has no directory
        XCTAssertEqual(r.cgroupLeaf, "/l1")
        r.setCgroupLeaf(nil, sharing: dir)
        XCTAssertNil(r.cgroupLeaf)
    }

    func testRawRingsAreMadeWhenFirstNeeded() {
        let r = record(stderr: .discard)
        XCTAssertNil(r.rawIfMade(.stdout))                                // a quiet stream has none
        let ring = r.raw(.stdout)
        XCTAssertEqual(ring?.capacity, 4096)
        XCTAssertTrue(r.rawIfMade(.stdout) === ring)                     // made once
        XCTAssertTrue(r.raw(.stdout) === ring)
        XCTAssertNil(r.raw(.stderr))                                      // not captured: no raw view
        XCTAssertNil(record(rawBytes: 0).raw(.stdout))                    // raw view off
    }

    func testManagedSettingsAndMachineOptionsReadBack() {
        var m = ManagedSpec()
        m.name = "web"
        m.stopGraceMs = 1234
        let r = record(managed: m)
        XCTAssertEqual(r.spec.managed?.name, "web")
        XCTAssertEqual(r.spec.managed?.stopGraceMs, 1234)
        XCTAssertNil(record().spec.managed)
        var spec = r.spec
        spec.managed = nil
        XCTAssertNil(spec.managed)
        XCTAssertEqual(r.spec.managed?.name, "web")                       // a copy changed, not the record

        let plain = ProcessMachine(policy: nil, stopGraceMs: 5, drainMs: 7, pipesOpen: true)
        XCTAssertNil(plain.policy); XCTAssertNil(plain.healthCheck); XCTAssertNil(plain.timeoutMs)
        XCTAssertEqual(plain.stopGraceMs, 5); XCTAssertEqual(plain.drainMs, 7)
        let run = ProcessMachine(policy: nil, healthCheck: (initialDelayMs: 1, intervalMs: 2, failureThreshold: 3),
                                 timeoutMs: 900, pipesOpen: true)
        XCTAssertEqual(run.timeoutMs, 900)
        XCTAssertEqual(run.healthCheck?.intervalMs, 2)
        XCTAssertEqual(run.healthCheck?.failureThreshold, 3)
        XCTAssertEqual(run.begin(), [.arm(.health, ms: 1), .arm(.timeout, ms: 900)])
    }
}
