// Lifecycle: the one place that performs what a process's lifecycle machine (Supervision/
// ProcessMachine.swift) decides. Facts reach a record only through `send(_:_:)`: the leader's exit
// (`childExited`, from its pidfd), its pipes closing, its timers firing, health probe results, API
// requests (stop, restart), a run's timeout or its client leaving. The machine returns actions; this
// file performs them (signal the tree, arm or cancel a timer, spawn the next run, close the pipes, end
// the streams, answer waiting requests, keep the exited-records list, persist) and feeds the outcome of
// a spawn back as an event. Nothing else changes a record's lifecycle state.
import Sys
import Reactor
import Supervision

extension Server {
    /// Tells `p`'s machine that `event` happened, then performs what it decided.
    func send(_ p: ProcessRecord, _ event: ProcessMachine.Event) {
        let actions = p.machine.handle(event)
        if !actions.isEmpty { perform(actions, for: p) }
    }

    func perform(_ actions: [ProcessMachine.Action], for p: ProcessRecord) {
        for action in actions {
            switch action {
            case .signalTree(let sig):
                if p.isRunning { ownership.signalTree(p, sig) }
            case .arm(let timer, let ms):
                arm(timer, ms, for: p)
            case .cancel(let timer):
                cancel(timer, for: p)
            case .launch:
                relaunch(p)
            case .closeOutput:
                closeOutput(p)
            case .finishOutput:
                outputFinished(p)
            case .answerExitWaiters:
                let waiters = p.exitWaiters
                p.exitWaiters.removeAll()
                for w in waiters { w() }
            case .answerRestartWaiters:
                guard let m = p.managed else { break }
                let waiters = m.restartWaiters
                m.restartWaiters.removeAll()
                for w in waiters { w() }
            case .retire:
                table.exitedOrder.append(p)   // issue17-perf: O(1), keeps the place of a record already kept
            case .unretire:
                table.exitedOrder.remove(p)   // issue17-perf: O(1)
            case .persist:
                markStateDirty(p)
            }
        }
        if let m = p.managed, p.machine.state == .backingOff, m.nextRestartAt == nil {
            m.nextRestartAt = Clock.wallMs() + p.machine.backoffMs
        } else if p.machine.state != .backingOff {
            p.managed?.nextRestartAt = nil
        }
    }

    // MARK: timers

    private func arm(_ timer: ProcessMachine.Timer, _ ms: Int64, for p: ProcessRecord) {
        cancel(timer, for: p)
        p.timers[timer] = loop.schedule(afterMs: ms) { [unowned self, weak p] in
            guard let p else { return }
            p.timers[timer] = nil
            switch timer {
            case .grace:
                self.log.warn("msg=\"killing after grace period\" pid=\(p.pid)")
                self.send(p, .graceElapsed)
            case .drain: self.send(p, .drainElapsed)
            case .backoff: self.send(p, .backoffElapsed)
            case .timeout:
                self.log.info("msg=\"run timed out\" pid=\(p.pid) timeout_ms=\(p.machine.timeoutMs ?? 0)")
                self.send(p, .timedOut)
            case .health: self.probeHealth(p)
            }
        }
    }

    private func cancel(_ timer: ProcessMachine.Timer, for p: ProcessRecord) {
        if let t = p.timers.removeValue(forKey: timer) { loop.cancel(t) }
        if timer == .health { p.managed?.probe?.cancel(); p.managed?.probe = nil }
    }

    /// Every timer of `p` (the record is being forgotten, or the daemon stops).
    func cancelTimers(_ p: ProcessRecord) {
        for t in Array(p.timers.keys) { cancel(t, for: p) }
    }

    private func probeHealth(_ p: ProcessRecord) {
        guard let m = p.managed, let h = m.spec.health, p.isRunning else { return }
        m.probe = HealthProbe(loop: loop, config: h) { [unowned self, weak p] ok, detail in
            guard let p else { return }
            p.managed?.probe = nil
            if !ok {
                self.metrics?.healthCheckFailures &+= 1   // metrics: failed checks
                self.log.debug("msg=\"health check failed\" id=\(Log.q(p.managed?.id ?? "")) failures=\(p.machine.healthFailures + 1) detail=\(Log.q(detail))")
            }
            let before = p.machine.health
            self.send(p, ok ? .healthPassed : .healthFailed)
            if p.machine.health == .unhealthy && before != .unhealthy {
                p.managed?.lastError = "health check failed \(p.machine.healthFailures) times: \(detail)"
                self.log.warn("msg=\"unhealthy\" id=\(Log.q(p.managed?.id ?? "")) pid=\(p.pid) restarting=\(p.machine.state == .stopping(then: .restart))")
            }
        }
    }

    // MARK: actions with I/O

