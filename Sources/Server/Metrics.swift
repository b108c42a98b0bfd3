// Metrics: the daemon's counters and histograms, and `GET /metrics` in the Prometheus text exposition
// format 0.0.4. The Server owns one `Metrics` (nil with `--no-metrics`); call sites increment it with
// one marked line (`// metrics:`). Everything on a hot path is a stored integer or a fixed bucket array
// indexed by an enum known at compile time: no dictionary, no string, no allocation per event.
// Gauges (processes by state, followers, connections) are not kept up to date at all: they are
// counted from the tables when scraped, which costs one walk of the process table per scrape.
//
// `Exposition` is the text encoder: a pure builder with unit tests (ServerTests/MetricsTests).
// Per-process series (`?per_process=1`, never by default) come from `Resources.swift` (read a batch
// per loop turn): one series per running process and metric, so their number is bounded by `--max-processes`.
import Sys
import Reactor
import Supervision
import JSON
import HTTP1

final class Metrics {
    /// The `route` label of `tendd_http_requests_total` (`none`: rejected before routing: 401, 404, 400).
    enum RouteLabel: Int, CaseIterable {
        case none, health, info, list, start, run, get, delete, signal, restart, stdin, stdin_close, output, follow, raw, metrics, files, tunnel, pty
    }
    /// Status codes the API answers with; anything else is counted as `other`.
    static let codes: [Int] = [101, 200, 201, 204, 206, 400, 401, 403, 404, 405, 408, 409, 413, 416, 426, 429, 431, 500, 501, 502, 503, 507]
    enum SpawnFailure: Int, CaseIterable { case spawn_failed, user_not_found, limit_reached, other }
    enum ExitReason: Int, CaseIterable { case exited, signaled, timed_out, oom, killed, unknown }

    private(set) var requests = [UInt64](repeating: 0, count: RouteLabel.allCases.count * (Metrics.codes.count + 1))
    private(set) var requestDuration = [Histogram](repeating: Histogram(bounds: Histogram.requestBounds), count: RouteLabel.allCases.count)
    private(set) var startLatency = Histogram(bounds: Histogram.requestBounds)
    var starts: UInt64 = 0
    private(set) var spawnFailures = [UInt64](repeating: 0, count: SpawnFailure.allCases.count)
    private(set) var exits = [UInt64](repeating: 0, count: ExitReason.allCases.count)
    var managedRestarts: UInt64 = 0
    var healthCheckFailures: UInt64 = 0
    /// Indexed by OutputStream: 0 stdout, 1 stderr.
    private(set) var outputBytes: [UInt64] = [0, 0]
    private(set) var outputLines: [UInt64] = [0, 0]
    var sseEvents: UInt64 = 0
    /// Of those, events sent from an encoding shared by several followers (SharedEvents.swift).
    var sseSharedEvents: UInt64 = 0
    var connectionsRefused: UInt64 = 0
    /// Journal drops of records no longer in the table (the held ones are summed when scraped).
    private(set) var retiredDroppedLines: UInt64 = 0
    private(set) var retiredDroppedBytes: UInt64 = 0
    private(set) var restores: [UInt64] = [0, 0]   // crash, upgrade
    private(set) var adopted: UInt64 = 0
    /// Handles whose tree was killed on request (DELETE, signal 9) and have not exited yet.
    private var treeKills = Set<Int>()
    let loopStats = LoopStats()

    // MARK: hooks

    func requestDone(_ route: Route?, status: Int, ns: Int64) {
        let r = Metrics.label(route).rawValue
        let c = Metrics.codes.firstIndex(of: status) ?? Metrics.codes.count
        requests[r * (Metrics.codes.count + 1) + c] &+= 1
        requestDuration[r].observe(ns: ns)
    }

    func startLatency(ns: Int64) { startLatency.observe(ns: ns) }

    func spawnFailed(_ e: Error) {
        let k: SpawnFailure
        switch (e as? APIError)?.code {
        case "SPAWN_FAILED": k = .spawn_failed
        case "USER_NOT_FOUND": k = .user_not_found
        case "LIMIT_REACHED": k = .limit_reached
        default: k = .other
        }
        spawnFailures[k.rawValue] &+= 1
    }

    func treeKillRequested(_ p: ProcessRecord) { if p.isRunning { treeKills.insert(p.handle) } }

