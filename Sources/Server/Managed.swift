// Managed: supervised processes (protocol.md §3.4–3.5). A managed process is one record whose pid
// changes with each run; its output of all runs stays in one journal. The supervisor is a small
// state machine driven by facts (launched, exited, health result, stop/restart requested) that
// returns what to do; Server performs it.
//
// Backoff: the n-th consecutive restart waits initial_backoff_ms * 2^(n-1), capped at max_backoff_ms.
// A run that stayed up for at least `backoffResetMs` (10 s) resets the sequence to initial_backoff_ms.
// max_restarts null = unlimited; restart_count counts every restart (automatic and requested).
import Sys
import Reactor
import JSON

enum RestartPolicyKind: String { case never, on_failure, always }
enum HealthKind: String { case http, tcp }

struct RestartConfig {
    var policy: RestartPolicyKind = .on_failure
    var maxRestarts: Int? = nil
    var initialBackoffMs: Int64 = 500
    var maxBackoffMs: Int64 = 30_000
}

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
    var restart = RestartConfig()
    var health: HealthCheckConfig?
    var stopGraceMs: Int64 = 10_000
}

enum ManagedStatus: String { case starting, running, backing_off, stopped }
enum HealthStatus: String { case disabled, starting, healthy, unhealthy }

final class ManagedState {
    static let backoffResetMs: Int64 = 10_000
    let spec: ManagedSpec
    let id: String
    var status: ManagedStatus = .starting
    var restartCount = 0
    var healthStatus: HealthStatus
    var consecutiveHealthFailures = 0
    var lastExit: (exitCode: Int32?, signal: Int32?, oom: Bool, endedAt: Int64)? = nil
    var lastError: String? = nil
    var nextRestartAt: Int64? = nil
    var backoffStep = 0
    var stopRequested = false
    var restartRequested = false
    var restartWaiters: [() -> Void] = []
    var restartTimer: TimerID?
    var healthTimer: TimerID?
    var probe: HealthProbe?
    var killTimer: TimerID?
    var nameReleased = false

    init(spec: ManagedSpec, handle: Int) {
        self.spec = spec
        id = spec.name ?? "managed-\(handle)"
        healthStatus = spec.health == nil ? .disabled : .starting
    }

    /// The delay before the next automatic restart, advancing the backoff sequence.
    func nextBackoff(runtimeMs: Int64) -> Int64 {
        if runtimeMs >= ManagedState.backoffResetMs { backoffStep = 0 }
        let r = spec.restart
        var d = max(0, r.initialBackoffMs)
        for _ in 0..<min(backoffStep, 40) { d = min(d * 2, max(r.maxBackoffMs, r.initialBackoffMs)) }
        backoffStep += 1
        return min(d, max(r.maxBackoffMs, r.initialBackoffMs))
    }

    /// Whether an exit should be followed by a restart under the policy.
    func wantsRestart(exitedCleanly: Bool) -> Bool {
        switch spec.restart.policy {
        case .never: return false
        case .on_failure: return !exitedCleanly
        case .always: return true
        }
    }

    var restartLimitReached: Bool {
        if let m = spec.restart.maxRestarts { return restartCount >= m }
        return false
    }

    var json: JSONValue {
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
        return .object([
            ("id", .string(id)),
            ("name", spec.name.map { .string($0) } ?? .null),
            ("status", .string(status.rawValue)),
            ("restart_count", .int(Int64(restartCount))),
            ("restart", .object([
                ("policy", .string(r.policy.rawValue)),
                ("max_restarts", r.maxRestarts.map { .int(Int64($0)) } ?? .null),
                ("initial_backoff_ms", .int(r.initialBackoffMs)),
                ("max_backoff_ms", .int(r.maxBackoffMs)),
            ])),
            ("health_check", health),
            ("health_status", .string(healthStatus.rawValue)),
            ("consecutive_health_failures", .int(Int64(consecutiveHealthFailures))),
            ("last_exit", last),
            ("last_error", lastError.map { .string($0) } ?? .null),
            ("next_restart_at", nextRestartAt.map { .int($0) } ?? .null),
            ("stop_grace_ms", .int(spec.stopGraceMs)),
        ])
    }
}

// MARK: decoding

