/// A token bucket over a caller-supplied monotonic clock: at most `burst` tokens, refilled at
/// `rate` per second. It bounds the work that datagrams nobody has authenticated yet can cause.
public struct TokenBucket: Sendable {
    public let rate: UInt64
    public let burst: UInt64
    public private(set) var tokens: UInt64
    private var refilledAt: UInt64?

    /// `rate` 0 never refills. `burst` is at most a million, so the arithmetic below cannot overflow.
    public init(rate: UInt64, burst: UInt64) {
        precondition(burst <= 1_000_000 && rate <= 1_000_000_000, "token bucket too large")
        self.rate = rate
        self.burst = burst
        tokens = burst
    }

    /// Takes one token if there is one at `now` (nanoseconds, from a clock that never goes back).
    public mutating func take(now: UInt64) -> Bool {
        if let last = refilledAt {
            if rate > 0, now > last {
                let elapsed = now - last
                let timeToFill = burst * 1_000_000_000 / rate
                if elapsed >= timeToFill {
                    tokens = burst
                    refilledAt = now
                } else {
                    let earned = elapsed * rate / 1_000_000_000  // elapsed · rate < burst · 10⁹
                    if earned > 0 {
                        tokens = min(burst, tokens + earned)
                        // Keep the part of a token not yet earned, so slow refills stay exact.
                        refilledAt = last + earned * 1_000_000_000 / rate
                    }
                }
            }
        } else {
            refilledAt = now
        }
        guard tokens > 0 else { return false }
        tokens -= 1
        return true
    }
}
