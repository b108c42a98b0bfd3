// Fuzz target: where an SSE follow resumes (HTTP1.parseResumePoint: Last-Event-ID / ?after=N) and the
// query and percent decoding under it (parseQuery, percentDecode).
// Input: [mode byte][header bytes] 0x00 [query bytes]. mode bit 0: header present; bit 1: query present.
// Properties: no crash; a header of plain decimal digits that fits in UInt64 resumes exactly there;
// the header always wins over the query; decoded query names are never empty.
import HTTP1

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResume(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let mode = data[0]
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let cut = rest.firstIndex(of: 0) ?? rest.count
    let header = String(decoding: rest[..<cut], as: UTF8.self)
    let query = cut < rest.count ? String(decoding: rest[(cut + 1)...], as: UTF8.self) : ""
    let h: String? = mode & 1 != 0 ? header : nil
    let q: String? = mode & 2 != 0 ? query : nil
    let r = parseResumePoint(lastEventID: h, query: q)
    if let h {
        if !h.isEmpty, h.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt64(h) {
            precondition(r == .success(n), "digits \(h) resumed at \(r)")
        }
        if case .failure(let e) = r { precondition(e == .invalidLastEventID, "header present but \(e)") }
        precondition(r == parseResumePoint(lastEventID: h, query: nil), "query changed a header's answer")
    }
    for (name, _) in parseQuery(q ?? header) { precondition(!name.isEmpty) }
    if let d = percentDecode(header) { precondition(d.utf8.count <= header.utf8.count) }
    return 0
}