    /// The next run of a managed process (the previous run's pipes are drained and closed first).
    private func relaunch(_ p: ProcessRecord) {
        guard let m = p.managed else { return }
        metrics?.managedRestarts &+= 1   // metrics: managed restarts
        for o in p.outputs { o.drain(maxBytes: 16 << 20); o.close() }
        do {
            try launch(p)
            log.info("msg=\"managed process restarted\" id=\(Log.q(m.id)) pid=\(p.pid) restart_count=\(p.machine.restartCount)")
            send(p, .launched(pipesOpen: !p.outputs.isEmpty))
        } catch {
            metrics?.spawnFailed(error)   // metrics: spawn failures
            m.lastError = (error as? APIError)?.message ?? "\(error)"
            log.warn("msg=\"managed restart failed\" id=\(Log.q(m.id)) error=\(Log.q(m.lastError!))")
            send(p, .launchFailed)
        }
    }

    /// The drain time after the leader's exit passed and a pipe is still open (a descendant holds it):
    /// take what it holds and close it. A run whose reader is behind keeps its pipes: it is waiting for
    /// the reader, not for a descendant (which died with the leader).
    private func closeOutput(_ p: ProcessRecord) {
        if p.outputs.contains(where: { $0.heldByReader }) {
            arm(.drain, p.machine.drainMs, for: p)
            return
        }
        for o in p.outputs { o.drain(maxBytes: 16 << 20); o.close() }
    }

    /// All output is captured and nothing follows: followers finish their streams.
    private func outputFinished(_ p: ProcessRecord) {
        for f in p.followers { f.pump() }
        if stopping { checkStopped() }
    }

    // MARK: facts from the kernel

    /// The leader's pidfd turned readable (or hung up): settle how it ended, record it, tell the machine.
    func childExited(_ p: ProcessRecord, events: EpollEvents = .input) {
        // Output written before the exit is in the pipes now: take it first, so "exited" implies "captured".
        for o in p.outputs { o.drain(maxBytes: 16 << 20) }
        // exit-status: only a status the kernel vouches for; a re-adopted process waits for its parent's
        // reap (EPOLLHUP), and an unknown one is said so, never -1 (ExitWatch.swift).
        guard let (status, seenAt) = settleExit(p, events: events) else { return }
        testPause.reach(.exitSeen, log)   // chaos: test-only pause point
        p.endedAt = seenAt ?? Clock.wallMs()
        table.runningCount -= 1
        p.status = status
        metrics?.exited(p)   // metrics: exits by reason
        // The state file must hold the exit before the pidfd that could tell it is given up.
        markStateDirty(p)
        saveState()
        persistence?.drop(p.handle, "pid")
        p.pidfdIO?.close()
        p.pidfdIO = nil
        p.stdin?.shut()
        log.info("msg=\"process exited\" pid=\(p.pid) handle=\(p.handle) status=\(p.status.name) \(describe(p.status)) runtime_ms=\(p.endedAt! - p.startedAt)")
        // Nothing of the tree outlives its leader (Tensorlake: leftovers are reaped with the unit).
        if ownership.leaderReaped(p, loop: loop) { log.debug("msg=\"killed leftover descendants\" pid=\(p.pid)") }
        var code: Int32? = nil
        if let m = p.managed {
            var sig: Int32? = nil, oom = false
            switch p.status {
            case .exited(let c): code = c
            case .signaled(let s): sig = s
            case .oomKilled: sig = 9; oom = true
            case .running, .exitUnknown: break   // exit-status: unknown counts as a failure (not a clean exit)
            }
            m.lastExit = (code, sig, oom, p.endedAt!)
        } else if case .exited(let c) = p.status {
            code = c
        }
        let was = p.machine.state
        send(p, .leaderExited(cleanly: code == 0, runtimeMs: p.endedAt! - p.startedAt))
        if let m = p.managed, p.machine.state == .backingOff, was != .backingOff {
            log.info("msg=\"managed process backing off\" id=\(Log.q(m.id)) delay_ms=\(p.machine.backoffMs) restarts=\(p.machine.restartCount)")
            testPause.reach(.backingOff, log)   // chaos: test-only pause point
        } else if let m = p.managed, let reason = p.machine.stopReason, p.machine.isRetired {
            log.warn("msg=\"managed process stopped\" id=\(Log.q(m.id)) reason=\(Log.q(reason))")
        }
        markStateDirty(p)
        evictExited()
    }

    /// One of `p`'s capture pipes reached EOF or was closed.
    func pipeClosed(_ p: ProcessRecord) {
        for f in p.followers { f.pump() }
        if p.outputs.isEmpty { send(p, .outputClosed) }
    }

    private func describe(_ s: ProcessStatus) -> String {
        switch s {
        case .running: return ""
        case .exited(let c): return "exit_code=\(c)"
        case .signaled(let sig): return "signal=\(sig)"
        case .oomKilled: return "signal=9 oom_killed=true"
        case .exitUnknown: return "exit_status_unknown=true"   // exit-status
        }
    }
}
