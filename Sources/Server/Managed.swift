// Managed: supervised processes (protocol.md §3.4–3.5): request decoding, what a managed record keeps
// beside its lifecycle machine (Supervision/ProcessMachine.swift holds the restart policy, back-off and
// health state; Lifecycle.swift performs its actions), and the health probe.
//
// Backoff: the n-th consecutive restart waits initial_backoff_ms * 2^(n-1), capped at max_backoff_ms.
// A run that stayed up for at least 10 s resets the sequence to initial_backoff_ms.
// max_restarts null = unlimited; restart_count counts every restart (automatic and requested).
import Sys
import Reactor
import JSON
import Supervision

typealias RestartPolicyKind = RestartPolicy.Kind
enum HealthKind: String { case http, tcp }

struct HealthCheckConfig {
    var kind: HealthKind
    var port: UInt16
    var path: String? = nil
    var initialDelayMs: Int64 = 5000
    var intervalMs: Int64 = 1000
    var timeoutMs: Int64 = 500
    var failureThreshold: Int = 3
}

struct ManagedSpec {
    var name: String?
    var restart = RestartPolicy()
    var health: HealthCheckConfig?
    var stopGraceMs: Int64 = 10_000
}

enum ManagedStatus: String { case starting, running, backing_off, stopped }

/// What a managed process keeps beside its lifecycle machine (which holds the restart count, the
/// back-off and the health state): its spec, the facts it reports, and the requests waiting on it.
final class ManagedState {
    let spec: ManagedSpec
    let id: String
    var lastExit: (exitCode: Int32?, signal: Int32?, oom: Bool, endedAt: Int64)? = nil
    /// The last spawn error (the machine's own stop reason is reported when there is none).
    var lastError: String? = nil
    var nextRestartAt: Int64? = nil
    var restartWaiters: [() -> Void] = []
    var probe: HealthProbe?
    var nameReleased = false

    init(spec: ManagedSpec, handle: Int) {
        self.spec = spec
        id = spec.name ?? "managed-\(handle)"
    }

    /// The supervisor status the SDK shows, derived from the machine.
    static func status(_ m: ProcessMachine) -> ManagedStatus {
        switch m.state {
        case .running, .stopping: return m.health == .starting ? .starting : .running
        case .launching: return .starting
        case .backingOff: return .backing_off
        case .draining, .exited: return .stopped
        }
    }

    func json(_ machine: ProcessMachine) -> JSONValue {
        let r = spec.restart
        var health: JSONValue = .null
        if let h = spec.health {
            health = .object([
                ("type", .string(h.kind.rawValue)), ("port", .int(Int64(h.port))),
                ("path", h.path.map { .string($0) } ?? .null),
                ("initial_delay_ms", .int(h.initialDelayMs)), ("interval_ms", .int(h.intervalMs)),
                ("timeout_ms", .int(h.timeoutMs)), ("failure_threshold", .int(Int64(h.failureThreshold))),
            ])
        }
        var last: JSONValue = .null
        if let e = lastExit {
            last = .object([
                ("exit_code", e.exitCode.map { .int(Int64($0)) } ?? .null),
                ("signal", e.signal.map { .int(Int64($0)) } ?? .null),
                ("oom_killed", .bool(e.oom)), ("ended_at", .int(e.endedAt)),
            ])
        }
        let error = lastError ?? machine.stopReason
        return .object([
            ("id", .string(id)),
            ("name", spec.name.map { .string($0) } ?? .null),
            ("status", .string(ManagedState.status(machine).rawValue)),
            ("restart_count", .int(Int64(machine.restartCount))),
            ("restart", .object([
                ("policy", .string(r.kind.rawValue)),
                ("max_restarts", r.maxRestarts.map { .int(Int64($0)) } ?? .null),
                ("initial_backoff_ms", .int(r.initialBackoffMs)),
                ("max_backoff_ms", .int(r.maxBackoffMs)),
            ])),
            ("health_check", health),
            ("health_status", .string(machine.health.rawValue)),
            ("consecutive_health_failures", .int(Int64(machine.healthFailures))),
            ("last_exit", last),
            ("last_error", error.map { .string($0) } ?? .null),
            ("next_restart_at", machine.state == .backingOff ? (nextRestartAt.map { .int($0) } ?? .null) : .null),
            ("stop_grace_ms", .int(spec.stopGraceMs)),
        ])
    }
}

/// One health probe: a non-blocking connect to 127.0.0.1:port (tcp), plus for http a GET whose
/// status must be 2xx or 3xx, all within timeout_ms. Runs on the loop like any other source.
final class HealthProbe: EventHandler {
    private let loop: EventLoop
    private let config: HealthCheckConfig
    private var io: WatchedFD?
    private var timer: TimerID?
    private var done: ((Bool, String) -> Void)?
    private var response: [UInt8] = []
    private var sent = false

    init(loop: EventLoop, config: HealthCheckConfig, done: @escaping (Bool, String) -> Void) {
        self.loop = loop
        self.config = config
        self.done = done
        do {
            io = WatchedFD(try Socket.startConnect(host: "127.0.0.1", port: config.port), loop: loop)
            try io!.watch(.output, handler: self)
            timer = loop.schedule(afterMs: config.timeoutMs) { [weak self] in self?.finish(false, "timed out after \(config.timeoutMs) ms") }
        } catch {
            loop.defer_ { [weak self] in self?.finish(false, "connect: \(error)") }
        }
    }

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        guard io?.isOpen == true, let fd = io?.fd else { return }
        if !sent {
            if let err = Socket.pendingError(fd) {
                return finish(false, "connect: \(err.reason)")
            }
            if config.kind == .tcp { return finish(true, "connected") }
            let req = "GET \(config.path ?? "/") HTTP/1.1\r\nHost: 127.0.0.1:\(config.port)\r\nUser-Agent: tendd-health\r\nConnection: close\r\n\r\n"
            do { _ = try FD.write(fd, Array(req.utf8), from: 0) } catch {
                return finish(false, "send: \(error)")
            }
            sent = true
            io!.setInterest(.input)
            return
        }
        var buf = [UInt8](repeating: 0, count: 512)
        let r: IOResult
        do { r = try buf.withUnsafeMutableBytes { try FD.read(fd, into: $0) } } catch {
            return finish(false, "receive: \(error)")
        }
        if r == .wouldBlock { return }
        if case .bytes(let n) = r { response += buf[0..<n] }
        if let nl = response.firstIndex(of: 0x0A) ?? (r == .eof ? response.endIndex : nil) {
            let line = String(decoding: response[..<nl], as: UTF8.self)
            let parts = line.split(separator: " ")
            if parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]) {
                finish((200..<400).contains(code), "HTTP \(code)")
            } else {
                finish(false, "bad HTTP response")
            }
        }
    }

    private func finish(_ ok: Bool, _ detail: String) {
        guard let d = done else { return }
        done = nil
        cancel()
        d(ok, detail)
    }

    func cancel() {
        done = nil
        loop.cancel(timer); timer = nil
        io?.close()
    }
}
