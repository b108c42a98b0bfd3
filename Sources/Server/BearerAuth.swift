// BearerAuth: whether an `Authorization` header carries the daemon's token. Runs on every request, so
// it reads the header's UTF-8 in place (no array copies, no lowercased prefix array) and compares in
// time independent of where the first difference is (no early exit on a mismatching byte).
enum BearerAuth {
    static func matches(_ header: String?, token: [UInt8]) -> Bool {
        guard var value = header, !token.isEmpty else { return false }
        return value.withUTF8 { v -> Bool in
            guard v.count > 7 else { return false }
            var scheme: UInt8 = 0
            let bearer: StaticString = "bearer "
            bearer.withUTF8Buffer { b in for i in 0..<b.count { scheme |= (v[i] | 0x20) ^ b[i] } }
            guard scheme == 0 else { return false }
            // The length is no secret; comparing it exactly (not its low byte) keeps a repeated token
            // 256 bytes longer from passing.
            var diff: UInt8 = v.count - 7 == token.count ? 0 : 1
            var j = 0
            for i in 7..<v.count {
                diff |= v[i] ^ token[j]
                j += 1
                if j == token.count { j = 0 }
            }
            return diff == 0
        }
    }
}
