import Glibc

/// Nanosecond clocks. Monotonic time paces loops; wall time stamps probes so hosts sharing a clock
/// (the one-host lab) can measure one-way latency.
public enum Clock {
    public static func monotonicNanoseconds() -> UInt64 { read(CLOCK_MONOTONIC) }
    public static func wallNanoseconds() -> UInt64 { read(CLOCK_REALTIME) }

    private static func read(_ clock: clockid_t) -> UInt64 {
        var now = timespec()
        clock_gettime(clock, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
