// Top: `tend top`, a live table of the running processes (like `docker stats` / `top`): CPU %, memory,
// pids, output rate and status, sorted by CPU, fitting the terminal, refreshed every --interval.
// Not on a terminal (or with --json) it prints one snapshot: two samples --interval apart, so the
// rates are real. The figures come from the `resources` object of `GET /api/v1/processes`
// (the tree's cgroup leaf or /proc, read by the daemon on each request); rates are the differences
// between two samples over the time between them. The sampling math and the layout are pure
// functions (tested in TendTests); the command only fetches, sleeps and prints.
import ArgumentParser
import Sys
import JSON

/// One process in one sample of the list.
public struct TopSample: Equatable {
    public var handle: Int64, pid: Int64, name: String, status: String, command: String
    public var cpuUsec: Int64?, memoryBytes: Int64?, pids: Int64?, outputBytes: Int64?

    public init(handle: Int64, pid: Int64, name: String = "-", status: String = "running", command: String = "",
                cpuUsec: Int64? = nil, memoryBytes: Int64? = nil, pids: Int64? = nil, outputBytes: Int64? = nil) {
        (self.handle, self.pid, self.name, self.status, self.command) = (handle, pid, name, status, command)
        (self.cpuUsec, self.memoryBytes, self.pids, self.outputBytes) = (cpuUsec, memoryBytes, pids, outputBytes)
    }

    /// From a ProcessInfo with its `resources` object; nil for a process that is not running.
    public init?(_ info: JSONValue) {
        func int(_ v: JSONValue?) -> Int64? { if case .int(let n)? = v { return n } else { return nil } }
        guard case .string("running")? = info["status"], let h = int(info["handle"]), let p = int(info["pid"]) else { return nil }
        let row = ProcessRow(info, now: 0)
        let r = info["resources"]
        self.init(handle: h, pid: p, name: row.name, status: managedStatus(info) ?? row.status, command: row.command,
                  cpuUsec: int(r?["cpu_usec"]), memoryBytes: int(r?["memory_bytes"]), pids: int(r?["pids"]),
                  outputBytes: int(r?["output_bytes"]))
    }
}

private func managedStatus(_ info: JSONValue) -> String? {
    if case .string(let s)? = info["managed"]?["health_status"], s != "disabled" { return "running (\(s))" }
    return nil
}

/// One row of the table: rates over the interval between two samples.
public struct TopRow: Equatable {
    public var sample: TopSample
    public var cpuPercent: Double?
    public var outputPerSec: Double?
}

/// Rows for `current`, rated against `previous` (by handle: a managed process keeps it across restarts)
/// over `elapsedMs`; sorted by CPU (highest first; unknown last), then by pid.
public func topRows(previous: [TopSample], current: [TopSample], elapsedMs: Int64) -> [TopRow] {
    var before: [Int64: TopSample] = [:]
    for s in previous { before[s.handle] = s }
    let secs = Double(max(1, elapsedMs)) / 1000
    let rows = current.map { s -> TopRow in
        var row = TopRow(sample: s, cpuPercent: nil, outputPerSec: nil)
        guard let b = before[s.handle], b.pid == s.pid else { return row }   // new, or restarted: no rate yet
        if let c = s.cpuUsec, let p = b.cpuUsec { row.cpuPercent = Double(max(0, c - p)) / 1e6 / secs * 100 }
        if let o = s.outputBytes, let p = b.outputBytes { row.outputPerSec = Double(max(0, o - p)) / secs }
        return row
    }
    return rows.sorted { a, b in
        switch (a.cpuPercent, b.cpuPercent) {
        case let (x?, y?) where x != y: return x > y
        case (.some, nil): return true
        case (nil, .some): return false
        default: return a.sample.pid < b.sample.pid
        }
    }
}

/// 1536 → "1.5K", 3_221_225_472 → "3.0G"; nil → "-".
public func humanBytes(_ v: Double?) -> String {
    guard let v else { return "-" }
    let units = ["B", "K", "M", "G", "T"]
    var x = v, i = 0
    while x >= 1024 && i < units.count - 1 { x /= 1024; i += 1 }
    return i == 0 ? "\(Int(x))B" : oneDecimal(x) + units[i]
}

public func oneDecimal(_ v: Double) -> String {
    let tenths = Int64((v * 10).rounded())
    return "\(tenths / 10).\(abs(tenths % 10))"
}

/// The terminal screen: a summary line, the header, and as many rows as fit in `height`.
public func renderTop(_ rows: [TopRow], width: Int?, height: Int?, intervalMs: Int64, url: String) -> [String] {
    let total = rows.reduce(0.0) { $0 + ($1.cpuPercent ?? 0) }
    var lines = ["tend top  \(url)  \(rows.count) running  CPU \(oneDecimal(total))%  every \(formatMs(intervalMs))  (Ctrl-C quits)"]
    let room = height.map { max(1, $0 - 3) } ?? rows.count
    let shown = rows.prefix(room)
    let cells = shown.map { r -> [String] in
        [String(r.sample.pid), r.sample.name, r.cpuPercent.map(oneDecimal) ?? "-", humanBytes(r.sample.memoryBytes.map(Double.init)),
         r.sample.pids.map(String.init) ?? "-", r.outputPerSec.map { humanBytes($0) + "/s" } ?? "-", r.sample.status, r.sample.command]
    }
    lines += renderTable(header: ["PID", "NAME", "CPU%", "MEM", "PIDS", "OUT/s", "STATUS", "COMMAND"], rows: cells, width: width)
    if rows.count > shown.count { lines.append("… \(rows.count - shown.count) more") }
    return lines
}