extension Server {
    /// `name`, `restart`, `health_check`, `stop_grace_ms` of a start request. nil: not managed.
    func decodeManaged(_ o: JSONValue) throws -> ManagedSpec? {
        func present(_ k: String) -> JSONValue? { if let v = o[k], v != .null { return v }; return nil }
        let nameV = present("name"), restartV = present("restart"), healthV = present("health_check")
        let graceV = present("stop_grace_ms")
        guard nameV != nil || restartV != nil || healthV != nil else {
            if graceV != nil { throw APIError.invalid("field 'stop_grace_ms' applies to managed processes only (set name, restart or health_check)") }
            return nil
        }
        var m = ManagedSpec()
        if let v = nameV {
            guard case .string(let n) = v else { throw APIError.invalid("field 'name' must be a string") }
            guard !n.isEmpty else { throw APIError.invalid("field 'name': managed process name must not be empty") }
            guard !n.contains("/") else { throw APIError.invalid("field 'name': managed process name must not contain '/'") }
            guard !n.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw APIError.invalid("field 'name': managed process name must not be all digits (it would read as a pid)")
            }
            guard n.utf8.count <= 256, !n.utf8.contains(where: { $0 < 0x20 }) else {
                throw APIError.invalid("field 'name': at most 256 bytes and no control characters")
            }
            m.name = n
        }
        func int(_ obj: JSONValue, _ k: String, _ field: String, min lo: Int64 = 0) throws -> Int64? {
            guard let v = obj[k], v != .null else { return nil }
            guard case .int(let n) = v, n >= lo else { throw APIError.invalid("field '\(field).\(k)' must be an integer >= \(lo)") }
            return n
        }
        if let v = restartV {
            guard case .object = v else { throw APIError.invalid("field 'restart' must be an object") }
            if let p = v["policy"], p != .null {
                guard case .string(let s) = p, let k = RestartPolicyKind(rawValue: s) else {
                    throw APIError.invalid("field 'restart.policy' must be \"never\", \"on_failure\" or \"always\"")
                }
                m.restart.policy = k
            }
            if let n = try int(v, "max_restarts", "restart") { m.restart.maxRestarts = Int(n) }
            if let n = try int(v, "initial_backoff_ms", "restart") { m.restart.initialBackoffMs = n }
            if let n = try int(v, "max_backoff_ms", "restart") { m.restart.maxBackoffMs = n }
        }
        if let v = healthV {
            guard case .object = v else { throw APIError.invalid("field 'health_check' must be an object") }
            guard case .string(let t)? = v["type"], let kind = HealthKind(rawValue: t) else {
                throw APIError.invalid("field 'health_check.type' must be \"http\" or \"tcp\"")
            }
            guard let port = try int(v, "port", "health_check", min: 1), port <= 65535 else {
                throw APIError.invalid("field 'health_check.port' is required (1-65535)")
            }
            var h = HealthCheckConfig(kind: kind, port: UInt16(port))
            if let p = v["path"], p != .null {
                guard case .string(let s) = p, s.hasPrefix("/"), !s.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
                    throw APIError.invalid("field 'health_check.path' must be a path starting with '/'")
                }
                h.path = s
            }
            if let n = try int(v, "initial_delay_ms", "health_check") { h.initialDelayMs = n }
            if let n = try int(v, "interval_ms", "health_check", min: 1) { h.intervalMs = n }
            if let n = try int(v, "timeout_ms", "health_check", min: 1) { h.timeoutMs = n }
            if let n = try int(v, "failure_threshold", "health_check", min: 1) { h.failureThreshold = Int(n) }
            m.health = h
        }
        if let v = graceV {
            guard case .int(let n) = v, n >= 0 else { throw APIError.invalid("field 'stop_grace_ms' must be an integer >= 0") }
            m.stopGraceMs = n
        }
        return m
    }
}

// MARK: supervision

extension Server {
    /// A run of a managed process has started.
    func managedLaunched(_ p: ProcessRecord) {
        guard let m = p.managed else { return }
        m.nextRestartAt = nil
        m.status = m.spec.health == nil ? .running : .starting
        if m.spec.health != nil {
            m.healthStatus = .starting
            m.consecutiveHealthFailures = 0
            scheduleHealthCheck(p, afterMs: m.spec.health!.initialDelayMs)
        }
    }

