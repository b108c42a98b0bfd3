// EventLoop: the one-thread reactor. One epoll instance, a slot table of registrations whose
// (slot, generation) pairs travel in epoll's 64-bit data, a timer heap, and an explicit iteration:
//
//   runOnce(maxWaitMs:)
//     1. timeout = min(maxWait, next timer deadline - now), 0 if deferred work is pending
//     2. epoll_wait
//     3. read the clock once (`now`)
//     4. dispatch I/O readiness (sockets, pipes) in the order reported
//     5. dispatch "late" sources (pidfds, the signalfd): child exits after the output that preceded them
//     6. fire due timers (deadline order, ties by creation order)
//     7. run deferred work (closes requested while dispatching, transitions)
//     8. before-sleep hooks: flush pending output, update interest
//
// A stale event (its slot was freed and maybe reused during this iteration) is dropped by comparing
// generations; reported events are intersected with the *current* interest before dispatch.
import Sys

public protocol EventHandler: AnyObject {
    func handle(_ events: EpollEvents, _ loop: EventLoop)
}

public struct Registration: Hashable, Sendable {
    public let slot: UInt32
    public let generation: UInt32
    var data: UInt64 { UInt64(generation) << 32 | UInt64(slot) }
}

public struct TimerID: Hashable, Sendable { let raw: UInt64 }

public final class EventLoop {
    private struct Slot {
        var generation: UInt32 = 0
        var fd: Int32 = -1
        var interest: EpollEvents = []
        var late = false
        var handler: EventHandler?
    }

    private let epoll: Epoll
    private var slots: [Slot] = []
    private var freeSlots: [UInt32] = []
    private var timers = TimerHeap()
    private var timerActions: [UInt64: () -> Void] = [:]
    private var nextTimerID: UInt64 = 1
    private var deferred: [() -> Void] = []
    private var beforeSleepHooks: [() -> Void] = []
    private var lateEvents: [(Registration, EpollEvents)] = []
    /// Registrations whose interest change the kernel refused: reported to their handler as `.error`.
    private var failed: [Registration] = []

    /// Monotonic milliseconds, read once per iteration.
    public private(set) var now: Int64
    public private(set) var iterations: UInt64 = 0
    public var registrationCount: Int { slots.count - freeSlots.count }
    public var timerCount: Int { timerActions.count }
    /// metrics: lag and iteration histograms (LoopStats.swift); nil: not measured (no extra clock reads).
    public var stats: LoopStats?

    public init() throws {
        epoll = try Epoll()
        now = Clock.monotonicMs()
    }

    // MARK: registrations

    /// Adds `fd` to epoll with `interest`. `late` sources are dispatched after all I/O of an iteration.
    public func register(_ fd: Int32, _ interest: EpollEvents, late: Bool = false, handler: EventHandler) throws -> Registration {
        let index: UInt32
        if let free = freeSlots.popLast() { index = free } else { index = UInt32(slots.count); slots.append(Slot()) }
        slots[Int(index)].fd = fd
        slots[Int(index)].interest = interest
        slots[Int(index)].late = late
        slots[Int(index)].handler = handler
        let reg = Registration(slot: index, generation: slots[Int(index)].generation)
        do {
            try epoll.add(fd, events: interest, data: reg.data)
        } catch {
            release(index)
            throw error
        }
        return reg
    }

    /// Changes the interest set (a no-op if unchanged). If the kernel refuses (out of memory), the
    /// handler gets an `.error` event in the next iteration, so its owner closes it rather than waiting
    /// for readiness that will never be reported.
    public func setInterest(_ reg: Registration, _ interest: EpollEvents) {
        guard isLive(reg), slots[Int(reg.slot)].interest != interest else { return }
        slots[Int(reg.slot)].interest = interest
        do {
            try epoll.modify(slots[Int(reg.slot)].fd, events: interest, data: reg.data)
        } catch {
            failed.append(reg)
        }
    }

    public func interest(_ reg: Registration) -> EpollEvents {
        isLive(reg) ? slots[Int(reg.slot)].interest : []
    }

