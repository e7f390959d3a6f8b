import Measurement
import TestSupport
import Testing

@Suite struct LatencyHistogramTests {
    /// The value at rank ceil(p/100 × n) of the sorted samples: the definition HDR histograms use.
    /// In integers (p in tenths): in floating point 99.9 / 100 × 4,000 is 3,996.0000000000005, one
    /// rank too far.
    private func reference(_ sorted: [UInt64], _ percentile: Double) -> UInt64 {
        let tenths = Int((percentile * 10).rounded())
        let rank = max(1, (tenths * sorted.count + 999) / 1000)
        return sorted[rank - 1]
    }

    @Test func percentilesMatchTheRawSamplesWithinOnePercent() {
        var random = SeededGenerator()
        for round in 0..<20 {
            var histogram = LatencyHistogram()
            var samples: [UInt64] = []
            let count = Int.random(in: 1...20_000, using: &random)
            for _ in 0..<count {
                // Mostly 20–2,000 µs, with outliers up to 5 s (1 in 200).
                let value =
                    Int.random(in: 0..<200, using: &random) == 0
                    ? UInt64.random(in: 10_000...5_000_000, using: &random) : UInt64.random(in: 20...2_000, using: &random)
                samples.append(value)
                histogram.record(microseconds: value)
            }
            samples.sort()
            #expect(histogram.count == UInt64(count))
            for percentile in [50.0, 90, 99, 99.9] {
                let expected = reference(samples, percentile)
                let got = histogram.microseconds(atPercentile: percentile) ?? 0
                // The histogram reports the top of the sample's bucket: never below, at most 1 % above.
                #expect(
                    got >= expected && Double(got) <= Double(expected) * 1.01 + 1,
                    "seed \(TestSeed.value), round \(round): p\(percentile) \(got) against \(expected)")
            }
            let summary = histogram.summary
            #expect(summary?.maximum ?? 0 >= samples.last!, "seed \(TestSeed.value)")
            #expect(Double(summary?.maximum ?? 0) <= Double(samples.last!) * 1.01 + 1, "seed \(TestSeed.value)")
            #expect(summary?.minimum ?? .max <= samples.first!, "seed \(TestSeed.value)")
        }
    }

    @Test func microsecondResolutionAtTheLowEnd() {
        var histogram = LatencyHistogram()
        for value: UInt64 in [1, 2, 3, 250] { histogram.record(microseconds: value) }
        #expect(histogram.microseconds(atPercentile: 25) == 1)
        #expect(histogram.microseconds(atPercentile: 50) == 2)
        #expect(histogram.microseconds(atPercentile: 75) == 3)
        #expect(histogram.maximumMicroseconds == 250)
    }

    @Test func nanosecondsRoundToTheNearestMicrosecond() {
        var histogram = LatencyHistogram()
        histogram.record(nanoseconds: 1_499)
        histogram.record(nanoseconds: 1_500)
        #expect(histogram.minimumMicroseconds == 1)
        #expect(histogram.maximumMicroseconds == 2)
    }

    @Test func valuesBeyondTheRangeAreCountedAtItsTop() {
        var histogram = LatencyHistogram()
        histogram.record(microseconds: 5)
        histogram.record(microseconds: LatencyHistogram.highestMicroseconds * 10)
        #expect(histogram.count == 2)
        #expect(histogram.beyondRange == 1)
        #expect(histogram.maximumMicroseconds ?? 0 >= LatencyHistogram.highestMicroseconds)
    }

    @Test func cumulativeCountsAndMerging() {
        var first = LatencyHistogram()
        var second = LatencyHistogram()
        for value: UInt64 in [10, 100, 1_000] { first.record(microseconds: value) }
        for value: UInt64 in [10_000, 100_000] { second.record(microseconds: value) }
        first.add(second)
        #expect(first.count == 5)
        #expect(first.cumulativeCounts(atOrBelow: [5, 10, 500, 50_000, 1_000_000]) == [0, 1, 2, 4, 5])
        #expect(first.occupiedBuckets.map(\.count).reduce(0, +) == 5)
        #expect(LatencyHistogram().summary == nil)
        #expect(LatencyHistogram().microseconds(atPercentile: 99) == nil)
    }
}
