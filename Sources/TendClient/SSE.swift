// SSE: an incremental Server-Sent Events parser (the subset tendd sends: `id:`, `event:`, `data:`,
// comments, blank-line dispatch), and the typed events of the follow and run streams.
import JSON

public struct SSEEvent: Equatable {
    public var id: String?
    public var event: String
    public var data: String
}

/// Feed bytes in any split; complete events come out.
public struct SSEParser {
    private var line: [UInt8] = []
    private var id: String?
    private var event: String?
    private var data: [String] = []
    private var sawField = false

    public init() {}

    public mutating func feed(_ bytes: [UInt8]) -> [SSEEvent] {
        var out: [SSEEvent] = []
        for b in bytes {
            if b == 0x0A {
                if line.last == 0x0D { line.removeLast() }
                if let e = takeLine() { out.append(e) }
                line.removeAll(keepingCapacity: true)
            } else {
                line.append(b)
            }
        }
        return out
    }

    private mutating func takeLine() -> SSEEvent? {
        if line.isEmpty {
            defer { id = nil; event = nil; data = []; sawField = false }
            guard sawField else { return nil }
            return SSEEvent(id: id, event: event ?? "message", data: data.joined(separator: "\n"))
        }
        if line.first == UInt8(ascii: ":") { return nil }  // comment (keep-alive)
        let text = String(decoding: line, as: UTF8.self)
        var name = Substring(text), value = Substring("")
        if let c = text.firstIndex(of: ":") {
            name = text[..<c]
            value = text[text.index(after: c)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
        }
        switch name {
        case "id": id = String(value); sawField = true
        case "event": event = String(value); sawField = true
        case "data": data.append(String(value)); sawField = true
        default: break
        }
        return nil
    }
}

/// What a follow or run stream tells the client.
public enum StreamEvent: Equatable {
    case output(id: UInt64?, line: String, stream: String?, timestamp: Int64)
    case gap(droppedLines: Int64, droppedBytes: Int64)
    case started(pid: Int64)
    case exit(exitCode: Int64?, signal: Int64?, reason: String?)
    case eof
    case other

    /// Interprets one SSE event the way the SDK does: by its data fields (event names are a hint).
    public static func from(_ e: SSEEvent) -> StreamEvent {
        if e.event == "eof" { return .eof }
        guard let v = try? parseJSON(Array(e.data.utf8)), case .object = v else { return .other }
        func int(_ k: String) -> Int64? { if case .int(let n)? = v[k] { return n } else { return nil } }
        func str(_ k: String) -> String? { if case .string(let s)? = v[k] { return s } else { return nil } }
        if e.event == "gap" || v["dropped_lines"] != nil {
            return .gap(droppedLines: int("dropped_lines") ?? 0, droppedBytes: int("dropped_bytes") ?? 0)
        }
        if let line = str("line") {
            return .output(id: e.id.flatMap { UInt64($0) }, line: line, stream: str("stream"), timestamp: int("timestamp") ?? 0)
        }
        if let pid = int("pid"), v["started_at"] != nil { return .started(pid: pid) }
        let code = int("exit_code"), sig = int("signal")
        if code != nil || sig != nil || e.event == "exit" {
            return .exit(exitCode: code, signal: sig, reason: str("reason"))
        }
        return .other
    }
}
