// Notifier (issue 18): every message tendd sends its service manager (READY, STATUS, WATCHDOG, STOPPING,
// and the fd store's FDSTORE / FDSTOREREMOVE), sent without ever blocking the loop. A manager that does not
// read (stopped, stalled) holds at most net.unix.max_dgram_qlen (10) datagrams; libsystemd's blocking send
// then froze the whole daemon in sendmsg (the chaos tests found it: no request was answered while the
// manager was stopped). Now a full queue keeps the messages here, in order (a store and its removal stay
// ordered), each with its own dup of the fd it hands over, and retries them from a timer; WATCHDOG and STATUS
// pings are dropped instead (the next one follows). Bounded: beyond `maxQueued` messages the oldest are lost
// (logged): the manager has stopped reading for good.
import Sys
import Reactor

final class Notifier {
    static let maxQueued = 16_384
    static let retryMs: Int64 = 20
    private var queue: [(state: String, fd: Int32)] = []   // fd: our dup (closed once sent), or -1
    private var retryScheduled = false
    weak var loop: EventLoop?
    let log: Log

    init(log: Log) { self.log = log }

    var queued: Int { queue.count }

    /// Sends `state` (with `fd` for FDSTORE) now, or keeps it behind what waits. `droppable`: a ping that the
    /// next one replaces (WATCHDOG=1, STATUS=) is dropped rather than queued.
    func send(_ state: String, fd: Int32 = -1, droppable: Bool = false) {
        if queue.isEmpty {
            switch Systemd.notifyWithoutBlocking(state, fd: fd) {
            case .sent, .noManager: return
            case .failed(let e):
                log.warn("msg=\"notification to the service manager failed\" errno=\(e) state=\(Log.q(String(state.prefix(40))))")
                return
            case .full:
                if droppable { return }
                log.warn("msg=\"service manager is not reading notifications; queueing them\"")
            }
        } else if droppable {
            return
        }
        let dup = fd >= 0 ? ((try? FD.dup(fd, atLeast: 3)) ?? -1) : -1
        queue.append((state, dup))
        if queue.count > Notifier.maxQueued {
            let lost = queue.removeFirst()
            if lost.fd >= 0 { FD.close(lost.fd) }
            log.error("msg=\"notification queue full, dropping the oldest\" state=\(Log.q(String(lost.state.prefix(40))))")
        }
        scheduleRetry()
    }

    private func scheduleRetry() {
        guard !retryScheduled, let loop else { return }
        retryScheduled = true
        loop.schedule(afterMs: Notifier.retryMs) { [weak self] in
            guard let self else { return }
            self.retryScheduled = false
            self.flush()
        }
    }

    /// Sends what waits, in order, until the manager's queue is full again.
    func flush() {
        var sent = 0
        while let (state, fd) = queue.first {
            let r = Systemd.notifyWithoutBlocking(state, fd: fd)
            if r == .full { break }
            if case .failed(let e) = r { log.warn("msg=\"notification to the service manager failed\" errno=\(e)") }
            queue.removeFirst()
            if fd >= 0 { FD.close(fd) }
            sent += 1
        }
        if queue.isEmpty { if sent > 0 { log.info("msg=\"service manager reads notifications again\" sent=\(sent)") } }
        else { scheduleRetry() }
    }
}
