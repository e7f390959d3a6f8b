import Histogram

/// A distribution of latencies (one-way or round trip) in microseconds: an HDR histogram with 1 µs
/// resolution up to 255 µs and two significant digits (1 %) above, up to `highestMicroseconds`.
/// Recording touches one preallocated counter (no allocation); a value beyond the range counts as
/// `highestMicroseconds` and in `beyondRange`, so a stalled path is never dropped from the count.
/// About 18 KB each.
public struct LatencyHistogram: Sendable {
    /// The range's top, 60 s: well past any latency a tunnel can have and still be called working.
    public static let highestMicroseconds: UInt64 = 60_000_000

    private var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: highestMicroseconds, numberOfSignificantValueDigits: .two)
    /// Values recorded above `highestMicroseconds` (counted there).
    public private(set) var beyondRange: UInt64 = 0
    /// The recorded values' sum (those beyond the range as `highestMicroseconds`).
    public private(set) var sumMicroseconds: UInt64 = 0

    public init() {}

    public mutating func record(microseconds: UInt64) {
        var value = microseconds
        if value > Self.highestMicroseconds {
            value = Self.highestMicroseconds
            beyondRange += 1
        }
        histogram.record(value)
        sumMicroseconds &+= value
    }

    /// Records a latency given in nanoseconds, rounded to the nearest microsecond.
    public mutating func record(nanoseconds: UInt64) {
        record(microseconds: nanoseconds / 1000 + (nanoseconds % 1000 >= 500 ? 1 : 0))
    }

    public mutating func add(_ other: LatencyHistogram) {
        histogram.add(other.histogram)
        beyondRange += other.beyondRange
        sumMicroseconds &+= other.sumMicroseconds
    }

    public var count: UInt64 { histogram.totalCount }
    public var isEmpty: Bool { count == 0 }

    /// The value at `percentile` (0–100), in µs: the highest value equivalent to the recorded one at
    /// that rank, so within 1 % above the true sample. nil when nothing was recorded.
    public func microseconds(atPercentile percentile: Double) -> UInt64? {
        isEmpty ? nil : histogram.valueAtPercentile(percentile)
    }

    public var minimumMicroseconds: UInt64? { isEmpty ? nil : histogram.min }
    public var maximumMicroseconds: UInt64? { isEmpty ? nil : histogram.max }
    public var meanMicroseconds: Double? { isEmpty ? nil : Double(sumMicroseconds) / Double(count) }

    /// Counts at or below each of `upperBounds` (µs, ascending): cumulative, as Prometheus buckets are.
    public func cumulativeCounts(atOrBelow upperBounds: [UInt64]) -> [UInt64] {
        upperBounds.map { bound in isEmpty ? 0 : histogram.count(within: 0...bound) }
    }

    /// The recorded values as (lowest µs, highest µs, count) per occupied bucket, lowest first.
    public var occupiedBuckets: [(lowest: UInt64, highest: UInt64, count: UInt64)] {
        histogram.recordedValues().map { entry in
            (histogram.lowestEquivalentForValue(entry.value), histogram.highestEquivalentForValue(entry.value), UInt64(entry.count))
        }
    }

    /// The headline figures in one value.
    public var summary: LatencySummary? {
        guard !isEmpty, let mean = meanMicroseconds else { return nil }
        return LatencySummary(
            count: count, minimum: histogram.min, p50: histogram.valueAtPercentile(50), p90: histogram.valueAtPercentile(90),
            p99: histogram.valueAtPercentile(99), p999: histogram.valueAtPercentile(99.9), maximum: histogram.max, mean: mean)
    }
}

/// Percentiles of a `LatencyHistogram`, in µs.
public struct LatencySummary: Sendable, Equatable {
    public var count: UInt64
    public var minimum: UInt64
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var maximum: UInt64
    public var mean: Double
}
