// Fuzz target: the strict JSON parser and the serializer (JSON module).
// Properties: parsing never crashes (depth is bounded); a parsed value serializes to text that parses
// back to a value with the same serialization; appendJSONString of any valid UTF-8 text parses back
// to exactly that text (the output path of every SSE line).
import JSON

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let v = try? parseJSON(bytes) {
        let text = v.serialized()
        guard let again = try? parseJSON(text) else { preconditionFailure("serialized value does not parse: \(text)") }
        precondition(again.serialized() == text, "serialization is not stable")
        if case .object = v { _ = v["command"]; _ = v["args"] }
    }
    // Raw text through the string writer (as the journal hands lines to followers).
    let s = String(decoding: bytes, as: UTF8.self)
    var lit: [UInt8] = []
    appendJSONString(s, to: &lit)
    guard case .string(let back)? = try? parseJSON(lit) else { preconditionFailure("string literal does not parse") }
    precondition(back == s && Array(back.utf8) == Array(s.utf8), "string did not round-trip")
    return 0
}