/// Tab-separated, no header, raw numbers (for scripts): pid, name, cpu%, memory bytes, pids, output B/s, status, command.
public func topTSV(_ r: TopRow) -> String {
    [String(r.sample.pid), r.sample.name, r.cpuPercent.map(oneDecimal) ?? "-", r.sample.memoryBytes.map(String.init) ?? "-",
     r.sample.pids.map(String.init) ?? "-", r.outputPerSec.map { String(Int64($0.rounded())) } ?? "-", r.sample.status,
     r.sample.command].joined(separator: "\t")
}

public func topJSON(_ rows: [TopRow], intervalMs: Int64) -> JSONValue {
    func num(_ v: Double?) -> JSONValue { v.map { .double(($0 * 10).rounded() / 10) } ?? .null }
    func int(_ v: Int64?) -> JSONValue { v.map { .int($0) } ?? .null }
    return .object([
        ("interval_ms", .int(intervalMs)),
        ("processes", .array(rows.map { r in .object([
            ("pid", .int(r.sample.pid)), ("handle", .int(r.sample.handle)), ("name", r.sample.name == "-" ? .null : .string(r.sample.name)),
            ("status", .string(r.sample.status)), ("cpu_percent", num(r.cpuPercent)), ("memory_bytes", int(r.sample.memoryBytes)),
            ("pids", int(r.sample.pids)), ("output_bytes_per_sec", num(r.outputPerSec)), ("command", .string(r.sample.command)),
        ]) })),
    ])
}

func formatMs(_ ms: Int64) -> String { ms % 1000 == 0 ? "\(ms / 1000)s" : "\(oneDecimal(Double(ms) / 1000))s" }

public struct Top: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Live table of running processes: CPU %, memory, pids, output rate, status (sorted by CPU).",
        discussion: """
        On a terminal: refreshes every --interval until Ctrl-C, as many rows as fit. Otherwise: one snapshot (two samples --interval apart), tab-separated without a header: pid, name, cpu%, memory bytes, pids, output bytes/s, status, command. --json prints that snapshot as JSON.

        CPU and memory are the whole tree's (its cgroup leaf, or /proc without cgroups); "-" where the daemon has no figure (e.g. memory where the cgroup memory controller is not enabled).

        Examples:
          tend top
          tend top --interval 0.5
          tend top --json | jq '.processes[0]'
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Option(help: ArgumentHelp("Seconds between samples (0.1-60).", valueName: "SECONDS"))
    public var interval: Double = 1
    @Flag(help: "Print one snapshot as JSON.")
    public var json = false
    public init() {}

    public func validate() throws {
        guard interval >= 0.1, interval <= 60 else { throw ValidationError("--interval must be between 0.1 and 60 seconds") }
    }

    public func run() throws {
        let ms = Int64((interval * 1000).rounded())
        let live = !json && Terminal.isTerminal(1)
        let sigfd = live ? ((try? Signal.interceptFD([Signal.int, Signal.term, Signal.hup])) ?? -1) : -1
        try withClient(conn) { client in
            func sample() throws -> (Int64, [TopSample]) {
                let v = try client.call("GET", "/api/v1/processes").json()
                var list: [TopSample] = []
                if case .array(let a)? = v["processes"] { list = a.compactMap(TopSample.init) }
                return (Clock.monotonicMs(), list)
            }
            /// Sleeps `ms`; false if a signal asked to stop.
            func pause() -> Bool {
                if sigfd < 0 { Poll.sleepMs(ms); return true }
                return !((try? Poll.wait([sigfd], events: Poll.readable, timeoutMs: Int32(ms)))?.first ?? false)
            }
            var (t0, prev) = try sample()
            if !live {
                Poll.sleepMs(ms)
                let (t1, cur) = try sample()
                let rows = topRows(previous: prev, current: cur, elapsedMs: t1 - t0)
                if json { printJSON(topJSON(rows, intervalMs: t1 - t0)) } else { rows.map(topTSV).forEach(printLine) }
                return
            }
            try? FD.writeFully(1, Array("\u{1B}[?25l".utf8))   // hide the cursor while refreshing
            defer { try? FD.writeFully(1, Array("\u{1B}[?25h\n".utf8)) }
            while pause() {
                let (t1, cur) = try sample()
                let rows = topRows(previous: prev, current: cur, elapsedMs: t1 - t0)
                let lines = renderTop(rows, width: Terminal.columns(1), height: Terminal.rows(1), intervalMs: ms, url: client.address.description)
                try? FD.writeFully(1, Array(("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\n")).utf8))
                (t0, prev) = (t1, cur)
            }
        }
    }
}
