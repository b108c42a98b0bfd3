// Format: signal names, exit codes, the `ps` table, ages, colors. Pure functions (tested in TendTests).
import JSON

/// Linux signal numbers by name (without the SIG prefix).
public let signalNames: [(String, Int32)] = [
    ("HUP", 1), ("INT", 2), ("QUIT", 3), ("ILL", 4), ("TRAP", 5), ("ABRT", 6), ("IOT", 6), ("BUS", 7), ("FPE", 8),
    ("KILL", 9), ("USR1", 10), ("SEGV", 11), ("USR2", 12), ("PIPE", 13), ("ALRM", 14), ("TERM", 15),
    ("STKFLT", 16), ("CHLD", 17), ("CLD", 17), ("CONT", 18), ("STOP", 19), ("TSTP", 20), ("TTIN", 21), ("TTOU", 22),
    ("URG", 23), ("XCPU", 24), ("XFSZ", 25), ("VTALRM", 26), ("PROF", 27), ("WINCH", 28), ("IO", 29), ("POLL", 29),
    ("PWR", 30), ("SYS", 31),
]

/// `TERM`, `SIGTERM`, `term`, `15`, `RTMIN+2`, `SIGRTMAX-1` → the number (1…64), else nil.
public func parseSignal(_ text: String) -> Int32? {
    if let n = Int32(text) { return (1...64).contains(n) ? n : nil }
    var s = text.uppercased()
    if s.hasPrefix("SIG") { s = String(s.dropFirst(3)) }
    if let hit = signalNames.first(where: { $0.0 == s }) { return hit.1 }
    func rt(_ base: String, _ v: Int32) -> Int32? {
        guard s.hasPrefix(base) else { return nil }
        let rest = s.dropFirst(base.count)
        if rest.isEmpty { return v }
        guard let off = Int32(rest.dropFirst()), off >= 0 else { return nil }
        let n = rest.first == "+" ? v + off : rest.first == "-" ? v - off : -1
        return (34...64).contains(n) ? n : nil
    }
    return rt("RTMIN", 34) ?? rt("RTMAX", 64)
}

/// `SIGTERM` for 15, `SIG42` for an unnamed number.
public func signalName(_ n: Int64) -> String {
    if let hit = signalNames.first(where: { Int64($0.1) == n }) { return "SIG" + hit.0 }
    return "SIG\(n)"
}

/// Exit status of `tend run`: the command's code; 128+signal when killed (like a shell); 124 for a timeout.
public func runExitStatus(exitCode: Int64?, signal: Int64?, timedOut: Bool) -> Int32 {
    if timedOut { return 124 }
    if let c = exitCode { return Int32(truncatingIfNeeded: c & 0xFF) }
    if let s = signal { return Int32(128 + s) }
    return 125
}

/// "5s", "3m", "2h", "4d" since `startedMs` (wall ms) at `nowMs`.
public func age(_ startedMs: Int64, now nowMs: Int64) -> String {
    let s = max(0, (nowMs - startedMs) / 1000)
    if s < 60 { return "\(s)s ago" }
    if s < 3600 { return "\(s / 60)m ago" }
    if s < 86400 { return "\(s / 3600)h ago" }
    return "\(s / 86400)d ago"
}

/// One `ps` row.
public struct ProcessRow: Equatable {
    public var pid: String, name: String, status: String, exit: String, started: String, command: String
    public var cells: [String] { [pid, name, status, exit, started, command] }

    public init(pid: String, name: String, status: String, exit: String, started: String, command: String) {
        (self.pid, self.name, self.status, self.exit, self.started, self.command) = (pid, name, status, exit, started, command)
    }

    public init(_ info: JSONValue, now: Int64) {
        func int(_ v: JSONValue?) -> Int64? { if case .int(let n)? = v { return n } else { return nil } }
        func str(_ v: JSONValue?) -> String? { if case .string(let s)? = v { return s } else { return nil } }
        pid = int(info["pid"]).map { String($0) } ?? "?"
        name = str(info["managed"]?["name"]) ?? "-"
        status = str(info["status"]) ?? "?"
        if let c = int(info["exit_code"]) { exit = String(c) } else if let s = int(info["signal"]) { exit = signalName(s) } else { exit = "-" }
        started = int(info["started_at"]).map { age($0, now: now) } ?? "-"
        var cmd = [str(info["command"]) ?? ""]
        if case .array(let a)? = info["args"] { for x in a { if case .string(let s) = x { cmd.append(s) } } }
        command = cmd.map(shellQuote).joined(separator: " ")
    }
}

/// Quotes a word for display when it has spaces or shell metacharacters.
public func shellQuote(_ s: String) -> String {
    if s.isEmpty { return "''" }
    let safe = s.unicodeScalars.allSatisfy { c in
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || "-_./=:,+@%".unicodeScalars.contains(c)
    }
    if safe { return s }
    return "'" + s.replacingAll("'", with: "'\\''") + "'"
}

public enum Style: String {
    case reset = "0", bold = "1", dim = "2", red = "31", green = "32", yellow = "33", cyan = "36"
    public func wrap(_ s: String, _ on: Bool) -> String { on ? "\u{1B}[\(rawValue)m\(s)\u{1B}[0m" : s }
}

/// Lays out a table: columns padded to their widest cell, the last column cut to fit `width`.
/// `style` colors a cell (after padding, so escape codes do not disturb alignment).
public func renderTable(header: [String], rows: [[String]], width: Int?, style: ((Int, Int, String) -> String)? = nil) -> [String] {
    let all = [header] + rows
    let n = header.count
    var widths = [Int](repeating: 0, count: n)
    for r in all { for (i, c) in r.enumerated() where i < n - 1 { widths[i] = max(widths[i], c.count) } }
    var lines: [String] = []
    for (ri, r) in all.enumerated() {
        var line = ""
        var used = 0
        for (i, c) in r.enumerated() {
            var cell = c
            if i < n - 1 {
                cell += String(repeating: " ", count: widths[i] - c.count) + "  "
            } else if let w = width {
                let room = max(8, w - used)
                if cell.count > room { cell = String(cell.prefix(room - 1)) + "…" }
            }
            used += cell.count
            if ri > 0, let style { cell = style(ri - 1, i, cell) }
            line += cell
        }
        while line.hasSuffix(" ") { line.removeLast() }
        lines.append(ri == 0 && style != nil ? Style.bold.wrap(line, true) : line)
    }
    return lines
}

extension String {
    func replacingAll(_ what: Character, with: String) -> String {
        var out = ""
        for c in self { if c == what { out += with } else { out.append(c) } }
        return out
    }
}

/// `K=V` → (K, V); nil without `=` or with an empty name.
public func parseEnvPair(_ s: String) -> (String, String)? {
    guard let eq = s.firstIndex(of: "="), eq != s.startIndex else { return nil }
    return (String(s[..<eq]), String(s[s.index(after: eq)...]))
}
