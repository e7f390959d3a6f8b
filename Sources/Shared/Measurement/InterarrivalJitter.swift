/// RFC 3550's interarrival jitter (section 6.4.1, code in A.8): the mean deviation of the
/// difference D between consecutive payloads' transit times (receive time minus send time),
/// smoothed as J += (|D| - J) / 16. Only differences of transit times enter, so a constant offset
/// between the sender's and the sink's clocks cancels out: it needs no shared clock.
public struct InterarrivalJitter: Sendable, Equatable {
    private var lastTransit: Int64 = 0
    private var payloads: UInt64 = 0
    /// J, in nanoseconds.
    public private(set) var nanoseconds: Double = 0

    public init() {}

    /// Times in nanoseconds on each side's own clock; wrapping arithmetic, so any offset works.
    public mutating func record(sentAt: UInt64, receivedAt: UInt64) {
        let transit = Int64(bitPattern: receivedAt &- sentAt)
        if payloads > 0 {
            let difference = transit &- lastTransit
            nanoseconds += (Double(difference.magnitude) - nanoseconds) / 16
        }
        lastTransit = transit
        payloads += 1
    }

    /// J in µs; nil before two payloads have given a difference.
    public var microseconds: Double? { payloads < 2 ? nil : nanoseconds / 1000 }
}
