// SharedEvents (issue 17, fan-out): followers of both streams of one process (`/output/follow`) share one
// encoding of their events. The first follower to reach a line encodes
// it into a window; the others send the same bytes straight from the window (`Connection.sendChunk`: one
// gather write, copied into the connection's queue only for what the socket does not take). Without it,
// N followers escape and format every line N times: with 100 followers that was most of the daemon's
// CPU per delivered line.
//
// A window is a run of consecutive events (`start` .. `end`), bounded (`capBytes`): when full, the
// follower in the lead drops its older half (`slide`). Followers whose cursor is not in it (fallen more
// than half a window behind the lead), or the only follower of a process, encode for themselves as before. The daemon
// keeps at most `maxWindows` windows (least recently used one reused), so fan-out costs at most
// maxWindows × capBytes of memory however many processes are followed; they are released when the
// daemon goes idle (`releaseAll`). Events depend only on the line (seq, text, stream, timestamp) and on
// the follower's options, and lines never change once written, so a window never goes stale.
import Supervision

final class SharedEvents {
    static let capBytes = 1 << 20
    static let maxWindows = 4

    /// One run of encoded events of one process, for one set of follower options.
    final class Window {
        let handle: Int
        let filter: StreamFilter
        let tagStream: Bool
        /// The cursor the first event starts at.
        var start: UInt64 = 0
        var bytes: [UInt8] = []
        /// For event i: the cursor after it, its end offset in `bytes`, and the journal's byte count before
        /// that cursor (what a follower keeps to make a later gap exact).
        var nexts: [UInt64] = []
        var ends: [Int] = []
        var cums: [UInt64] = []
        var lastUse: UInt64 = 0

        init(handle: Int, filter: StreamFilter, tagStream: Bool) {
            self.handle = handle; self.filter = filter; self.tagStream = tagStream
        }

        /// The cursor after the last event.
        var end: UInt64 { nexts.last ?? start }
        var isFull: Bool { bytes.count >= SharedEvents.capBytes }

        func reset(at cursor: UInt64) {
            start = cursor
            bytes.removeAll(keepingCapacity: true)
            nexts.removeAll(keepingCapacity: true); ends.removeAll(keepingCapacity: true); cums.removeAll(keepingCapacity: true)
        }

        /// Full: forgets the older half of the events (followers still there encode for themselves), so the
        /// window moves on with the leading follower while those close behind it still share.
        func slide() {
            let keepFrom = bytes.count - SharedEvents.capBytes / 2
            // The first event j that ends at or after keepFrom: events 0...j go.
            var lo = 0, hi = ends.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if ends[mid] >= keepFrom { hi = mid } else { lo = mid + 1 }
            }
            let cut = ends[lo]
            start = nexts[lo]
            bytes.removeSubrange(0..<cut)
            nexts.removeSubrange(0...lo); cums.removeSubrange(0...lo)
            ends.removeSubrange(0...lo)
            for k in ends.indices { ends[k] -= cut }
        }

        /// The events from `cursor` on, at most `budget` bytes (at least one event): a byte range of `bytes`,
        /// and the cursor and byte count after its last event. Nil if `cursor` is not where an event starts.
        func slice(from cursor: UInt64, budget: Int) -> (from: Int, to: Int, next: UInt64, cum: UInt64, events: Int)? {
            guard cursor >= start, cursor < end else { return nil }
            let i: Int
            if cursor == start { i = 0 } else {
                guard let k = Self.search(nexts, cursor) else { return nil }
                i = k + 1   // the event after the one that ends at `cursor`
            }
            let from = i == 0 ? 0 : ends[i - 1]
            // The last event j >= i with ends[j] - from <= budget (at least i).
            var lo = i, hi = ends.count - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if ends[mid] - from <= budget { lo = mid } else { hi = mid - 1 }
            }
            return (from, ends[lo], nexts[lo], cums[lo], lo - i + 1)
        }

        /// The index of `value` in the increasing array `a`, if there.
        private static func search(_ a: [UInt64], _ value: UInt64) -> Int? {
            var lo = 0, hi = a.count - 1
            while lo <= hi {
                let mid = (lo + hi) / 2
                if a[mid] == value { return mid }
                if a[mid] < value { lo = mid + 1 } else { hi = mid - 1 }
            }
            return nil
        }
    }

    private var windows: [Window] = []
    private var clock: UInt64 = 0

    /// The window of these options for this process, if one exists.
    func window(handle: Int, filter: StreamFilter, tagStream: Bool) -> Window? {
        for w in windows where w.handle == handle && w.filter == filter && w.tagStream == tagStream {
            clock &+= 1; w.lastUse = clock
            return w
        }
        return nil
    }

    /// A window for these options starting at `cursor`: a new one, or the least recently used one reused.
    func claim(handle: Int, filter: StreamFilter, tagStream: Bool, at cursor: UInt64) -> Window {
        let w: Window
        if windows.count < Self.maxWindows {
            w = Window(handle: handle, filter: filter, tagStream: tagStream)
            windows.append(w)
        } else {
            let old = windows.min { $0.lastUse < $1.lastUse }!
            w = Window(handle: handle, filter: filter, tagStream: tagStream)
            // Keep the old storage: the arrays' capacity is what a window costs.
            swap(&w.bytes, &old.bytes); swap(&w.nexts, &old.nexts); swap(&w.ends, &old.ends); swap(&w.cums, &old.cums)
            windows[windows.firstIndex { $0 === old }!] = w
        }
        w.reset(at: cursor)
        clock &+= 1; w.lastUse = clock
        return w
    }

    /// A process went away: its windows are of no more use.
    func forget(handle: Int) {
        windows.removeAll { $0.handle == handle }
    }

    /// The daemon is idle: give the memory back.
    func releaseAll() {
        windows.removeAll()
    }
}
