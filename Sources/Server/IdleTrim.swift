// IdleTrim: when the daemon goes idle (no connection, no running process) for `quietMs`, its code
// pages are given back once more (CodePages.trim, as after start-up). Serving anything faults code back
// in 64 KiB at a time (the kernel's fault-around): one bare connection took an idle daemon from 3.1 to
// 4.3 MiB RSS, all of it clean pages of the binary that the idle daemon never runs. A trim costs one
// madvise per mapped object; the first request after it pays the page faults again (tens of µs).
// Pure state: the server notes each accepted connection, its tick reports whether it is busy (a
// connection open, a process running) and performs the trim when told to.
struct IdleTrim {
    static let quietMs: Int64 = 1000
    private var quietSince: Int64? = nil
    private var trimmed = true          // start-up trimmed already

    /// Something happened between ticks (a connection was accepted): the next quiet period counts from now.
    mutating func noteActivity() { quietSince = nil; trimmed = false }

    /// Feeds one tick; true when the caller should trim now.
    mutating func tick(busy: Bool, now: Int64) -> Bool {
        if busy { quietSince = nil; trimmed = false; return false }
        guard !trimmed else { return false }
        guard let since = quietSince else { quietSince = now; return false }
        if now - since < IdleTrim.quietMs { return false }
        trimmed = true
        return true
    }
}
