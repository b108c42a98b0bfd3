// URLCoding.swift — decoding helpers for request targets: percent-decoding of path segments and
// parsing of application/x-www-form-urlencoded query strings. Both work on raw target text as
// produced by the parser (`HTTPRequestHead.path` / `.query`) and never throw: malformed input
// yields nil (percentDecode) or is skipped (parseQuery).

/// Percent-decodes a path segment (`"%20"` → space; `'+'` is NOT special).
/// Returns nil on a malformed escape (`%` not followed by two hex digits) or if the decoded
/// bytes are not valid UTF-8.
public func percentDecode<S: StringProtocol>(_ s: S) -> String? {
    percentDecodeBytes(s.utf8, plusAsSpace: false)
}

/// Parses an application/x-www-form-urlencoded query: split on '&', then on the first '=',
/// '+' → space, then percent-decode name and value. A piece without '=' is a name with an
/// empty value. Empty pieces, pieces with an empty name, and pieces whose name or value fails
/// to decode are skipped.
public func parseQuery(_ q: String) -> [(name: String, value: String)] {
    var result: [(name: String, value: String)] = []
    for piece in q.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
        let name: Substring.UTF8View.SubSequence
        let value: Substring.UTF8View.SubSequence
        if let eq = piece.firstIndex(of: UInt8(ascii: "=")) {
            name = piece[piece.startIndex..<eq]
            value = piece[piece.index(after: eq)...]
        } else {
            name = piece[...]
            value = piece[piece.endIndex...]
        }
        if name.isEmpty { continue }
        guard let n = percentDecodeBytes(name, plusAsSpace: true),
              let v = percentDecodeBytes(value, plusAsSpace: true) else { continue }
        result.append((name: n, value: v))
    }
    return result
}

/// Convenience: the first value for `name` (exact, case-sensitive match) in a query list.
public func queryValue(_ pairs: [(name: String, value: String)], _ name: String) -> String? {
    for p in pairs where p.name == name { return p.value }
    return nil
}

private func percentDecodeBytes<C: Collection>(_ input: C, plusAsSpace: Bool) -> String?
where C.Element == UInt8 {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(input.count)
    var i = input.startIndex
    while i != input.endIndex {
        let c = input[i]
        if c == UInt8(ascii: "%") {
            let h1 = input.index(after: i)
            guard h1 != input.endIndex, let hi = hexValue(input[h1]) else { return nil }
            let h2 = input.index(after: h1)
            guard h2 != input.endIndex, let lo = hexValue(input[h2]) else { return nil }
            bytes.append(UInt8(hi << 4 | lo))
            i = input.index(after: h2)
        } else {
            bytes.append(plusAsSpace && c == UInt8(ascii: "+") ? asciiSP : c)
            i = input.index(after: i)
        }
    }
    return validUTF8String(bytes)
}

/// Decodes `bytes` as UTF-8, or nil if they are not well-formed UTF-8.
private func validUTF8String(_ bytes: [UInt8]) -> String? {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    var scalars = String.UnicodeScalarView()
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let s): scalars.append(s)
        case .emptyInput: return String(scalars)
        case .error: return nil
        }
    }
}
