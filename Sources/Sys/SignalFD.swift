// SignalFD: the daemon's signals arrive as readable events on one fd (C: signalfd(2)); they are
// blocked for the thread at start-up so no async handler ever runs.
import Glibc
import CShims

public enum Signal {
    public static let term = SIGTERM, int = SIGINT, hup = SIGHUP, chld = SIGCHLD, usr1 = SIGUSR1, usr2 = SIGUSR2
    public static let kill = SIGKILL, quit = SIGQUIT

    /// Blocks `signals` and returns a non-blocking signalfd that reports them.
    public static func openFD(_ signals: [Int32]) throws -> Int32 {
        let fd = signals.withUnsafeBufferPointer { tend_signalfd_open($0.baseAddress, Int32($0.count)) }
        if fd < 0 { throw lastError("signalfd") }
        return fd
    }

    /// One pending signal number, or nil.
    public static func read(_ fd: Int32) throws -> Int32? {
        try readWithSender(fd)?.signal
    }

    /// One pending signal and the pid that sent it (for SIGCHLD: the child), or nil.
    public static func readWithSender(_ fd: Int32) throws -> (signal: Int32, pid: Int32)? {
        var pid: Int32 = 0
        let s = tend_signalfd_read(fd, &pid)
        if s < 0 { throw lastError("read(signalfd)") }
        return s == 0 ? nil : (s, pid)
    }

    /// Every pending signal and its sender, in order. Reads up to 8 at a time and stops after a read that
    /// was not full: the loop watches the fd level-triggered, so a signal that comes later wakes it again,
    /// and the usual wakeup (one SIGCHLD per exited child) costs one read, not a read and an EAGAIN.
    public static func drain(_ fd: Int32, _ body: (_ signal: Int32, _ pid: Int32) -> Void) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 16) { buf in
            let signals = buf.baseAddress!, pids = buf.baseAddress! + 8
            while true {
                let n = Int(tend_signalfd_read_many(fd, signals, pids, 8))
                for i in 0..<max(0, n) { body(signals[i], pids[i]) }
                if n < 8 { return }
            }
        }
    }

    public static func ignorePipe() { tend_ignore_sigpipe() }

    /// "SIGTERM" style name for logs.
    public static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGHUP: return "SIGHUP"; case SIGINT: return "SIGINT"; case SIGQUIT: return "SIGQUIT"
        case SIGKILL: return "SIGKILL"; case SIGTERM: return "SIGTERM"; case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"; case SIGCHLD: return "SIGCHLD"; case SIGSTOP: return "SIGSTOP"
        case SIGCONT: return "SIGCONT"; case SIGPIPE: return "SIGPIPE"; case SIGALRM: return "SIGALRM"
        default: return "signal \(sig)"
        }
    }
}