    /// Removes the fd from epoll at once; the caller closes it afterwards. Stale events are dropped.
    public func deregister(_ reg: Registration) {
        guard isLive(reg) else { return }
        epoll.remove(slots[Int(reg.slot)].fd)
        release(reg.slot)
    }

    private func release(_ index: UInt32) {
        slots[Int(index)].generation &+= 1
        slots[Int(index)].fd = -1
        slots[Int(index)].interest = []
        slots[Int(index)].handler = nil
        freeSlots.append(index)
    }

    private func isLive(_ reg: Registration) -> Bool {
        Int(reg.slot) < slots.count && slots[Int(reg.slot)].generation == reg.generation && slots[Int(reg.slot)].handler != nil
    }

    // MARK: timers and deferred work

    /// Runs `action` once at monotonic time `deadline` (ms).
    @discardableResult
    public func schedule(at deadline: Int64, _ action: @escaping () -> Void) -> TimerID {
        let id = nextTimerID
        nextTimerID += 1
        timers.push(deadline: deadline, id: id)
        timerActions[id] = action
        return TimerID(raw: id)
    }

    @discardableResult
    public func schedule(afterMs delay: Int64, _ action: @escaping () -> Void) -> TimerID {
        schedule(at: now + delay, action)
    }

    /// Cancels a timer (a tombstone: its heap entry is skipped when it comes up).
    public func cancel(_ id: TimerID?) {
        if let id { timerActions[id.raw] = nil }
    }

    /// Runs `work` in this iteration's deferred phase (after dispatch, before sleeping).
    public func defer_(_ work: @escaping () -> Void) { deferred.append(work) }

    /// Hooks run at the end of every iteration, before the loop sleeps again.
    public func addBeforeSleep(_ hook: @escaping () -> Void) { beforeSleepHooks.append(hook) }

    // MARK: the iteration

    public func runOnce(maxWaitMs: Int64 = -1) throws {
        iterations &+= 1
        var timeout = maxWaitMs
        if !deferred.isEmpty || !failed.isEmpty { timeout = 0 }
        if let next = nextDeadline() {
            let until = max(0, next - Clock.monotonicMs())
            timeout = timeout < 0 ? until : min(timeout, until)
        }
        let stats = self.stats
        var woke: Int64 = 0   // metrics: epoll_wait's return (read at the first event, or after the wait)
        _ = try epoll.wait(timeoutMs: Int32(clamping: timeout)) { event in
            if stats != nil && woke == 0 { woke = Clock.monotonicNs() }
            let slot = UInt32(truncatingIfNeeded: event.data)
            let gen = UInt32(truncatingIfNeeded: event.data >> 32)
            let reg = Registration(slot: slot, generation: gen)
            if Int(slot) < slots.count && slots[Int(slot)].late {
                lateEvents.append((reg, event.events))
            } else {
                dispatch(reg, event.events)
            }
        }
        if stats != nil && woke == 0 { woke = Clock.monotonicNs() }
        now = Clock.monotonicMs()
        if !failed.isEmpty {
            let f = failed
            failed.removeAll()
            for reg in f where isLive(reg) { slots[Int(reg.slot)].handler?.handle(.error, self) }
        }
        if !lateEvents.isEmpty {
            let late = lateEvents
            lateEvents.removeAll(keepingCapacity: true)
            for (reg, ev) in late { dispatch(reg, ev) }
        }
        var handled: Int64 = 0
        if stats != nil { handled = Clock.monotonicNs() }   // metrics: the last ready source was handled
        let timersLateMs = fireTimers()
        while !deferred.isEmpty {
            let work = deferred
            deferred.removeAll(keepingCapacity: true)
            for w in work { w() }
        }
        for hook in beforeSleepHooks { hook() }
        if let stats {   // metrics: one observation of each per iteration
            stats.lag.observe(ns: max(handled - woke, max(0, timersLateMs - 1) * 1_000_000))   // 1 ms: the timeout's granularity
            stats.iteration.observe(ns: Clock.monotonicNs() - woke)
        }
    }

