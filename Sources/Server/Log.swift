// Log: one line per event on stderr, logfmt-style ("level=info msg=... key=value"), with a
// syslog priority prefix when stderr is connected to journald (JOURNAL_STREAM is set).
import Sys

public final class Log {
    public var level: LogLevel
    private let journald: Bool

    public init(level: LogLevel) {
        self.level = level
        journald = Proc.getenv("JOURNAL_STREAM") != nil
    }

    public func debug(_ msg: @autoclosure () -> String) { emit(.debug, msg) }
    public func info(_ msg: @autoclosure () -> String) { emit(.info, msg) }
    public func warn(_ msg: @autoclosure () -> String) { emit(.warn, msg) }
    public func error(_ msg: @autoclosure () -> String) { emit(.error, msg) }

    private func emit(_ l: LogLevel, _ msg: () -> String) {
        guard l >= level else { return }
        var line = journald ? l.syslogPrefix : "ts=\(Clock.wallMs()) "
        line += "level=\(l.tag) \(msg())\n"
        let bytes = Array(line.utf8)
        _ = try? FD.write(2, bytes, from: 0)
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