    /// The leader was reaped and its status set: count the exit under its reason.
    func exited(_ p: ProcessRecord) {
        let killed = treeKills.remove(p.handle) != nil
        let r: ExitReason
        switch p.status {
        case _ where p.machine.timedOut: r = .timed_out
        case .oomKilled: r = .oom
        case .signaled where killed: r = .killed
        case .signaled: r = .signaled
        case .exited, .running: r = .exited
        case .exitUnknown: r = .unknown   // exit-status: said so, never counted as a code
        }
        exits[r.rawValue] &+= 1
    }

    @inline(__always)
    func output(_ stream: OutputStream, bytes: Int, lines: Int) {
        let i = stream == .stdout ? 0 : 1
        outputBytes[i] &+= UInt64(bytes)
        outputLines[i] &+= UInt64(lines)
    }

    /// A record leaves the table: keep its journal's drops in the totals.
    func retire(_ p: ProcessRecord) {
        retiredDroppedLines &+= p.journal.droppedLines
        retiredDroppedBytes &+= p.journal.droppedBytes
    }

    func restored(upgrade: Bool, adopted n: Int) {
        restores[upgrade ? 1 : 0] &+= 1
        adopted &+= UInt64(n)
    }

    static func label(_ r: Route?) -> RouteLabel {
        guard let r else { return .none }
        switch r {
        case .health: return .health
        case .info: return .info
        case .metrics: return .metrics
        case .listProcesses: return .list
        case .startProcess: return .start
        case .run: return .run
        case .getProcess: return .get
        case .deleteProcess: return .delete
        case .signal: return .signal
        case .restart: return .restart
        case .stdin: return .stdin
        case .stdinClose: return .stdin_close
        case .output: return .output
        case .follow: return .follow
        case .raw: return .raw
        case .files: return .files
        case .tunnelTCP: return .tunnel
        case .ptyList, .ptyCreate, .ptyGet, .ptyDelete, .ptyResize, .ptyWS: return .pty
        }
    }
}

/// The Prometheus text format 0.0.4: `# HELP`, `# TYPE`, then `name{label="value"} number` lines.
struct Exposition {
    private(set) var out: [UInt8] = []
    init(capacity: Int = 16 << 10) { out.reserveCapacity(capacity) }

    mutating func family(_ name: String, _ type: String, _ help: String) {
        out.append(contentsOf: "# HELP \(name) ".utf8)
        for b in help.utf8 {
            switch b {
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
            default: out.append(b)
            }
        }
        out.append(contentsOf: "\n# TYPE \(name) \(type)\n".utf8)
    }

    mutating func sample(_ name: String, _ value: UInt64) { sample(name, [], value) }
    mutating func sample(_ name: String, _ value: Int64) { sample(name, [], value) }
    mutating func sample(_ name: String, _ value: Double) { sample(name, [], value) }
    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        head(name, labels); out.append(contentsOf: String(value).utf8); out.append(0x0A)
    }
    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Int64) {
        head(name, labels); out.append(contentsOf: String(value).utf8); out.append(0x0A)
    }
    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        head(name, labels); out.append(contentsOf: Exposition.format(value).utf8); out.append(0x0A)
    }

    /// A histogram in seconds from nanosecond buckets: cumulative `_bucket{le=…}`, `_sum`, `_count`.
    mutating func histogram(_ name: String, _ labels: [(String, String)] = [], _ h: Histogram) {
        var cumulative: UInt64 = 0
        for (i, bound) in h.bounds.enumerated() {
            cumulative &+= h.counts[i]
            sample(name + "_bucket", labels + [("le", Exposition.seconds(bound))], cumulative)
        }
        sample(name + "_bucket", labels + [("le", "+Inf")], h.count)
        sample(name + "_sum", labels, Double(h.sumNs) / 1e9)
        sample(name + "_count", labels, h.count)
    }

    private mutating func head(_ name: String, _ labels: [(String, String)]) {
        out.append(contentsOf: name.utf8)
        guard !labels.isEmpty else { out.append(0x20); return }
        out.append(0x7B)
        for (i, (k, v)) in labels.enumerated() {
            if i > 0 { out.append(0x2C) }
            out.append(contentsOf: k.utf8)
            out.append(contentsOf: [0x3D, 0x22])
            for b in v.utf8 {
                switch b {
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
                default: out.append(b)
                }
            }
            out.append(0x22)
        }
        out.append(contentsOf: [0x7D, 0x20])
    }

    /// Go's ParseFloat reads all of these: integers without a fraction, NaN, +Inf, -Inf.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// A bucket bound in seconds, exact for the decimal bounds used here (100 µs → "0.0001").
    static func seconds(_ ns: Int64) -> String { format(Double(ns) / 1e9) }
}

