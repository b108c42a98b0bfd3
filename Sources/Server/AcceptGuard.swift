// AcceptGuard: keeps the daemon reachable when it runs out of file descriptors (hardening).
//
// The reserved-fd trick: one spare fd (/dev/null) is held open. When accept(2) fails with EMFILE or
// ENFILE, the spare is closed, which frees exactly one slot; pending connections are accepted through
// that slot one at a time, each answered `503 LIMIT_REACHED` (JSON, `Retry-After: 1`) and closed at
// once; then the spare is reopened. Without it the connection would sit in the kernel's backlog and
// the level-triggered listener would wake the loop again and again (100 % CPU). Either way the
// listener's interest is switched off for `pauseMs` so the loop cannot spin while the limit holds,
// and one warning is logged per episode (`msg="fd limit reached"`, then `msg="fd limit cleared"`).
// The spare is opened the first time a listener wakes (fds are plentiful then) and re-tried on every
// wake-up while it is missing.
import Sys
import Reactor

/// One spare per daemon process: RLIMIT_NOFILE is per process. Loop thread only.
nonisolated(unsafe) private var spareFD: Int32 = -1
nonisolated(unsafe) private var exhausted = false
nonisolated(unsafe) private var refusedInEpisode = 0

extension Server {
    /// How long a listener sleeps after hitting the fd limit.
    static let acceptPauseMs: Int64 = 100

    /// Called at the top of every listener wake-up: make sure the spare fd is held.
    func reserveSpareFD() {
        if spareFD < 0 { spareFD = (try? FD.open("/dev/null", flags: FD.readOnly)) ?? -1 }
    }

    /// A successful accept after an episode: log the recovery once.
    func acceptSucceeded() {
        guard exhausted else { return }
        exhausted = false
        log.info("msg=\"fd limit cleared\" refused=\(refusedInEpisode) connections=\(connections.count)")
        refusedInEpisode = 0
    }

    /// accept(2) failed. Returns after refusing what it could; the listener must stop for this wake-up.
    func acceptFailed(_ listener: Listener, _ e: SysError) {
        guard e.errno == EMFILE_ || e.errno == ENFILE_ else {
            log.warn("msg=\"accept failed\" error=\(Log.q(e.description))")
            return
        }
        if !exhausted {
            exhausted = true
            log.warn("msg=\"fd limit reached\" error=\(Log.q(e.description)) connections=\(connections.count) spare=\(spareFD >= 0) action=\"refusing new connections with 503 LIMIT_REACHED\"")
        }
        if spareFD >= 0 {
            FD.close(spareFD)
            spareFD = -1
            for _ in 0..<64 {
                guard let cfd = try? Socket.accept(listener.fd) else { break }
                let body = "{\"error\":\"tendd is out of file descriptors; retry later\",\"code\":\"LIMIT_REACHED\"}\n"
                let resp = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nRetry-After: 1\r\nConnection: close\r\n\r\n\(body)"
                _ = try? FD.write(cfd, Array(resp.utf8), from: 0)
                FD.close(cfd)
                refusedInEpisode += 1
            }
            reserveSpareFD()
        }
        // Do not spin on a level-triggered listener that cannot make progress: sleep, then listen again.
        guard let reg = listener.reg else { return }
        loop.setInterest(reg, [])
        loop.schedule(afterMs: Server.acceptPauseMs) { [weak listener] in
            guard let listener, let reg = listener.reg, !self.stopping else { return }
            self.loop.setInterest(reg, .input)
        }
    }
}
