// The process lifecycle as a table (like s6-supervise's actions[state][event]): each row puts a machine in
// a state, feeds one event and checks the next state and the exact actions. Then the policy pieces
// (restart policy × exit, back-off sequence and its reset, restart limit, health threshold) and a few
// whole stories (a managed process that crashes, backs off, is restarted and stopped).
import XCTest
@testable import Supervision

final class ProcessMachineTests: XCTestCase {
    typealias S = ProcessMachine.State
    typealias E = ProcessMachine.Event
    typealias A = ProcessMachine.Action

    private func policy(_ k: RestartPolicy.Kind, initial: Int64 = 100, max: Int64 = 1000, maxRestarts: Int? = nil) -> RestartPolicy {
        var p = RestartPolicy()
        p.kind = k
        p.initialBackoffMs = initial
        p.maxBackoffMs = max
        p.maxRestarts = maxRestarts
        return p
    }

    private func machine(_ state: S, policy: RestartPolicy? = nil, pipesOpen: Bool = true,
                         health: (Int64, Int64, Int)? = nil, restarts: Int = 0) -> ProcessMachine {
        ProcessMachine(restoring: state, policy: policy, stopGraceMs: 3000,
                       healthCheck: health.map { (initialDelayMs: $0.0, intervalMs: $0.1, failureThreshold: $0.2) },
                       drainMs: 2000, restartCount: restarts, backoffStep: 0, health: health == nil ? .disabled : .starting,
                       healthFailures: 0, pipesOpen: pipesOpen, stopReason: nil)
    }

