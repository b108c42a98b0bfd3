// Users: the user database (C: getpwnam_r/getpwuid_r/getgrouplist) for the `user` field of a start request.
import Glibc

public struct UserRecord: Sendable {
    public let name: String?
    public let uid: UInt32
    public let gid: UInt32
    public let home: String?
    public let groups: [UInt32]
}

public enum Users {
    /// Looks a user up by name. nil if unknown.
    public static func byName(_ name: String) -> UserRecord? {
        lookup { pw, buf, result in getpwnam_r(name, pw, buf.baseAddress!, buf.count, result) }
    }

    /// Looks a user up by uid. nil if there is no entry (a bare uid is still usable).
    public static func byUID(_ uid: UInt32) -> UserRecord? {
        lookup { pw, buf, result in getpwuid_r(uid, pw, buf.baseAddress!, buf.count, result) }
    }

    private static func lookup(_ call: (UnsafeMutablePointer<passwd>, UnsafeMutableBufferPointer<CChar>, UnsafeMutablePointer<UnsafeMutablePointer<passwd>?>) -> Int32) -> UserRecord? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buf = [CChar](repeating: 0, count: 16384)
        let rc = buf.withUnsafeMutableBufferPointer { call(&pw, $0, &result) }
        guard rc == 0, result != nil else { return nil }
        let name = String(cString: pw.pw_name)
        let home = pw.pw_dir.map { String(cString: $0) }
        return UserRecord(name: name, uid: pw.pw_uid, gid: pw.pw_gid, home: home, groups: groupList(name, pw.pw_gid))
    }

    /// Supplementary groups of `name` (C: getgrouplist(3)).
    public static func groupList(_ name: String, _ gid: UInt32) -> [UInt32] {
        var n: Int32 = 64
        while true {
            var groups = [gid_t](repeating: 0, count: Int(n))
            var count = n
            let r = getgrouplist(name, gid, &groups, &count)
            if r >= 0 { return Array(groups[0..<Int(count)]) }
            if count <= n { return [gid] }
            n = count
        }
    }
}
