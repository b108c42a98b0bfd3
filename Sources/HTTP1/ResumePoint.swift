// ResumePoint.swift — where a follow stream resumes: the `Last-Event-ID` header or the `after` query
// parameter (README: "Last-Event-ID: N or ?after=N resumes after N"). A pure function, extracted from
// Server/API.swift so it can be unit-tested and fuzzed (fuzz/Sources/FuzzResume) without a daemon.

/// Why a resume point was rejected (the API answers 400 INVALID_REQUEST with the matching message).
public enum ResumePointError: Error, Equatable, Sendable {
    /// `Last-Event-ID` is present, not blank, and not a non-negative integer.
    case invalidLastEventID
    /// `after` is present and not a non-negative integer.
    case invalidAfter
}

/// The sequence number a follow stream resumes after, or nil to start at the retained head.
///
/// - `Last-Event-ID` wins when present; a blank value (spaces/tabs only) means "from the start".
/// - Otherwise the first `after` parameter of the query (form-decoded) is used.
/// - Numbers are decimal `UInt64` (an optional leading `+` is accepted, as `UInt64(_:)` does);
///   anything else, including overflow, is an error.
public func parseResumePoint(lastEventID: String?, query: String?) -> Result<UInt64?, ResumePointError> {
    if let h = lastEventID {
        var t = Substring(h)
        while let f = t.first, f == " " || f == "\t" { t = t.dropFirst() }
        while let l = t.last, l == " " || l == "\t" { t = t.dropLast() }
        if t.isEmpty { return .success(nil) }
        guard let v = UInt64(t) else { return .failure(.invalidLastEventID) }
        return .success(v)
    }
    if let q = query {
        for (k, v) in parseQuery(q) where k == "after" {
            guard let n = UInt64(v) else { return .failure(.invalidAfter) }
            return .success(n)
        }
    }
    return .success(nil)
}