    private func dispatch(_ reg: Registration, _ events: EpollEvents) {
        guard isLive(reg), let handler = slots[Int(reg.slot)].handler else { return }
        let relevant = events.intersection(slots[Int(reg.slot)].interest.union([.error, .hangup]))
        if relevant.isEmpty { return }
        handler.handle(relevant, self)
    }

    private func nextDeadline() -> Int64? {
        while let top = timers.peek() {
            if timerActions[top.id] != nil { return top.deadline }
            _ = timers.pop()
        }
        return nil
    }

    /// Returns how late (ms) the most overdue timer that fired was.
    private func fireTimers() -> Int64 {
        var late: Int64 = 0
        while let top = timers.peek(), top.deadline <= now {
            _ = timers.pop()
            if let action = timerActions.removeValue(forKey: top.id) { late = max(late, now - top.deadline); action() }
        }
        return late
    }
}

/// A binary min-heap of (deadline, id); ids increase with creation, so ties fire in creation order.
struct TimerHeap {
    private var items: [(deadline: Int64, id: UInt64)] = []
    var count: Int { items.count }
    func peek() -> (deadline: Int64, id: UInt64)? { items.first }

    private func less(_ a: Int, _ b: Int) -> Bool {
        items[a].deadline < items[b].deadline || (items[a].deadline == items[b].deadline && items[a].id < items[b].id)
    }

    mutating func push(deadline: Int64, id: UInt64) {
        items.append((deadline, id))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !less(i, parent) { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (deadline: Int64, id: UInt64)? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && less(l, m) { m = l }
                if r < items.count && less(r, m) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// One fd and its registration with the loop, owned by one value: `close()` takes the fd out of epoll and
/// then closes it, exactly once (a second call does nothing). Owners (pipes, sockets, probes) hold one
/// instead of a raw fd and a registration that could be closed in the wrong order or twice. Debug builds
/// trap when an owner is dropped with its fd still open (a leak).
/// perf(request): the interest last set is kept here, so an unchanged one (most calls: every read and flush
/// of a connection asks) costs no call into the loop (each one retained the weakly referenced loop through
/// its side table: 3 % of an /info profile).
/// perf(memory): a noncopyable value stored inline in its owner (a process holds four: its pidfd, two
/// pipes, its follower's socket), not an object of its own: ~60 B less per process than a class instance
/// and the owner's reference to it. Noncopyable, so no copy can close or deregister the fd a second time.
public struct WatchedFD: ~Copyable {
    public private(set) var fd: Int32
    public private(set) var reg: Registration?
    private var interest: EpollEvents = []
    private unowned let loop: EventLoop

    public init(_ fd: Int32, loop: EventLoop) {
        self.fd = fd
        self.loop = loop
    }

    public var isOpen: Bool { fd >= 0 }
    public var isWatched: Bool { reg != nil }

    /// Registers the fd (once); a failure is thrown to the caller, never dropped.
    public mutating func watch(_ interest: EpollEvents, late: Bool = false, handler: EventHandler) throws {
        precondition(fd >= 0 && reg == nil, "watch of a closed or already watched fd")
        reg = try loop.register(fd, interest, late: late, handler: handler)
        self.interest = interest
    }

    /// Takes the fd out of epoll and keeps it open.
    public mutating func unwatch() {
        if let reg { loop.deregister(reg) }
        reg = nil
        interest = []
    }

    public mutating func setInterest(_ interest: EpollEvents) {
        guard let reg, interest != self.interest else { return }
        self.interest = interest
        loop.setInterest(reg, interest)
    }

    /// Gives the fd away (out of epoll, not closed): its new owner closes it.
    public mutating func relinquish() -> Int32 {
        unwatch()
        let f = fd
        fd = -1
        return f
    }

    /// Deregisters, then closes the fd. Idempotent.
    public mutating func close() {
        guard fd >= 0 else { return }
        unwatch()
        FD.close(fd)
        fd = -1
    }

    deinit {
        assert(fd < 0, "WatchedFD dropped with fd \(fd) still open")
    }
}
