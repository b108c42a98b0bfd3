// SystemdIntegration: what the daemon tells its service manager, through small hooks the Server calls:
//   ready(_:)     READY=1 + STATUS=, once every listener is registered and the loop is about to run
//                 (a connection accepted by the kernel from then on is answered); starts the timers
//   status timer  STATUS=<one-line summary> every second, sent only when the line changed
//   watchdog      WATCHDOG=1 from a loop timer at half of WATCHDOG_USEC: a stuck loop stops pinging and
//                 the manager kills and restarts the service (WatchdogSec=, Restart=on-failure)
//   stopping(_:)  STOPPING=1 + STATUS= when SIGTERM/SIGINT starts the shutdown
// Without NOTIFY_SOCKET nothing is sent and no timer is scheduled.
//
// Also the test-only freeze switch: with TENDD_TEST_FREEZE_SIGNAL=USR1 in the environment the
// daemon also takes that signal through its signalfd and then blocks its loop forever, so a test can
// prove that the watchdog restarts a frozen daemon. Off by default; never set it in production.
import Sys
import Reactor

final class SystemdIntegration {
    let enabled: Bool
    /// The signal that freezes the loop (test-only), from TENDD_TEST_FREEZE_SIGNAL.
    let freezeSignal: Int32?
    private var lastStatus = ""
    private var watchdogIntervalMs: Int64?
    private var started = false

    init() {
        enabled = Systemd.notificationsEnabled
        // Only SIGUSR1: SIGUSR2 is the re-exec upgrade signal.
        switch Proc.getenv("TENDD_TEST_FREEZE_SIGNAL")?.uppercased() {
        case "USR1", "SIGUSR1": freezeSignal = Signal.usr1
        default: freezeSignal = nil
        }
    }

    /// Listeners are registered and the loop is about to run: READY=1, then keep STATUS and the watchdog current.
    func ready(_ server: Server) {
        guard enabled, !started else { return }
        started = true
        lastStatus = server.statusLine()
        send(server, "READY=1\nSTATUS=\(lastStatus)")
        do {
            if let usec = try Systemd.watchdogTimeoutUsec() {
                let every = Systemd.watchdogPingIntervalMs(timeoutUsec: usec)
                watchdogIntervalMs = every
                server.log.info("msg=\"systemd watchdog\" timeout_ms=\(usec / 1000) ping_ms=\(every)")
                scheduleWatchdog(server, every)
            }
        } catch {
            server.log.warn("msg=\"cannot read the watchdog interval\" error=\(Log.q("\(error)"))")
        }
        scheduleStatus(server)
    }

    /// SIGTERM/SIGINT: the manager sees "deactivating" with a reason while children are stopped.
    func stopping(_ server: Server, reason: String) {
        guard enabled else { return }
        lastStatus = "stopping (\(reason)): " + server.statusLine()
        send(server, "STOPPING=1\nSTATUS=\(lastStatus)")
    }

    /// The freeze switch's signal arrived (test-only): block the loop forever.
    func freeze(_ server: Server) -> Never {
        server.log.warn("msg=\"freezing the event loop (TENDD_TEST_FREEZE_SIGNAL, test only)\"")
        Systemd.freezeForever()
    }

    private func scheduleWatchdog(_ server: Server, _ every: Int64) {
        server.loop.schedule(afterMs: every) { [unowned self, unowned server] in
            self.send(server, "WATCHDOG=1")
            self.scheduleWatchdog(server, every)
        }
    }

    private func scheduleStatus(_ server: Server) {
        server.loop.schedule(afterMs: 1000) { [unowned self, unowned server] in
            let line = server.stopping ? "stopping: " + server.statusLine() : server.statusLine()
            if line != self.lastStatus {
                self.lastStatus = line
                self.send(server, "STATUS=\(line)")
            }
            self.scheduleStatus(server)
        }
    }

    private func send(_ server: Server, _ state: String) {
        do { try Systemd.notify(state) } catch {
            server.log.warn("msg=\"sd_notify failed\" error=\(Log.q("\(error)"))")
        }
    }
}

extension Server {
    /// One line for `systemctl status`: "3 running, 12 exited, 2 followers, 5 connections, 2 listeners".
    func statusLine() -> String {
        var running = 0, followers = 0
        for p in table.processes.values {
            if p.isRunning { running += 1 }
            followers += p.followers.count
        }
        return "\(running) running, \(table.exitedOrder.count) exited, \(followers) followers, \(connections.count) connections, \(listeners.count) listeners"
    }
}
