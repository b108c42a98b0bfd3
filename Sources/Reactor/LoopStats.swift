// LoopStats: what the event loop measures about itself when metrics are on (the number that shows a
// stalled single thread), and `Histogram`, the fixed-bucket histogram the metrics use everywhere:
// a bucket array chosen at compile time, plain integer counts, no allocation when observing.
//
// Per iteration the loop reads the monotonic clock three times (after epoll_wait returns, after the
// late sources were dispatched, at the end of the before-sleep hooks) and records:
//   lag:       epoll_wait's return -> the last ready source handled (I/O, then pidfds and signals),
//              or how late the timers that fired were, whichever is larger;
//   iteration: epoll_wait's return -> end of the iteration (all handlers, timers, deferred work, flushes).

/// Counts of observations by upper bound (nanoseconds), their sum and number. Rendered cumulatively.
public struct Histogram {
    /// Upper bounds in nanoseconds, ascending; the +Inf bucket is implicit.
    public let bounds: [Int64]
    /// counts[i]: observations in (bounds[i-1], bounds[i]]; counts[bounds.count]: above the last bound.
    public private(set) var counts: [UInt64]
    public private(set) var sumNs: Int64 = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Int64]) {
        self.bounds = bounds
        counts = [UInt64](repeating: 0, count: bounds.count + 1)
    }

    public mutating func observe(ns: Int64) {
        var i = 0
        while i < bounds.count && ns > bounds[i] { i += 1 }
        counts[i] &+= 1
        sumNs &+= max(0, ns)
        count &+= 1
    }

    /// Request-sized durations: 100 µs … 10 s.
    public static let requestBounds: [Int64] = [100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
                                                25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000,
                                                1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000]
    /// Loop-sized durations: 10 µs … 10 s.
    public static let loopBounds: [Int64] = [10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
                                             5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000, 250_000_000,
                                             500_000_000, 1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000]
}

/// The loop's own measurements (see the top of this file). Owned by the loop, read by the metrics.
public final class LoopStats {
    public internal(set) var lag = Histogram(bounds: Histogram.loopBounds)
    public internal(set) var iteration = Histogram(bounds: Histogram.loopBounds)
    public init() {}
}
