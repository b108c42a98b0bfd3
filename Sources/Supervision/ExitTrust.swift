// ExitTrust: which report of a process's end can be trusted *now*. Pure: the caller asks the kernel
// (waitid(P_PIDFD) for the reap, poll readiness of the pidfd, ioctl(PIDFD_GET_INFO) for the exit
// information) and hands the answers in; `verdict` decides. No I/O, no clock (the wait is passed in).
//
// The kernel's contract:
//   - our own child is reaped by us (waitid) and its status is exact;
//   - a process we are not the parent of (re-adopted after a crash: systemd is its parent now) makes its
//     pidfd readable (EPOLLIN) when it exits, but PIDFD_INFO_EXIT exists only once its parent has reaped
//     it, which the pidfd signals with EPOLLHUP (Linux 6.15, pidfs "provide information after task has
//     been reaped"). Between the two the ioctl answers without exit information: that means "wait for
//     the hang-up", never a status. Before issue 18 that gap became a made-up `exit_code: -1`.
//   - a kernel without PIDFD_INFO_EXIT (< 6.15) cannot tell at all: the status is unknown, and said so.
import Sys

/// What waitid(P_PIDFD, WEXITED|WNOHANG) said.
public enum ReapAnswer: Equatable, Sendable {
    case reaped(ExitReport)
    /// Our child, still running (a spurious wake-up).
    case notExited
    /// ECHILD: not our child (re-adopted after a crash, or reaped by someone else).
    case notOurChild
    /// Any other failure (errno).
    case failed(Int32)
}

/// What ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT) said.
public enum ExitInfoAnswer: Equatable, Sendable {
    case known(ExitReport)
    /// The answer carried no exit information (the process runs, or exited and is not reaped yet).
    case notYet
    /// The ioctl failed (errno): the kernel cannot report the exit of a process we are not the parent of.
    case unsupported(Int32)
}

public enum ExitVerdict: Equatable, Sendable {
    /// Nothing ended (a spurious wake-up): keep waiting for the pidfd to become readable.
    case running
    /// The exact status.
    case exited(ExitReport)
    /// It exited, but its parent (not us) has not reaped it: wait for EPOLLHUP on the pidfd, then ask again.
    case awaitReap
    /// The status cannot be had: record that explicitly (never as an exit code). The reason is for the log.
    case unknown(String)
}

public enum ExitTrust {
    /// How long an exited process may stay unreaped by its parent before its status is given up as unknown.
    /// systemd reaps within milliseconds; only a parent that never reaps (no service manager) reaches it.
    public static let reapWaitMs: Int64 = 10_000
    /// The kernel publishes the reap (the pidfd's hang-up) and the exit information one after the other: a
    /// look between the two sees the hang-up without the status (seen once in a full systemd suite: a PTY
    /// session's exit reported as unknown). Look again for this long before saying unknown.
    public static let hangupGraceMs: Int64 = 200

    /// - Parameters:
    ///   - reap: the answer of the non-blocking reap through the pidfd.
    ///   - info: the answer of PIDFD_GET_INFO; asked only when `reap` is not `.reaped`/`.notExited`
    ///     (nil when it was not asked).
    ///   - exited: the pidfd is readable (the process exited).
    ///   - hungUp: the pidfd reported EPOLLHUP (the process was reaped, by whoever is its parent).
    ///   - waitedMs: how long this exit has been waiting for its reap (nil: first look).
    public static func verdict(reap: ReapAnswer, info: ExitInfoAnswer?, exited: Bool, hungUp: Bool,
                               waitedMs: Int64?) -> ExitVerdict {
        switch reap {
        case .reaped(let r):
            return .exited(r)
        case .notExited:
            return .running
        case .notOurChild, .failed:
            break
        }
        switch info {
        case .known(let r)?:
            // Exit information exists only after the reap: exact, whatever the readiness said.
            return .exited(r)
        case .unsupported(let e)?:
            if !exited && !hungUp { return .running }
            var why = "the kernel cannot report the exit of a process tendd is not the parent of "
                + "(PIDFD_INFO_EXIT needs Linux 6.15; ioctl errno \(e))"
            if case .failed(let w) = reap { why += "; waitid errno \(w)" }
            return .unknown(why)
        case .notYet?, nil:
            if hungUp {
                if let w = waitedMs, w >= hangupGraceMs {
                    return .unknown("reaped by its parent, but the kernel kept no exit status")
                }
                return .awaitReap
            }
            if !exited { return .running }
            if let w = waitedMs, w >= reapWaitMs {
                return .unknown("exited but not reaped by its parent within \(reapWaitMs) ms")
            }
            return .awaitReap
        }
    }
}
