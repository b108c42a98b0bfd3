// ProcessMachine: the lifecycle of one supervised process as a pure state machine, in the manner of
// s6-supervise's actions[state][event] table. `handle(_:)` takes a fact that happened (an event, named
// in the past tense) and returns the new state and what must be done (actions, imperatives). It does no
// I/O, reads no clock and holds no fds: the Server's `Lifecycle` performs the actions (spawn, signal the
// tree, arm and cancel timers, finish the streams, answer waiting requests, persist) and feeds the
// outcome of the ones that can fail (a spawn) back as events.
//
// One machine covers every kind of process: a plain one (no restart policy), a managed one (policy,
// back-off, health checks, restart requests) and a one-shot run (its timeout and its client leaving are
// events). The teardown is data (`Teardown`: TERM, a grace period, KILL), not code written per caller.
//
//   state        running(then)   stopping(then)   launching      backingOff   draining     exited
//   event
//   leaderExited  decide(then)    decide(then)     -              -            -            -
//   outputClosed  -               -                -              -            exited+eof   -
//   drainElapsed  -               -                -              -            closeOutput  -
//   stop(g)       teardown(g)     kill if g=0      -              drain/exit   -            -
//   restart       teardown(grace) then=restart     -              launch       launch       launch
//   graceElapsed  -               KILL             -              -            -            -
//   backoffElapsed -              -                -              launch       -            -
//   healthPassed  rearm probe     rearm probe      -              -            -            -
//   healthFailed  count; at the threshold KILL and then=restart (if a restart is allowed)
//   timedOut      KILL, then=stop KILL, then=stop  -              -            -            -
//   clientLeft    KILL, then=stop KILL, then=stop  -              -            -            -
//   launched      -               -                running        -            -            -
//   launchFailed  -               -                backoff/exit   -            -            -
//
// decide(then): `.stop` or no policy -> draining (or exited when no pipe is open); `.restart` -> launch
// now; `.policy` -> launch after a back-off, or stop when the policy says no or the restart limit is
// reached. "-" cells change nothing and do nothing (late or duplicate facts are harmless).

/// What a restart policy decides from (protocol.md §3.5).
public struct RestartPolicy: Equatable, Sendable {
    public enum Kind: String, Sendable { case never, on_failure, always }
    public var kind: Kind = .on_failure
    public var maxRestarts: Int? = nil
    public var initialBackoffMs: Int64 = 500
    public var maxBackoffMs: Int64 = 30_000
    /// A run that stayed up this long resets the back-off sequence.
    public static let backoffResetMs: Int64 = 10_000
    public init() {}

    /// The delay before the `step`-th consecutive restart (0-based): initial * 2^step, capped.
    public func backoff(step: Int) -> Int64 {
        let cap = max(maxBackoffMs, initialBackoffMs)
        var d = max(0, initialBackoffMs)
        for _ in 0..<min(step, 40) { d = min(d * 2, cap) }
        return min(d, cap)
    }

    public func wantsRestart(exitedCleanly: Bool) -> Bool {
        switch kind {
        case .never: return false
        case .on_failure: return !exitedCleanly
        case .always: return true
        }
    }
}

/// How a process is stopped: TERM, then KILL once `graceMs` has passed (0: KILL at once).
public struct Teardown: Equatable, Sendable {
    public var graceMs: Int64
    public init(graceMs: Int64) { self.graceMs = graceMs }
    /// The first signal and, if any, how long to wait before KILL.
    var first: (signal: Int32, killAfterMs: Int64?) {
        graceMs <= 0 ? (ProcessMachine.sigkill, nil) : (ProcessMachine.sigterm, graceMs)
    }
}

public struct ProcessMachine: Equatable, Sendable {
    static let sigterm: Int32 = 15
    static let sigkill: Int32 = 9

    public enum State: Equatable, Sendable {
        /// The leader is alive; `then` says what its exit leads to.
        case running(then: AfterExit)
        /// The leader is alive and was sent TERM (KILL is armed) or KILL.
        case stopping(then: AfterExit)
        /// A run is being spawned (a restart); `launched` or `launchFailed` follows.
        case launching
        /// A managed process waits for its back-off timer before the next run.
        case backingOff
        /// The leader was reaped and nothing follows it; output pipes are still open.
        case draining
        /// Final: the leader was reaped, all output is captured, no run follows (until a restart request).
        case exited
    }

    /// What the current run's exit leads to.
    public enum AfterExit: Equatable, Sendable {
        case policy     // whatever the restart policy says (a plain process: nothing)
        case restart    // a restart was requested (API, failed health check): run again at once
        case stop       // DELETE, shutdown, run timeout or a run's client leaving: nothing follows
    }