extension Server {
    /// `GET /metrics`: every family, then (with `?per_process=1`) one series per running process.
    func renderMetrics(_ m: Metrics, perProcess: (records: [ProcessRecord], usages: [TreeUsage?])? = nil) -> [UInt8] {
        var e = Exposition()
        func counter(_ name: String, _ help: String, _ v: UInt64) { e.family(name, "counter", help); e.sample(name, v) }
        func gauge(_ name: String, _ help: String, _ v: Int64) { e.family(name, "gauge", help); e.sample(name, v) }

        e.family("tendd_build_info", "gauge", "Version of tendd (always 1).")
        e.sample("tendd_build_info", [("version", tendVersion)], Int64(1))

        // Processes: counted from the table now.
        var byState = [Int64](repeating: 0, count: 4)
        var droppedLines = m.retiredDroppedLines, droppedBytes = m.retiredDroppedBytes
        var sse: Int64 = 0, raw: Int64 = 0
        for p in table.processes.values {
            switch p.status {
            case .running: byState[0] += 1
            case .exited, .exitUnknown: byState[1] += 1
            case .signaled: byState[2] += 1
            case .oomKilled: byState[3] += 1
            }
            droppedLines &+= p.journal.droppedLines
            droppedBytes &+= p.journal.droppedBytes
            for f in p.followers { if f is RawFollower { raw += 1 } else { sse += 1 } }
        }
        e.family("tendd_processes", "gauge", "Processes held, by state (exited ones until --max-exited / --exited-ttl-s forget them).")
        for (i, s) in ["running", "exited", "signaled", "oom_killed"].enumerated() { e.sample("tendd_processes", [("state", s)], byState[i]) }
        gauge("tendd_processes_max", "Running processes allowed (--max-processes).", Int64(config.maxProcesses))
        counter("tendd_process_starts_total", "Process runs spawned (managed restarts included).", m.starts)
        e.family("tendd_process_spawn_failures_total", "counter", "Start requests and managed restarts that spawned nothing, by reason.")
        for k in Metrics.SpawnFailure.allCases { e.sample("tendd_process_spawn_failures_total", [("reason", "\(k)")], m.spawnFailures[k.rawValue]) }
        e.family("tendd_process_exits_total", "counter", "Process runs reaped, by reason (killed: its tree was killed on request, by DELETE or signal 9).")
        for k in Metrics.ExitReason.allCases { e.sample("tendd_process_exits_total", [("reason", "\(k)")], m.exits[k.rawValue]) }
        e.family("tendd_process_start_duration_seconds", "histogram", "Start requests: from the request head to the child's exec.")
        e.histogram("tendd_process_start_duration_seconds", [], m.startLatency)
        counter("tendd_managed_restarts_total", "Restarts of managed processes (automatic and requested).", m.managedRestarts)
        counter("tendd_health_check_failures_total", "Failed health checks of managed processes.", m.healthCheckFailures)

        // Output.
        e.family("tendd_output_bytes_total", "counter", "Bytes read from the children's output pipes, by stream.")
        e.sample("tendd_output_bytes_total", [("stream", "stdout")], m.outputBytes[0])
        e.sample("tendd_output_bytes_total", [("stream", "stderr")], m.outputBytes[1])
        e.family("tendd_output_lines_total", "counter", "Lines captured into the journals, by stream.")
        e.sample("tendd_output_lines_total", [("stream", "stdout")], m.outputLines[0])
        e.sample("tendd_output_lines_total", [("stream", "stderr")], m.outputLines[1])
        counter("tendd_journal_dropped_lines_total", "Oldest lines dropped from journals over their --journal-bytes bound.", droppedLines)
        counter("tendd_journal_dropped_bytes_total", "Text bytes of the lines dropped from journals.", droppedBytes)
        e.family("tendd_followers", "gauge", "Streaming readers connected, by kind (sse: follow and run streams; raw: …/raw?follow).")
        e.sample("tendd_followers", [("kind", "sse")], sse)
        e.sample("tendd_followers", [("kind", "raw")], raw)
        counter("tendd_sse_events_total", "Output events written to SSE streams.", m.sseEvents)
        counter("tendd_sse_shared_events_total", "Of those, events sent from one encoding shared by several followers of a process.", m.sseSharedEvents)

        // HTTP.
        e.family("tendd_http_requests_total", "counter", "HTTP requests answered, by route and status code.")
        let width = Metrics.codes.count + 1
        for r in Metrics.RouteLabel.allCases {
            for c in 0..<width {
                let n = m.requests[r.rawValue * width + c]
                if n == 0 { continue }   // a series appears once it happened
                e.sample("tendd_http_requests_total", [("route", "\(r)"), ("code", c < Metrics.codes.count ? String(Metrics.codes[c]) : "other")], n)
            }
        }
        e.family("tendd_http_request_duration_seconds", "histogram", "From the request head to the end of the response (of the stream, for streaming routes).")
        for r in Metrics.RouteLabel.allCases where m.requestDuration[r.rawValue].count > 0 {
            e.histogram("tendd_http_request_duration_seconds", [("route", "\(r)")], m.requestDuration[r.rawValue])
        }
        gauge("tendd_connections", "Open client connections.", Int64(connections.count))
        gauge("tendd_connections_max", "Client connections allowed (--max-connections).", Int64(config.maxConnections))
        counter("tendd_connections_refused_total", "Connections refused with 503 over --max-connections or while stopping.", m.connectionsRefused)

        // The loop.
        e.family("tendd_event_loop_lag_seconds", "histogram", "Per loop iteration: epoll_wait's return to the last ready source handled, or the lateness of due timers.")
        e.histogram("tendd_event_loop_lag_seconds", [], m.loopStats.lag)
        e.family("tendd_event_loop_iteration_seconds", "histogram", "Per loop iteration: epoll_wait's return to the end of the iteration (the loop's busy time).")
        e.histogram("tendd_event_loop_iteration_seconds", [], m.loopStats.iteration)

        // Survival.
        e.family("tendd_restores_total", "counter", "Times this daemon image re-adopted processes, by kind (crash: after a restart; upgrade: after a re-exec).")
        e.sample("tendd_restores_total", [("kind", "crash")], m.restores[0])
        e.sample("tendd_restores_total", [("kind", "upgrade")], m.restores[1])
        counter("tendd_adopted_processes_total", "Processes re-adopted at a restore.", m.adopted)

        // The standard process_* metrics of the daemon itself.
        let s = Usage.ofSelf()
        e.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
        e.sample("process_cpu_seconds_total", s.cpuSeconds)
        e.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
        e.sample("process_resident_memory_bytes", s.residentBytes)
        e.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
        e.sample("process_virtual_memory_bytes", s.virtualBytes)
        e.family("process_open_fds", "gauge", "Number of open file descriptors.")
        e.sample("process_open_fds", Int64(s.openFDs))
        e.family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
        e.sample("process_max_fds", s.maxFDs)
        e.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
        e.sample("process_start_time_seconds", s.startTimeSeconds)

        if let perProcess { renderPerProcess(&e, perProcess.records, perProcess.usages) }
        return e.out
    }
}

extension Server {
    /// `GET /metrics[?per_process=1]`. 404 with `--no-metrics`; 400 for a `per_process` that is not 0/1/true/false.
    func metricsResponse(_ head: HTTP1.HTTPRequestHead, _ connection: Connection) throws -> Outcome {
        guard let metrics else { throw APIError.notFound("metrics are off (--no-metrics)") }
        var perProcess = false
        for pair in (head.query ?? "").split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv[0] == "per_process" else { continue }
            switch kv.count > 1 ? kv[1] : "" {
            case "1", "true": perProcess = true
            case "0", "false": perProcess = false
            default: throw APIError.invalid("per_process must be 1, 0, true or false")
            }
        }
        let type = "text/plain; version=0.0.4; charset=utf-8"
        guard perProcess else { return .bytes(200, type, renderMetrics(metrics), []) }
        // The running processes' usage is read a batch per loop turn (Resources.swift).
        let running = table.processes.values.filter { $0.isRunning }.sorted { $0.handle < $1.handle }
        return withResources(running, connection) { [unowned self] usages in
            .bytes(200, type, self.renderMetrics(metrics, perProcess: (running, usages)), [])
        }
    }
}
