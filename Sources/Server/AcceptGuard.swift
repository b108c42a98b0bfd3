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

/// The guard's state: one spare per daemon process (RLIMIT_NOFILE is per process), owned by the Server.
final class AcceptGuard {
    var spareFD: Int32 = -1
    var exhausted = false
    var refusedInEpisode = 0
}

extension Server {
    /// How long a listener sleeps after hitting the fd limit.
    static let acceptPauseMs: Int64 = 100

    /// Called at the top of every listener wake-up: make sure the spare fd is held.
    func reserveSpareFD() {
        if acceptGuard.spareFD < 0 {
            do { acceptGuard.spareFD = try FD.open("/dev/null", flags: FD.readOnly) } catch {
                acceptGuard.spareFD = -1   // out of fds right now: retried at the next wake-up
            }
        }
    }

    /// A successful accept after an episode: log the recovery once.
    func acceptSucceeded() {
        guard acceptGuard.exhausted else { return }
        acceptGuard.exhausted = false
        log.info("msg=\"fd limit cleared\" refused=\(acceptGuard.refusedInEpisode) connections=\(connections.count)")
        acceptGuard.refusedInEpisode = 0
    }

    /// accept(2) failed. Returns after refusing what it could; the listener must stop for this wake-up.
    func acceptFailed(_ listener: Listener, _ e: SysError) {
        let g = acceptGuard
        guard e.errno == EMFILE_ || e.errno == ENFILE_ else {
            log.warn("msg=\"accept failed\" error=\(Log.q(e.description))")
            return
        }
        if !g.exhausted {
            g.exhausted = true
            log.warn("msg=\"fd limit reached\" error=\(Log.q(e.description)) connections=\(connections.count) spare=\(g.spareFD >= 0) action=\"refusing new connections with 503 LIMIT_REACHED\"")
        }
        if g.spareFD >= 0 {
            FD.close(g.spareFD)
            g.spareFD = -1
            for _ in 0..<64 {
                guard let cfd = try? Socket.accept(listener.fd) else { break }
                let body = "{\"error\":\"tendd is out of file descriptors; retry later\",\"code\":\"LIMIT_REACHED\"}\n"
                let resp = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nRetry-After: 1\r\nConnection: close\r\n\r\n\(body)"
                _ = try? FD.write(cfd, Array(resp.utf8), from: 0)
                FD.close(cfd)
                g.refusedInEpisode += 1
            }
            reserveSpareFD()
        }
        // Do not spin on a level-triggered listener that cannot make progress: sleep, then listen again.
        guard listener.io.isWatched else { return }
        listener.io.setInterest([])
        loop.schedule(afterMs: Server.acceptPauseMs) { [weak listener] in
            guard let listener, listener.io.isWatched, !self.stopping else { return }
            listener.io.setInterest(.input)
        }
    }
}
