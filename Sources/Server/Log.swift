// Log: one line per event on stderr, logfmt-style ("level=info msg=... key=value"), with a
// syslog priority prefix when stderr is connected to journald (JOURNAL_STREAM is set).
//
// Lines are appended to one byte buffer and written with one write(2) per loop turn (the server
// flushes before the loop sleeps), not one write per line: at 10^5 requests/s a write per line was a
// tenth of the daemon's time (bench/profile.sh info). A warn or error line, and a buffer past
// `flushBytes`, are written at once (with everything before them, so the order is kept); `flush()`
// must also run before the process exits or re-executes. A crash loses at most the info/debug lines
// of the current loop turn.
import Sys

public final class Log {
    public var level: LogLevel
    private let journald: Bool
    private var pending: [UInt8] = []
    /// Past this many buffered bytes a line is written at once (bounded memory for a chatty turn).
    static let flushBytes = 16 << 10

    public init(level: LogLevel) {
        self.level = level
        journald = Proc.getenv("JOURNAL_STREAM") != nil
        pending.reserveCapacity(1024)
    }

    public func debug(_ msg: @autoclosure () -> String) { emit(.debug, msg) }
    public func info(_ msg: @autoclosure () -> String) { emit(.info, msg) }
    public func warn(_ msg: @autoclosure () -> String) { emit(.warn, msg) }
    public func error(_ msg: @autoclosure () -> String) { emit(.error, msg) }
    /// A line whose level is decided by the caller (the access line: debug when the request succeeded).
    public func at(_ l: LogLevel, _ msg: @autoclosure () -> String) { emit(l, msg) }

    /// True when a line at `l` would be written (to skip building what the line would say).
    public func enabled(_ l: LogLevel) -> Bool { l >= level }

    private func emit(_ l: LogLevel, _ msg: () -> String) {
        guard l >= level else { return }
        if journald { pending.append(contentsOf: l.syslogPrefix.utf8) } else {
            pending.append(contentsOf: "ts=".utf8)
            appendDecimal(Clock.wallMs())
            pending.append(0x20)
        }
        pending.append(contentsOf: "level=".utf8)
        pending.append(contentsOf: l.tag.utf8)
        pending.append(0x20)
        pending.append(contentsOf: msg().utf8)
        pending.append(0x0A)
        if l >= .warn || pending.count >= Log.flushBytes { flush() }
    }

    /// Writes the buffered lines (one write(2); what stderr does not take at once is dropped, as a
    /// blocked stderr must never stall the loop).
    public func flush() {
        guard !pending.isEmpty else { return }
        _ = try? FD.write(2, pending, from: 0)
        pending.removeAll(keepingCapacity: pending.capacity <= 64 << 10)
    }

    private func appendDecimal(_ v: Int64) {
        let n = UInt64(max(0, v))
        var div: UInt64 = 1
        while n / div >= 10 { div *= 10 }
        while div > 0 { pending.append(UInt8(48 + (n / div) % 10)); div /= 10 }
    }

    /// Quotes a value for logfmt when it needs it.
    public static func q(_ s: String) -> String {
        if !s.isEmpty && !s.utf8.contains(where: { $0 <= 0x20 || $0 == 0x22 || $0 == 0x3D || $0 >= 0x7F }) { return s }
        var out = "\""
        for c in s.unicodeScalars.prefix(200) {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c.value < 0x20 ? "?" : c)
            }
        }
        return out + "\""
    }
}
