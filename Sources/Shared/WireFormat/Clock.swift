import Glibc

/// Nanosecond clocks. Monotonic time paces loops; wall time stamps probes so hosts sharing a clock
/// (the one-host lab) can measure one-way latency.
public enum Clock {
    // Inlinable: read per batch, and per probe by the generator, from other modules.
    @inlinable public static func monotonicNanoseconds() -> UInt64 { read(CLOCK_MONOTONIC) }
    @inlinable public static func wallNanoseconds() -> UInt64 { read(CLOCK_REALTIME) }

    @inlinable static func read(_ clock: clockid_t) -> UInt64 {
        var now = timespec()
        clock_gettime(clock, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