    /// (name, machine, event, next state, actions)
    private var table: [(String, ProcessMachine, E, S, [A])] {
        let always = policy(.always)
        let exit0 = E.leaderExited(cleanly: true, runtimeMs: 5)
        let exit1 = E.leaderExited(cleanly: false, runtimeMs: 5)
        let reaped: [A] = [.cancel(.grace), .cancel(.health), .answerExitWaiters]
        return [
            // A plain process.
            ("plain exit, pipes open", machine(.running(then: .policy)), exit0, .draining,
             reaped + [.retire, .arm(.drain, ms: 2000), .persist]),
            ("plain exit, pipes closed", machine(.running(then: .policy), pipesOpen: false), exit1, .exited,
             reaped + [.retire, .finishOutput, .persist]),
            ("pipes close while draining", machine(.draining), .outputClosed, .exited, [.cancel(.drain), .finishOutput, .persist]),
            ("drain time passes", machine(.draining), .drainElapsed, .draining, [.closeOutput]),
            ("DELETE a plain process: KILL at once", machine(.running(then: .policy)), .stopRequested(Teardown(graceMs: 0)),
             .stopping(then: .stop), [.cancel(.health), .signalTree(9), .persist]),
            ("stop with grace: TERM then KILL", machine(.running(then: .policy)), .stopRequested(Teardown(graceMs: 500)),
             .stopping(then: .stop), [.cancel(.health), .signalTree(15), .arm(.grace, ms: 500), .persist]),
            ("grace elapses", machine(.stopping(then: .stop)), .graceElapsed, .stopping(then: .stop), [.signalTree(9)]),
            ("grace after the exit: nothing", machine(.draining), .graceElapsed, .draining, []),
            ("second stop with no grace kills", machine(.stopping(then: .stop)), .stopRequested(Teardown(graceMs: 0)),
             .stopping(then: .stop), [.cancel(.grace), .signalTree(9), .persist]),
            ("stop of an exited record: nothing", machine(.exited), .stopRequested(Teardown(graceMs: 0)), .exited, []),
            ("a stopped process exits: no restart even with a policy", machine(.stopping(then: .stop), policy: always), exit1,
             .draining, reaped + [.retire, .arm(.drain, ms: 2000), .persist]),
            // One-shot runs.
            ("run times out", machine(.running(then: .policy)), .timedOut, .stopping(then: .stop),
             [.cancel(.grace), .signalTree(9), .persist]),
            ("run's client leaves", machine(.running(then: .policy)), .clientLeft, .stopping(then: .stop),
             [.cancel(.grace), .signalTree(9)]),
            ("client leaves after the exit: nothing", machine(.draining), .clientLeft, .draining, []),
            // Managed: policy decisions.
            ("always: crash backs off", machine(.running(then: .policy), policy: always), exit1, .backingOff,
             reaped + [.arm(.backoff, ms: 100), .persist]),
            ("on_failure: clean exit stops", machine(.running(then: .policy), policy: policy(.on_failure)), exit0, .draining,
             reaped + [.retire, .arm(.drain, ms: 2000), .persist]),
            ("never: crash stops", machine(.running(then: .policy), policy: policy(.never), pipesOpen: false), exit1, .exited,
             reaped + [.retire, .finishOutput, .persist]),
            ("restart limit reached: stops", machine(.running(then: .policy), policy: policy(.always, maxRestarts: 2), restarts: 2),
             exit1, .draining, reaped + [.retire, .arm(.drain, ms: 2000), .persist]),
            ("back-off elapses: launch", machine(.backingOff, policy: always), .backoffElapsed, .launching, [.launch]),
            ("launched", machine(.launching, policy: always), .launched(pipesOpen: true), .running(then: .policy),
             [.answerRestartWaiters, .persist]),
            ("launched with a health check", machine(.launching, policy: always, health: (700, 50, 2)), .launched(pipesOpen: true),
             .running(then: .policy), [.answerRestartWaiters, .arm(.health, ms: 700), .persist]),
            ("launch fails: back off again", machine(.launching, policy: always), .launchFailed, .backingOff,
             [.answerRestartWaiters, .arm(.backoff, ms: 100), .persist]),
            ("launch fails at the limit: stop", machine(.launching, policy: policy(.always, maxRestarts: 1), restarts: 1),
             .launchFailed, .exited, [.answerRestartWaiters, .retire, .finishOutput, .persist]),
            ("stop while backing off", machine(.backingOff, policy: always, pipesOpen: false), .stopRequested(Teardown(graceMs: 3000)),
             .exited, [.cancel(.backoff), .retire, .finishOutput, .persist]),
            // Managed: restart requests.
            ("restart a running process: TERM, grace", machine(.running(then: .policy), policy: always), .restartRequested,
             .stopping(then: .restart), [.cancel(.health), .signalTree(15), .arm(.grace, ms: 3000), .persist]),
            ("restart wins over a stop in progress", machine(.stopping(then: .stop), policy: always), .restartRequested,
             .stopping(then: .restart), [.persist]),
            ("exit after a restart request: launch now", machine(.stopping(then: .restart), policy: always), exit0, .launching,
             reaped + [.launch, .persist]),
            ("restart while backing off: launch now", machine(.backingOff, policy: always), .restartRequested, .launching,
             [.cancel(.backoff), .launch]),
            ("restart an exited record", machine(.exited, policy: always), .restartRequested, .launching,
             [.cancel(.drain), .unretire, .launch]),
            // Managed: health.
            ("health passes: probe again", machine(.running(then: .policy), policy: always, health: (700, 50, 2)), .healthPassed,
             .running(then: .policy), [.arm(.health, ms: 50), .persist]),
            ("health fails below the threshold", machine(.running(then: .policy), policy: always, health: (700, 50, 2)), .healthFailed,
             .running(then: .policy), [.arm(.health, ms: 50)]),
            ("health result after the exit: nothing", machine(.backingOff, policy: always, health: (700, 50, 2)), .healthFailed,
             .backingOff, []),
            // Late or duplicate facts change nothing.
            ("second exit", machine(.exited), exit0, .exited, []),
            ("back-off timer after a stop", machine(.exited, policy: always), .backoffElapsed, .exited, []),
            ("launched twice", machine(.running(then: .policy), policy: always), .launched(pipesOpen: true), .running(then: .policy), []),
        ]
    }

