// TestPause: a test-only switch that stops the daemon at a named point of its crash-survival paths, so a
// test can `kill -9` it exactly there (windows of microseconds that no timing can aim at). Off by
// default; never set it in production.
//
// With TENDD_TEST_PAUSE_DIR=DIR in the environment, reaching point P checks for the file DIR/P (the
// test "arms" P by creating it). If it exists, the daemon removes it (one pause per arming), writes
// DIR/P.paused holding its pid, and blocks its loop forever: only SIGKILL (or the watchdog) ends it.
// Without the variable every check is one nil comparison.
//
// Points (where, and what is true there):
//   after-spawn    end of a launch: the child runs, its fds are in the fd store, its record is not in
//                  the state files and its client has no answer yet
//   state-written  before-sleep: the state files were just written, answers not yet sent
//   exit-seen      a child's end was read (reaped if ours), not yet written to the state files
//   backing-off    a managed process's exit decided a restart after backoff; the decision is not written
//   restore        a restarted daemon rebuilt its table from the fd store; exits while it was down are
//                  not yet taken, nothing is written, no listener is open
//   reexec         an upgrade saved its state and is about to execve the new image
import Sys

enum PausePoint: String, CaseIterable {
    case afterSpawn = "after-spawn"
    case stateWritten = "state-written"
    case exitSeen = "exit-seen"
    case backingOff = "backing-off"
    case restore = "restore"
    case reexec = "reexec"
}

final class TestPause {
    let dir: String?

    init() {
        if let d = Proc.getenv("TENDD_TEST_PAUSE_DIR"), !d.isEmpty { dir = d } else { dir = nil }
    }

    var enabled: Bool { dir != nil }

    /// Blocks forever if `point` is armed; returns at once otherwise.
    func reach(_ point: PausePoint, _ log: Log) {
        guard let dir, FD.unlinkExisting(dir + "/" + point.rawValue) else { return }
        log.warn("msg=\"paused for a test (TENDD_TEST_PAUSE_DIR, test only)\" point=\(point.rawValue) pid=\(Proc.myPid)")
        let marker = dir + "/" + point.rawValue + ".paused"
        if let fd = try? FD.open(marker + ".tmp", flags: FD.writeOnly | FD.create | FD.truncate, mode: 0o600) {
            try? FD.writeAll(fd, Array("\(Proc.myPid)\n".utf8))
            FD.close(fd)
            try? FD.rename(marker + ".tmp", marker)
        }
        Systemd.freezeForever()
    }
}
