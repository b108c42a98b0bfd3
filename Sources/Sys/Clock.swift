// Clock: monotonic time for deadlines and wall-clock milliseconds for timestamps on the wire.
import Glibc

public enum Clock {
    /// Monotonic milliseconds (C: clock_gettime(CLOCK_MONOTONIC)).
    public static func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
    /// Monotonic nanoseconds (C: clock_gettime(CLOCK_MONOTONIC)); for durations in metrics.
    public static func monotonicNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
    /// Milliseconds since the Unix epoch (C: clock_gettime(CLOCK_REALTIME)).
    public static func wallMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