    /// The leader of a managed run was reaped. Decides: stop, or restart (now or after backoff).
    func managedExited(_ p: ProcessRecord) {
        guard let m = p.managed else { return }
        loop.cancel(m.healthTimer); m.healthTimer = nil
        m.probe?.cancel(); m.probe = nil
        loop.cancel(m.killTimer); m.killTimer = nil
        var code: Int32? = nil, sig: Int32? = nil, oom = false
        switch p.status {
        case .exited(let c): code = c
        case .signaled(let s): sig = s
        case .oomKilled: sig = 9; oom = true
        case .running, .exitUnknown: break   // exit-status: unknown counts as a failure (not a clean exit)
        }
        m.lastExit = (code, sig, oom, p.endedAt ?? Clock.wallMs())
        if m.stopRequested {
            m.status = .stopped
            return
        }
        if m.restartRequested {
            m.restartRequested = false
            relaunch(p, reason: "restart requested")
            return
        }
        guard m.wantsRestart(exitedCleanly: code == 0) else {
            m.status = .stopped
            return
        }
        if m.restartLimitReached {
            m.status = .stopped
            m.lastError = "restart limit reached (\(m.restartCount) restarts)"
            log.warn("msg=\"managed process stopped\" id=\(Log.q(m.id)) reason=\"restart limit\"")
            return
        }
        let delay = m.nextBackoff(runtimeMs: (p.endedAt ?? 0) - p.startedAt)
        m.status = .backing_off
        m.nextRestartAt = Clock.wallMs() + delay
        log.info("msg=\"managed process backing off\" id=\(Log.q(m.id)) delay_ms=\(delay) restarts=\(m.restartCount)")
        m.restartTimer = loop.schedule(afterMs: delay) { [weak self, weak p] in
            guard let self, let p, let m = p.managed, m.status == .backing_off else { return }
            m.restartTimer = nil
            self.relaunch(p, reason: "policy \(m.spec.restart.policy.rawValue)")
        }
        testPause.reach(.backingOff, log)   // chaos: test-only pause point
    }

    /// Starts the next run of a managed process; on failure it backs off again (or stops at the limit).
    func relaunch(_ p: ProcessRecord, reason: String) {
        guard let m = p.managed, !m.stopRequested else { return }
        m.restartCount += 1
        do {
            // The previous run's leftovers are gone (killed when its leader was reaped); wait for its
            // pipes to be closed before reusing the record.
            for o in p.outputs { o.drain(maxBytes: 16 << 20); o.close() }
            loop.cancel(p.drainTimer); p.drainTimer = nil
            exitedOrder.removeAll { $0 === p }
            try launch(p)
            log.info("msg=\"managed process restarted\" id=\(Log.q(m.id)) pid=\(p.pid) restart_count=\(m.restartCount) reason=\(Log.q(reason))")
        } catch let e as APIError {
            m.lastError = e.message
            log.warn("msg=\"managed restart failed\" id=\(Log.q(m.id)) error=\(Log.q(e.message))")
            if m.restartLimitReached {
                m.status = .stopped
                maybeComplete(p)
            } else {
                let delay = m.nextBackoff(runtimeMs: 0)
                m.status = .backing_off
                m.nextRestartAt = Clock.wallMs() + delay
                m.restartTimer = loop.schedule(afterMs: delay) { [weak self, weak p] in
                    guard let self, let p, let m = p.managed, m.status == .backing_off else { return }
                    self.relaunch(p, reason: "retry after failed start")
                }
            }
        } catch {
            m.lastError = "\(error)"
        }
        let waiters = m.restartWaiters
        m.restartWaiters.removeAll()
        for w in waiters { w() }
    }

    /// DELETE of a managed process: stop the supervisor, TERM the tree, KILL after stop_grace_ms.
    func stopManaged(_ p: ProcessRecord) {
        guard let m = p.managed else { return }
        m.stopRequested = true
        markStateDirty(p)
        loop.cancel(m.restartTimer); m.restartTimer = nil
        loop.cancel(m.healthTimer); m.healthTimer = nil
        m.probe?.cancel(); m.probe = nil
        m.nextRestartAt = nil
        if p.isRunning {
            ownership.signalTree(p, Signal.term)
            m.killTimer = loop.schedule(afterMs: m.spec.stopGraceMs) { [weak self, weak p] in
                guard let self, let p, p.isRunning else { return }
                self.log.info("msg=\"stop grace expired, killing\" pid=\(p.pid)")
                self.ownership.signalTree(p, Signal.kill)
            }
        } else {
            m.status = .stopped
            if !exitedOrder.contains(where: { $0 === p }) { exitedOrder.append(p) }
            maybeComplete(p)
        }
    }