    public enum Event: Equatable, Sendable {
        case leaderExited(cleanly: Bool, runtimeMs: Int64)
        case outputClosed
        case drainElapsed
        case stopRequested(Teardown)
        case restartRequested
        case graceElapsed
        case backoffElapsed
        case healthPassed
        case healthFailed
        case timedOut
        case clientLeft
        case launched(pipesOpen: Bool)
        case launchFailed
    }

    public enum Timer: Equatable, Hashable, Sendable { case grace, drain, backoff, health, timeout }

    public enum Action: Equatable, Sendable {
        case signalTree(Int32)
        case arm(Timer, ms: Int64)
        case cancel(Timer)
        /// Spawn the next run (the previous run's pipes are drained and closed first).
        case launch
        /// The drain time passed: take what the pipes hold and close them (`outputClosed` follows).
        case closeOutput
        /// All output is captured and nothing follows: streams may end (eof, a run's exit event).
        case finishOutput
        /// The leader was reaped: answer requests waiting for that (DELETE).
        case answerExitWaiters
        /// A requested restart succeeded or failed: answer its requests.
        case answerRestartWaiters
        /// The record left (or re-entered) the set of live processes: bookkeeping of exited records.
        case retire
        case unretire
        case persist
    }

    public enum Health: String, Equatable, Sendable { case disabled, starting, healthy, unhealthy }

    public private(set) var state: State
    /// nil: a plain process or a run (nothing restarts it).
    public var policy: RestartPolicy? { options?.policy }
    public let stopGraceMs: Int64
    public var healthCheck: (initialDelayMs: Int64, intervalMs: Int64, failureThreshold: Int)? { options?.healthCheck }
    /// How long streams wait for pipes still held by descendants after the leader's exit.
    public let drainMs: Int64
    /// A one-shot run's timeout.
    public var timeoutMs: Int64? { options?.timeoutMs }
    /// The settings only a managed process or a run has (nil for a plain process). perf(memory): kept
    /// behind one reference, so that the machine of each of thousands of plain processes does not carry
    /// room for them (about 80 bytes).
    private let options: Options?
    private final class Options: Sendable {
        let policy: RestartPolicy?
        let healthCheck: (initialDelayMs: Int64, intervalMs: Int64, failureThreshold: Int)?
        let timeoutMs: Int64?
        init(policy: RestartPolicy?, healthCheck: (initialDelayMs: Int64, intervalMs: Int64, failureThreshold: Int)?, timeoutMs: Int64?) {
            self.policy = policy; self.healthCheck = healthCheck; self.timeoutMs = timeoutMs
        }
    }
    public private(set) var restartCount = 0
    public private(set) var backoffStep = 0
    public private(set) var health: Health
    public private(set) var healthFailures = 0
    /// The current run's capture pipes are still open.
    public private(set) var pipesOpen: Bool
    /// Why the machine stopped restarting (e.g. the restart limit), for `managed.last_error`.
    public private(set) var stopReason: String? = nil
    /// A run's timeout fired (its exit is reported as `timed_out`).
    public private(set) var timedOut = false
    /// The delay of the back-off in progress.
    public private(set) var backoffMs: Int64 = 0

    public static func == (a: ProcessMachine, b: ProcessMachine) -> Bool {
        a.state == b.state && a.policy == b.policy && a.restartCount == b.restartCount && a.backoffStep == b.backoffStep
            && a.health == b.health && a.healthFailures == b.healthFailures && a.pipesOpen == b.pipesOpen
            && a.timedOut == b.timedOut && a.stopReason == b.stopReason
    }

    /// A process whose first run has just been spawned.
    public init(policy: RestartPolicy?, stopGraceMs: Int64 = 10_000,
                healthCheck: (initialDelayMs: Int64, intervalMs: Int64, failureThreshold: Int)? = nil,
                drainMs: Int64 = 2000, timeoutMs: Int64? = nil, pipesOpen: Bool) {
        self.options = policy == nil && healthCheck == nil && timeoutMs == nil ? nil
            : Options(policy: policy, healthCheck: healthCheck, timeoutMs: timeoutMs)
        self.stopGraceMs = stopGraceMs
        self.drainMs = drainMs
        self.health = healthCheck == nil ? .disabled : .starting
        self.pipesOpen = pipesOpen
        self.state = .running(then: .policy)
    }