    func testTransitionTable() {
        for (name, m0, event, want, actions) in table {
            var m = m0
            let got = m.handle(event)
            XCTAssertEqual(m.state, want, name)
            XCTAssertEqual(got, actions, name)
        }
    }

    /// Every state × every event is handled without a trap (the switch is exhaustive by construction; this
    /// checks that no cell leaves the machine in a state that breaks its invariants).
    func testEveryCellKeepsTheInvariants() {
        let states: [S] = [.running(then: .policy), .running(then: .restart), .running(then: .stop),
                           .stopping(then: .policy), .stopping(then: .restart), .stopping(then: .stop),
                           .launching, .backingOff, .draining, .exited]
        let events: [E] = [.leaderExited(cleanly: true, runtimeMs: 1), .leaderExited(cleanly: false, runtimeMs: 20_000),
                           .outputClosed, .drainElapsed, .stopRequested(Teardown(graceMs: 0)), .stopRequested(Teardown(graceMs: 9)),
                           .restartRequested, .graceElapsed, .backoffElapsed, .healthPassed, .healthFailed, .timedOut,
                           .clientLeft, .launched(pipesOpen: true), .launched(pipesOpen: false), .launchFailed]
        for st in states {
            for pol in [nil, policy(.always, maxRestarts: 3)] {
                // States a plain process can never reach (only a managed one restarts).
                if pol == nil && [S.running(then: .restart), .stopping(then: .restart), .launching, .backingOff].contains(st) { continue }
                for ev in events {
                    var m = machine(st, policy: pol, health: (10, 10, 1))
                    let actions = m.handle(ev)
                    // A launch is only ever asked for from the launching state, and a finished machine has
                    // no leader and no pipes.
                    if actions.contains(.launch) { XCTAssertEqual(m.state, .launching, "\(st) \(ev)") }
                    if m.isFinished { XCTAssertFalse(m.leaderAlive) }
                    if actions.contains(.finishOutput) { XCTAssertEqual(m.state, .exited, "\(st) \(ev)") }
                    // A plain process never relaunches by itself.
                    if pol == nil && ev != .restartRequested { XCTAssertFalse(actions.contains(.launch), "\(st) \(ev)") }
                }
            }
        }
    }

    func testRestartPolicyTable() {
        let table: [(RestartPolicy.Kind, Bool, Bool)] = [
            (.never, true, false), (.never, false, false),
            (.on_failure, true, false), (.on_failure, false, true),
            (.always, true, true), (.always, false, true),
        ]
        for (k, clean, want) in table {
            XCTAssertEqual(policy(k).wantsRestart(exitedCleanly: clean), want, "\(k) clean=\(clean)")
        }
    }

    func testBackoffDoublesUpToTheCapAndResetsAfterALongRun() {
        var m = machine(.running(then: .policy), policy: policy(.always, initial: 100, max: 1000), pipesOpen: false)
        var delays: [Int64] = []
        for _ in 0..<6 {
            for a in m.handle(.leaderExited(cleanly: false, runtimeMs: 50)) { if case .arm(.backoff, let ms) = a { delays.append(ms) } }
            _ = m.handle(.backoffElapsed)
            _ = m.handle(.launched(pipesOpen: false))
        }
        XCTAssertEqual(delays, [100, 200, 400, 800, 1000, 1000])
        XCTAssertEqual(m.restartCount, 6)
        let long = m.handle(.leaderExited(cleanly: false, runtimeMs: RestartPolicy.backoffResetMs))
        XCTAssertTrue(long.contains(.arm(.backoff, ms: 100)), "a long run resets the sequence: \(long)")
        XCTAssertEqual(policy(.always, initial: 0, max: 0).backoff(step: 3), 0)
    }

