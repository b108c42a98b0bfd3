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

    /// One run of encoded events of one process. Events of both streams: one per line, so event i is the
    /// line `start + i` and the cursor after it is `start + i + 1`.
    final class Window {
        var handle: Int
        var tagStream: Bool
        /// The line (cursor) of the first event.
        var start: UInt64 = 0
        var bytes: [UInt8] = []
        /// For event i: its end offset in `bytes`, and the journal's byte count after its line (what a
        /// follower keeps to make a later gap exact).
        var ends: [Int] = []
        var cums: [UInt64] = []
        var lastUse: UInt64 = 0

        init(handle: Int, tagStream: Bool) {
            self.handle = handle; self.tagStream = tagStream
        }

        /// The cursor after the last event.
        var end: UInt64 { start &+ UInt64(ends.count) }
        var isFull: Bool { bytes.count >= SharedEvents.capBytes }

        func reset(at cursor: UInt64) {
            start = cursor
            bytes.removeAll(keepingCapacity: true)
            ends.removeAll(keepingCapacity: true); cums.removeAll(keepingCapacity: true)
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
            start &+= UInt64(lo + 1)
            bytes.removeSubrange(0..<cut)
            ends.removeSubrange(0...lo); cums.removeSubrange(0...lo)
            for k in ends.indices { ends[k] -= cut }
        }

        /// The events from `cursor` on, at most `budget` bytes (at least one event): a byte range of `bytes`,
        /// the cursor and byte count after its last event, and how many events. Nil if not in the window.
        func slice(from cursor: UInt64, budget: Int) -> (from: Int, to: Int, next: UInt64, cum: UInt64, events: Int)? {
            guard cursor >= start, cursor < end else { return nil }
            let i = Int(cursor &- start)
            let from = i == 0 ? 0 : ends[i - 1]
            // The last event j >= i with ends[j] - from <= budget (at least i).
            var lo = i, hi = ends.count - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if ends[mid] - from <= budget { lo = mid } else { hi = mid - 1 }
            }
            return (from, ends[lo], start &+ UInt64(lo + 1), cums[lo], lo - i + 1)
        }
    }

    private var windows: [Window] = []
    private var clock: UInt64 = 0

    /// The window of this process (and stream tagging), if one exists.
    func window(handle: Int, tagStream: Bool) -> Window? {
        for w in windows where w.handle == handle && w.tagStream == tagStream {
            clock &+= 1; w.lastUse = clock
            return w
        }
        return nil
    }

    /// A window starting at `cursor`: a new one, or the least recently used one reused (with its storage:
    /// the arrays' capacity is what a window costs).
    func claim(handle: Int, tagStream: Bool, at cursor: UInt64) -> Window {
        let w: Window
        if windows.count < Self.maxWindows {
            w = Window(handle: handle, tagStream: tagStream)
            windows.append(w)
        } else {
            w = windows.min { $0.lastUse < $1.lastUse }!
            w.handle = handle; w.tagStream = tagStream
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
