// The JSON value tree used for the daemon's API bodies: `JSONValue`, its equality, object key lookup,
// literal conformances for building values in code, and compact serialization into a byte buffer.
// Parsing lives in JSONParser.swift; the low-level byte writers in JSONEncoding.swift.

/// A JSON value. Objects keep their keys in document order (duplicates included).
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits in Int64.
    case int(Int64)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Key/value pairs in document order.
    case object([(String, JSONValue)])

    /// Structural equality. `.int(1)` and `.double(1)` are different values, and objects compare their
    /// pairs in order (`{"a":1,"b":2}` != `{"b":2,"a":1}`).
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for i in a.indices where a[i].0 != b[i].0 || a[i].1 != b[i].1 { return false }
            return true
        default: return false
        }
    }

    /// The value for `key` in an object (the last one if the key is duplicated); nil if absent or if
    /// this is not an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let pairs) = self else { return nil }
        var i = pairs.count
        while i > 0 {
            i -= 1
            if pairs[i].0 == key { return pairs[i].1 }
        }
        return nil
    }

    /// Compact JSON text (no insignificant whitespace), as UTF-8.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        serialize(into: &out)
        return out
    }

    /// Appends the compact JSON text of this value to `out`.
    public func serialize(into out: inout [UInt8]) {
        switch self {
        case .null: appendASCII("null", to: &out)
        case .bool(let b): b ? appendASCII("true", to: &out) : appendASCII("false", to: &out)
        case .int(let v): appendJSONInt(v, to: &out)
        case .double(let d): appendJSONDouble(d, to: &out)
        case .string(let s): appendJSONString(s, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (i, e) in elements.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                e.serialize(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let pairs):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in pairs.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendJSONString(k, to: &out)
                out.append(UInt8(ascii: ":"))
                v.serialize(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}

// Literals, so values can be written as `["pid": 12, "name": "web", "tags": ["a"]]`.
// (No ExpressibleByNilLiteral on purpose: it would make `value["key"] == nil` ambiguous.)
extension JSONValue: ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
}
