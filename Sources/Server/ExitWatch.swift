// ExitWatch (issue 18): how the daemon learns the exact end of a process, whoever its parent is. It asks
// the kernel (reap through the pidfd; for a process that is not our child, the pidfd's readiness and
// PIDFD_GET_INFO), lets `ExitTrust.verdict` (Supervision) decide what can be trusted now, and owns the
// exits that must wait: a re-adopted process (systemd is its parent after a crash) that exited but is not
// reaped yet. Such a pidfd stays registered with no interest, so only its EPOLLHUP (the reap) wakes the
// loop; `ExitTrust.reapWaitMs` later the status is given up as unknown, explicitly.
//
// `ended_at` of a waited exit is when the exit was first seen (EPOLLIN), not when the parent reaped it.
// A status that cannot be had is recorded as `.exitUnknown` ("status": "exited", "exit_code": null,
// "exit_status_unknown": true) with a log line: never as a made-up exit code.
import Sys
import Reactor
import Supervision

final class ReapWaits {
    struct Wait {
        let seenWallMs: Int64
        let seenMonoMs: Int64
        var timer: TimerID?
    }
    /// Exits waiting for their reap, by record handle.
    var waits: [Int: Wait] = [:]
}

extension Server {
    /// The status of `p` once it can be trusted (with the wall time its exit was first seen), or nil while it
    /// runs or waits for its parent's reap. `events`: what the pidfd reported (restore passes a poll's answer).
    func settleExit(_ p: ProcessRecord, events: EpollEvents) -> (ProcessStatus, seenAt: Int64?)? {
        let reap: ReapAnswer
        do {
            if let r = try Proc.reap(pidfd: p.pidfd) { reap = .reaped(r) } else { reap = .notExited }
        } catch let e as SysError {
            reap = e.errno == ECHILD_ ? .notOurChild : .failed(e.errno)
        } catch {
            reap = .failed(0)
        }
        var info: ExitInfoAnswer? = nil
        if case .notOurChild = reap { info = exitInfo(p.pidfd) }
        if case .failed = reap { info = exitInfo(p.pidfd) }
        let wait = reapWaits.waits[p.handle]
        let verdict = ExitTrust.verdict(reap: reap, info: info,
                                        exited: events.contains(.input) || wait != nil,
                                        hungUp: events.contains(.hangup),
                                        waitedMs: wait.map { loop.now - $0.seenMonoMs })
        switch verdict {
        case .running:
            return nil
        case .awaitReap:
            if wait == nil {
                log.info("msg=\"exit seen, waiting for its parent's reap to read the status\" pid=\(p.pid) handle=\(p.handle)")
                var w = ReapWaits.Wait(seenWallMs: Clock.wallMs(), seenMonoMs: loop.now, timer: nil)
                w.timer = loop.schedule(afterMs: ExitTrust.reapWaitMs) { [weak self, weak p] in
                    guard let self, let p, p.isRunning, p.pidfd >= 0 else { return }
                    self.reapWaits.waits[p.handle]?.timer = nil
                    self.childExited(p, events: .input)
                }
                reapWaits.waits[p.handle] = w
                // Readable stays readable: only the hang-up (EPOLLHUP, always reported) may wake us now.
                p.pidfdIO?.setInterest([])
            }
            if events.contains(.hangup) {
                // Reaped, but its status is not published yet: the hang-up stays reported, so stop watching
                // (no spin) and look again shortly.
                p.pidfdIO?.unwatch()
                loop.schedule(afterMs: 5) { [weak self, weak p] in
                    guard let self, let p, p.isRunning, p.pidfd >= 0 else { return }
                    self.childExited(p, events: [.input, .hangup])
                }
            }
            return nil
        case .exited(let r):
            let seen = endReapWait(p)
            switch r {
            case .exited(let code): return (.exited(code), seen)
            case .signaled(let sig, _):
                return (ownership.oomKilled(p) && sig == Signal.kill ? .oomKilled : .signaled(sig), seen)
            }
        case .unknown(let why):
            let seen = endReapWait(p)
            log.error("msg=\"exit status unknown\" pid=\(p.pid) handle=\(p.handle) reason=\(Log.q(why))")
            return (.exitUnknown, seen)
        }
    }

    private func endReapWait(_ p: ProcessRecord) -> Int64? {
        guard let w = reapWaits.waits.removeValue(forKey: p.handle) else { return nil }
        loop.cancel(w.timer)
        return w.seenWallMs
    }

    private func exitInfo(_ pidfd: Int32) -> ExitInfoAnswer {
        do {
            if let r = try Proc.exitStatus(pidfd: pidfd) { return .known(r) }
            return .notYet
        } catch let e as SysError {
            return .unsupported(e.errno)
        } catch {
            return .unsupported(0)
        }
    }

    /// Restore: the pidfd's readiness as epoll would report it, when the process ended while we were down.
    func exitReadiness(_ p: ProcessRecord) -> EpollEvents? {
        let r = Proc.pidfdReadiness(p.pidfd)
        var ev: EpollEvents = []
        if r.exited { ev.insert(.input) }
        if r.reaped { ev.insert(.hangup) }
        return ev.isEmpty ? nil : ev
    }
}