    // MARK: health checks

    func scheduleHealthCheck(_ p: ProcessRecord, afterMs: Int64) {
        guard let m = p.managed else { return }
        loop.cancel(m.healthTimer)
        m.healthTimer = loop.schedule(afterMs: afterMs) { [weak self, weak p] in
            guard let self, let p, let m = p.managed, p.isRunning, let h = m.spec.health else { return }
            m.healthTimer = nil
            m.probe = HealthProbe(loop: self.loop, config: h) { [weak self, weak p] ok, detail in
                guard let self, let p else { return }
                self.healthResult(p, ok: ok, detail: detail)
            }
        }
    }

    private func healthResult(_ p: ProcessRecord, ok: Bool, detail: String) {
        guard let m = p.managed, p.isRunning, let h = m.spec.health else { return }
        m.probe = nil
        if ok {
            m.consecutiveHealthFailures = 0
            m.healthStatus = .healthy
            if m.status == .starting { m.status = .running }
        } else {
            m.consecutiveHealthFailures += 1
            log.debug("msg=\"health check failed\" id=\(Log.q(m.id)) failures=\(m.consecutiveHealthFailures) detail=\(Log.q(detail))")
            if m.consecutiveHealthFailures >= h.failureThreshold {
                m.healthStatus = .unhealthy
                m.lastError = "health check failed \(m.consecutiveHealthFailures) times: \(detail)"
                if m.spec.restart.policy != .never && !m.restartLimitReached {
                    log.warn("msg=\"unhealthy, restarting\" id=\(Log.q(m.id)) pid=\(p.pid)")
                    m.restartRequested = true
                    ownership.signalTree(p, Signal.kill)
                    return
                }
            }
        }
        scheduleHealthCheck(p, afterMs: h.intervalMs)
    }
}

/// One health probe: a non-blocking connect to 127.0.0.1:port (tcp), plus for http a GET whose
/// status must be 2xx or 3xx, all within timeout_ms. Runs on the loop like any other source.
final class HealthProbe: EventHandler {
    private let loop: EventLoop
    private let config: HealthCheckConfig
    private var fd: Int32 = -1
    private var reg: Registration?
    private var timer: TimerID?
    private var done: ((Bool, String) -> Void)?
    private var response: [UInt8] = []
    private var sent = false

    init(loop: EventLoop, config: HealthCheckConfig, done: @escaping (Bool, String) -> Void) {
        self.loop = loop
        self.config = config
        self.done = done
        do {
            fd = try Socket.startConnect(host: "127.0.0.1", port: config.port)
            reg = try loop.register(fd, .output, handler: self)
            timer = loop.schedule(afterMs: config.timeoutMs) { [weak self] in self?.finish(false, "timed out after \(config.timeoutMs) ms") }
        } catch {
            loop.defer_ { [weak self] in self?.finish(false, "connect: \(error)") }
        }
    }

    func handle(_ events: EpollEvents, _ loop: EventLoop) {
        if !sent {
            if let err = Socket.pendingError(fd) {
                return finish(false, "connect: \(err.reason)")
            }
            if config.kind == .tcp { return finish(true, "connected") }
            let req = "GET \(config.path ?? "/") HTTP/1.1\r\nHost: 127.0.0.1:\(config.port)\r\nUser-Agent: tendd-health\r\nConnection: close\r\n\r\n"
            _ = try? FD.write(fd, Array(req.utf8), from: 0)
            sent = true
            if let reg { loop.setInterest(reg, .input) }
            return
        }
        var buf = [UInt8](repeating: 0, count: 512)
        let r = (try? buf.withUnsafeMutableBytes { try FD.read(fd, into: $0) }) ?? .eof
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
        if let reg { loop.deregister(reg) }
        reg = nil
        FD.close(fd); fd = -1
    }
}
