/// One-way latency of probes (receive wall time minus send wall time), in nanoseconds. Only meaningful
/// where sender and receiver share a clock, as in the one-host lab.
public struct LatencyStats: Sendable {
    public private(set) var count: UInt64 = 0
    public private(set) var minimum: UInt64 = .max
    public private(set) var maximum: UInt64 = 0
    private var sum: Double = 0

    public init() {}

    public mutating func record(sentAt: UInt64, receivedAt: UInt64) {
        guard receivedAt >= sentAt else { return }  // clocks not shared
        let latency = receivedAt - sentAt
        count += 1
        sum += Double(latency)
        minimum = min(minimum, latency)
        maximum = max(maximum, latency)
    }

    public var average: Double? { count == 0 ? nil : sum / Double(count) }
}