    func testHealthFailuresAtTheThresholdKillForARestart() {
        var m = machine(.running(then: .policy), policy: policy(.always), health: (10, 50, 3))
        XCTAssertEqual(m.handle(.healthFailed), [.arm(.health, ms: 50)])
        XCTAssertEqual(m.handle(.healthFailed), [.arm(.health, ms: 50)])
        XCTAssertEqual(m.handle(.healthFailed), [.signalTree(9), .persist])
        XCTAssertEqual(m.state, .stopping(then: .restart))
        XCTAssertEqual(m.health, .unhealthy)
        // Under `never` the process is only marked unhealthy.
        var n = machine(.running(then: .policy), policy: policy(.never), health: (10, 50, 1))
        XCTAssertEqual(n.handle(.healthFailed), [.arm(.health, ms: 50), .persist])
        XCTAssertEqual(n.state, .running(then: .policy))
        XCTAssertEqual(n.health, .unhealthy)
        // A pass resets the count.
        var o = machine(.running(then: .policy), policy: policy(.always), health: (10, 50, 2))
        _ = o.handle(.healthFailed)
        _ = o.handle(.healthPassed)
        XCTAssertEqual(o.healthFailures, 0)
        XCTAssertEqual(o.health, .healthy)
    }

    func testAManagedStory() {
        // Starts, crashes, backs off, relaunches, is restarted by request, then stopped by DELETE.
        var m = ProcessMachine(policy: policy(.on_failure), stopGraceMs: 250, pipesOpen: true)
        XCTAssertEqual(m.begin(), [])
        _ = m.handle(.leaderExited(cleanly: false, runtimeMs: 3))
        XCTAssertEqual(m.state, .backingOff)
        XCTAssertEqual(m.handle(.backoffElapsed), [.launch])
        _ = m.handle(.launched(pipesOpen: true))
        XCTAssertEqual(m.restartCount, 1)
        _ = m.handle(.restartRequested)
        _ = m.handle(.graceElapsed)
        XCTAssertEqual(m.handle(.leaderExited(cleanly: false, runtimeMs: 300)).last, .persist)
        XCTAssertEqual(m.state, .launching)
        _ = m.handle(.launched(pipesOpen: true))
        XCTAssertEqual(m.restartCount, 2)
        XCTAssertEqual(m.handle(.stopRequested(Teardown(graceMs: 250))), [.cancel(.health), .signalTree(15), .arm(.grace, ms: 250), .persist])
        _ = m.handle(.leaderExited(cleanly: true, runtimeMs: 400))
        XCTAssertEqual(m.state, .draining)
        XCTAssertTrue(m.isRetired)
        _ = m.handle(.outputClosed)
        XCTAssertTrue(m.isFinished)
    }

    func testTimersOfANewAndOfARestoredMachine() {
        let run = ProcessMachine(policy: nil, timeoutMs: 1500, pipesOpen: true)
        XCTAssertEqual(run.begin(), [.arm(.timeout, ms: 1500)])
        XCTAssertEqual(machine(.backingOff, policy: policy(.always)).resume(backoffLeftMs: 40), [.arm(.backoff, ms: 40)])
        XCTAssertEqual(machine(.backingOff, policy: policy(.always)).resume(backoffLeftMs: -5), [.arm(.backoff, ms: 0)])
        XCTAssertEqual(machine(.stopping(then: .stop)).resume(backoffLeftMs: 0), [.signalTree(15), .arm(.grace, ms: 3000)])
        XCTAssertEqual(machine(.draining).resume(backoffLeftMs: 0), [.arm(.drain, ms: 2000)])
        XCTAssertEqual(machine(.running(then: .policy), health: (700, 50, 2)).resume(backoffLeftMs: 0), [.arm(.health, ms: 50)])
        XCTAssertEqual(machine(.exited).resume(backoffLeftMs: 0), [])
    }
}