    /// A machine rebuilt after a crash or an upgrade from what the state file says.
    public init(restoring state: State, policy: RestartPolicy?, stopGraceMs: Int64,
                healthCheck: (initialDelayMs: Int64, intervalMs: Int64, failureThreshold: Int)?,
                drainMs: Int64, restartCount: Int, backoffStep: Int, health: Health, healthFailures: Int,
                pipesOpen: Bool, stopReason: String?) {
        self.init(policy: policy, stopGraceMs: stopGraceMs, healthCheck: healthCheck, drainMs: drainMs, pipesOpen: pipesOpen)
        self.state = state
        self.restartCount = restartCount
        self.backoffStep = backoffStep
        self.health = health
        self.healthFailures = healthFailures
        self.stopReason = stopReason
    }

    /// The timers of a process whose first run was just spawned.
    public func begin() -> [Action] {
        var a: [Action] = []
        if let h = healthCheck { a.append(.arm(.health, ms: h.initialDelayMs)) }
        if let t = timeoutMs { a.append(.arm(.timeout, ms: t)) }
        return a
    }

    /// The timers a restored machine needs again (after a crash or an upgrade); `backoffLeftMs` is what
    /// remains of a back-off in progress.
    public func resume(backoffLeftMs: Int64) -> [Action] {
        switch state {
        case .running:
            if let h = healthCheck { return [.arm(.health, ms: min(h.intervalMs, h.initialDelayMs))] }
            return []
        case .stopping:
            return [.signalTree(ProcessMachine.sigterm), .arm(.grace, ms: stopGraceMs)]
        case .backingOff:
            return [.arm(.backoff, ms: max(0, backoffLeftMs))]
        case .draining:
            return [.arm(.drain, ms: drainMs)]
        case .launching, .exited:
            return []
        }
    }

    public var leaderAlive: Bool {
        switch state {
        case .running, .stopping: return true
        case .launching, .backingOff, .draining, .exited: return false
        }
    }

    /// Output is complete and nothing follows: streams end.
    public var isFinished: Bool { state == .exited }

    /// Gone for good unless a restart is requested (draining or exited): an "exited record".
    public var isRetired: Bool { state == .draining || state == .exited }

    public var restartLimitReached: Bool {
        if let m = policy?.maxRestarts { return restartCount >= m }
        return false
    }

    // MARK: the table

    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        // The leader's exit.
        case (.running(let then), .leaderExited(let clean, let runtime)),
             (.stopping(let then), .leaderExited(let clean, let runtime)):
            var a: [Action] = [.cancel(.grace), .cancel(.health), .answerExitWaiters]
            if runtime >= RestartPolicy.backoffResetMs { backoffStep = 0 }
            a += decide(then, exitedCleanly: clean)
            return a + [.persist]

        case (.running, .stopRequested(let t)):
            state = .stopping(then: .stop)
            return teardown(t) + [.persist]
        case (.stopping, .stopRequested(let t)):
            state = .stopping(then: .stop)
            return t.graceMs <= 0 ? [.cancel(.grace), .signalTree(ProcessMachine.sigkill), .persist] : [.persist]
        case (.backingOff, .stopRequested):
            stopReason = nil
            return [.cancel(.backoff)] + retireWithOutput() + [.persist]
        case (.launching, .stopRequested), (.draining, .stopRequested), (.exited, .stopRequested):
            return []

        case (.running, .restartRequested):
            state = .stopping(then: .restart)
            return teardown(Teardown(graceMs: stopGraceMs)) + [.persist]
        case (.stopping, .restartRequested):
            state = .stopping(then: .restart)
            return [.persist]
        case (.backingOff, .restartRequested):
            return [.cancel(.backoff)] + relaunch()
        case (.draining, .restartRequested), (.exited, .restartRequested):
            stopReason = nil
            return [.cancel(.drain), .unretire] + relaunch()
        case (.launching, .restartRequested):
            return []

        case (.running, .graceElapsed), (.launching, .graceElapsed), (.backingOff, .graceElapsed),
             (.draining, .graceElapsed), (.exited, .graceElapsed):
            return []
        case (.stopping, .graceElapsed):
            return [.signalTree(ProcessMachine.sigkill)]

        case (.running, .timedOut), (.stopping, .timedOut):
            timedOut = true
            state = .stopping(then: .stop)
            return [.cancel(.grace), .signalTree(ProcessMachine.sigkill), .persist]
        case (.running, .clientLeft), (.stopping, .clientLeft):
            state = .stopping(then: .stop)
            return [.cancel(.grace), .signalTree(ProcessMachine.sigkill)]
        case (.launching, .timedOut), (.backingOff, .timedOut), (.draining, .timedOut), (.exited, .timedOut),
             (.launching, .clientLeft), (.backingOff, .clientLeft), (.draining, .clientLeft), (.exited, .clientLeft):
            return []

        case (.backingOff, .backoffElapsed):
            return relaunch()
        case (.running, .backoffElapsed), (.stopping, .backoffElapsed), (.launching, .backoffElapsed),
             (.draining, .backoffElapsed), (.exited, .backoffElapsed):
            return []

        case (.running, .healthPassed), (.stopping, .healthPassed):
            guard let h = healthCheck else { return [] }
            healthFailures = 0
            health = .healthy
            return [.arm(.health, ms: h.intervalMs), .persist]
        case (.running(let then), .healthFailed), (.stopping(let then), .healthFailed):
            guard let h = healthCheck else { return [] }
            healthFailures += 1
            if healthFailures < h.failureThreshold { return [.arm(.health, ms: h.intervalMs)] }
            health = .unhealthy
            let canRestart = policy.map { $0.kind != .never } ?? false
            if case .running = state, then == .policy, canRestart, !restartLimitReached {
                state = .stopping(then: .restart)
                return [.signalTree(ProcessMachine.sigkill), .persist]
            }
            return [.arm(.health, ms: h.intervalMs), .persist]
        case (.launching, .healthPassed), (.backingOff, .healthPassed), (.draining, .healthPassed), (.exited, .healthPassed),
             (.launching, .healthFailed), (.backingOff, .healthFailed), (.draining, .healthFailed), (.exited, .healthFailed):
            return []

        case (.draining, .outputClosed):
            pipesOpen = false
            state = .exited
            return [.cancel(.drain), .finishOutput, .persist]
        case (.running, .outputClosed), (.stopping, .outputClosed), (.launching, .outputClosed),
             (.backingOff, .outputClosed), (.exited, .outputClosed):
            pipesOpen = false
            return []

        case (.draining, .drainElapsed):
            return [.closeOutput]
        case (.running, .drainElapsed), (.stopping, .drainElapsed), (.launching, .drainElapsed),
             (.backingOff, .drainElapsed), (.exited, .drainElapsed):
            return []

        case (.launching, .launched(let open)):
            pipesOpen = open
            state = .running(then: .policy)
            var a: [Action] = [.answerRestartWaiters]
            if let h = healthCheck {
                health = .starting
                healthFailures = 0
                a.append(.arm(.health, ms: h.initialDelayMs))
            }
            return a + [.persist]
        case (.launching, .launchFailed):
            pipesOpen = false
            if restartLimitReached {
                stopReason = "restart limit reached (\(restartCount) restarts)"
                state = .exited
                return [.answerRestartWaiters, .retire, .finishOutput, .persist]
            }
            return [.answerRestartWaiters] + backOff() + [.persist]
        case (.running, .launched), (.stopping, .launched), (.backingOff, .launched), (.draining, .launched), (.exited, .launched),
             (.running, .launchFailed), (.stopping, .launchFailed), (.backingOff, .launchFailed), (.draining, .launchFailed),
             (.exited, .launchFailed):
            return []

        case (.launching, .leaderExited), (.backingOff, .leaderExited), (.draining, .leaderExited), (.exited, .leaderExited):
            return []
        }
    }

    // MARK: pieces of transitions

    private mutating func teardown(_ t: Teardown) -> [Action] {
        let (sig, after) = t.first
        var a: [Action] = [.cancel(.health), .signalTree(sig)]
        if let after { a.append(.arm(.grace, ms: after)) }
        return a
    }

    /// After the leader's exit: what `then` and the policy say.
    private mutating func decide(_ then: AfterExit, exitedCleanly: Bool) -> [Action] {
        switch then {
        case .stop:
            return retireWithOutput()
        case .restart:
            return relaunch()
        case .policy:
            guard let p = policy, p.wantsRestart(exitedCleanly: exitedCleanly) else { return retireWithOutput() }
            if restartLimitReached {
                stopReason = "restart limit reached (\(restartCount) restarts)"
                return retireWithOutput()
            }
            return backOff()
        }
    }

    private mutating func backOff() -> [Action] {
        guard let p = policy else { return retireWithOutput() }
        backoffMs = p.backoff(step: backoffStep)
        backoffStep += 1
        state = .backingOff
        return [.arm(.backoff, ms: backoffMs)]
    }

    private mutating func relaunch() -> [Action] {
        restartCount += 1
        state = .launching
        return [.launch]
    }

    /// Nothing follows this run: wait for the pipes (drain time), or finish now.
    private mutating func retireWithOutput() -> [Action] {
        if pipesOpen {
            state = .draining
            return [.retire, .arm(.drain, ms: drainMs)]
        }
        state = .exited
        return [.retire, .finishOutput]
    }
}
