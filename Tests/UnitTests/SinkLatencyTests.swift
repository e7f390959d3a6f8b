import Foundation
import KernelIO
import Testing

@testable import CLI
@testable import Measurement
@testable import Monitoring
@testable import TestSupport
@testable import WireFormat

/// The sink's one-way latency and jitter: RFC 3550's jitter, the clock rule, per-source
/// histograms, the report keys and the Prometheus histogram.
@Suite("The sink's latency, jitter and clock rule")
struct SinkLatencyTests {
    static let clock: UInt16 = 0x5A5A
    static let otherClock: UInt16 = 0x1234
    static let source = SocketAddress(ip: .v4(0xC613_0001), port: 5000)

    static func payload(stream: UInt32 = 9, sequence: UInt64, sentAt: UInt64, clockID: UInt16 = clock) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64)
        var span = bytes.mutableSpan
        ProbePayload(streamID: stream, sequence: sequence, sendTimeNanoseconds: sentAt, length: 64, clockID: clockID).encode(into: &span)
        return bytes
    }

    static func json(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
    }

    // MARK: jitter

    /// Transit times 100, 110, 90, 150, 150 µs: |D| = 10, 20, 60, 0, and by J += (|D| - J) / 16
    /// (worked by hand) J = 0.625, 1.8359375, 5.47119140625, 5.129241943359375 µs.
    static let transits: [UInt64] = [100_000, 110_000, 90_000, 150_000, 150_000]
    static let expectedJitter: [Double] = [0.625, 1.8359375, 5.47119140625, 5.129241943359375]

    @Test func jitterFollowsRFC3550OnAFixedSequence() {
        // The sender's clock 7 s ahead of the receiver's: every transit is negative, and cancels out.
        var jitter = InterarrivalJitter()
        var seen: [Double] = []
        for (index, transit) in Self.transits.enumerated() {
            let sent = 20_000_000_000 + UInt64(index) * 1_000_000
            jitter.record(sentAt: sent, receivedAt: sent + transit - 7_000_000_000)
            if let value = jitter.microseconds { seen.append(value) }
        }
        #expect(seen == Self.expectedJitter)
    }

    @Test func jitterNeedsTwoPayloads() {
        var jitter = InterarrivalJitter()
        #expect(jitter.microseconds == nil)
        jitter.record(sentAt: 5, receivedAt: 1_000)
        #expect(jitter.microseconds == nil)
        jitter.record(sentAt: 10, receivedAt: 1_005)
        #expect(jitter.microseconds == 0)
    }

    @Test func theSinkKeepsJitterPerSourceWhateverTheClock() throws {
        var accounting = SinkAccounting(localClock: Self.clock)
        let other = SocketAddress(ip: .v4(0xC613_0002), port: 6000)
        for (index, transit) in Self.transits.enumerated() {
            let sent = 1_000_000_000 + UInt64(index) * 1_000_000
            // From another clock: latency withheld, jitter kept.
            accounting.record(
                Self.payload(sequence: UInt64(index), sentAt: sent, clockID: Self.otherClock).span, from: Self.source,
                receivedAt: sent + transit)
            // A second source, steady: jitter 0.
            accounting.record(
                Self.payload(stream: 10, sequence: UInt64(index), sentAt: sent).span, from: other, receivedAt: sent + 50_000)
        }
        // A duplicate does not count (its transit would be a second sample of one payload).
        accounting.record(Self.payload(sequence: 4, sentAt: 0, clockID: Self.otherClock).span, from: Self.source, receivedAt: 1)
        #expect(accounting.sources[Self.source]?.jitter.microseconds == Self.expectedJitter.last)
        #expect(accounting.sources[other]?.jitter.microseconds == 0)
        #expect(accounting.largestJitterMicroseconds == Self.expectedJitter.last)
        let object = try Self.json(SinkReport(json: true).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil))
        #expect((object["jitter_us"] as? NSNumber)?.doubleValue == 5.129)
    }

    // MARK: the clock rule

    @Test func clockIdentityIsAStableNonZeroHashOfTheBootID() throws {
        let bootID = "6a1f3b9e-2f4c-4d7a-9a51-0c2b8e7d4f10"
        #expect(ClockIdentity.identity(bootID: bootID + "\n") == ClockIdentity.identity(bootID: bootID))
        #expect(ClockIdentity.identity(bootID: bootID) != ProbePayload.unknownClock)
        #expect(ClockIdentity.identity(bootID: bootID) != ClockIdentity.identity(bootID: "6a1f3b9e-2f4c-4d7a-9a51-0c2b8e7d4f11"))
        #expect(ClockIdentity.identity(bootID: " \n") == ProbePayload.unknownClock)
        // This host's, as the generator and the sink read it.
        let text = try #require(TextFile.read(ClockIdentity.bootIDPath), "no \(ClockIdentity.bootIDPath)")
        #expect(ClockIdentity.local() == ClockIdentity.identity(bootID: text))
        #expect(ClockIdentity.local() != ProbePayload.unknownClock)
        #expect(ClockIdentity.local(bootIDPath: "/nonexistent/boot_id") == ProbePayload.unknownClock)
    }

    @Test func clocksCompareWhenSharedOrWhenTheOperatorSaysSo() {
        #expect(ClockIdentity.comparable(sender: Self.clock, sink: Self.clock, synchronised: false))
        #expect(!ClockIdentity.comparable(sender: Self.otherClock, sink: Self.clock, synchronised: false))
        // Unknown on either side is never "the same clock", even 0 against 0.
        #expect(!ClockIdentity.comparable(sender: ProbePayload.unknownClock, sink: Self.clock, synchronised: false))
        #expect(!ClockIdentity.comparable(sender: ProbePayload.unknownClock, sink: ProbePayload.unknownClock, synchronised: false))
        #expect(ClockIdentity.comparable(sender: Self.otherClock, sink: Self.clock, synchronised: true))
        #expect(ClockIdentity.comparable(sender: ProbePayload.unknownClock, sink: Self.clock, synchronised: true))
    }

    @Test func theClockIDTravelsInTheReservedFieldAndOldPayloadsDecodeAsUnknown() {
        let probe = ProbePayload(streamID: 3, sequence: 77, sendTimeNanoseconds: 123, length: 64, clockID: 0xBEEF)
        let bytes = Self.payload(stream: 3, sequence: 77, sentAt: 123, clockID: 0xBEEF)
        #expect(bytes[26] == 0xBE && bytes[27] == 0xEF)
        #expect(ProbePayload.decode(bytes.span) == .probe(probe))
        // An older generator's payload: 0 there, under the same CRC.
        let old = Self.payload(stream: 3, sequence: 77, sentAt: 123, clockID: 0)
        guard case let .probe(decoded) = ProbePayload.decode(old.span) else {
            Issue.record("an old payload no longer decodes")
            return
        }
        #expect(decoded.clockID == ProbePayload.unknownClock)
    }

    /// Shared, another clock, unknown (an older generator), and both with --synchronised-clocks.
    @Test(arguments: [
        (UInt16(0x5A5A), false, ClockAgreement.shared, true),
        (UInt16(0x1234), false, ClockAgreement.notShared, false),
        (UInt16(0), false, ClockAgreement.notShared, false),
        (UInt16(0x1234), true, ClockAgreement.synchronised, true),
        (UInt16(0), true, ClockAgreement.synchronised, true)
    ])
    func oneWayLatencyOnlyWhereTheClocksCompare(sender: UInt16, synchronised: Bool, agreement: ClockAgreement, shown: Bool) throws {
        var accounting = SinkAccounting(localClock: Self.clock, synchronisedClocks: synchronised)
        for sequence: UInt64 in 0..<10 {
            accounting.record(
                Self.payload(sequence: sequence, sentAt: 1_000_000 * sequence, clockID: sender).span, from: Self.source,
                receivedAt: 1_000_000 * sequence + 80_000)
        }
        #expect(accounting.clock == agreement)
        #expect(accounting.latency.count == (shown ? 10 : 0))
        #expect(accounting.latencyWithheld == (shown ? 0 : 10))
        let tally = try #require(accounting.sources[Self.source])
        #expect(accounting.clock(of: tally) == agreement)
        let object = try Self.json(SinkReport(json: true).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil))
        #expect(object["clock"] as? String == agreement.rawValue)
        #expect((object["latency_p50_us"] as? NSNumber)?.intValue == (shown ? 80 : nil))
        #expect(object.keys.contains("latency_p50_us"), "the key is there, null, when not shown")
        #expect((object["jitter_us"] as? NSNumber)?.doubleValue == 0, "jitter either way")
        let text = SinkReport(json: false).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil)
        #expect(text.contains("latency not shown: clocks not shared") == !shown, "\(text)")
        #expect(text.contains("p50 80") == shown, "\(text)")
    }

    @Test func payloadsFromBothKindsOfClockArePartlyShared() throws {
        var accounting = SinkAccounting(localClock: Self.clock)
        let other = SocketAddress(ip: .v4(0xC613_0002), port: 6000)
        accounting.record(Self.payload(sequence: 0, sentAt: 100).span, from: Self.source, receivedAt: 300_100)
        accounting.record(Self.payload(stream: 2, sequence: 0, sentAt: 100, clockID: Self.otherClock).span, from: other, receivedAt: 9)
        #expect(accounting.clock == .partlyShared)
        #expect(accounting.clock(of: try #require(accounting.sources[Self.source])) == .shared)
        #expect(accounting.clock(of: try #require(accounting.sources[other])) == .notShared)
        #expect(accounting.latency.count == 1 && accounting.latencyWithheld == 1)
        let text = SinkReport(json: false).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil)
        #expect(text.contains("p50 300 ") && text.contains("(1 from other clocks not shown)"), "\(text)")
    }

    @Test func payloadsThatArriveBeforeTheyWereSentAreCountedNotRecorded() throws {
        var accounting = SinkAccounting(localClock: Self.clock, synchronisedClocks: true)
        accounting.record(Self.payload(sequence: 0, sentAt: 5_000_000).span, from: Self.source, receivedAt: 4_000_000)
        accounting.record(Self.payload(sequence: 1, sentAt: 5_000_000).span, from: Self.source, receivedAt: 5_020_000)
        #expect(accounting.latencyNegative == 1)
        #expect(accounting.latency.count == 1)
        let object = try Self.json(SinkReport(json: true).line(event: "report", elapsed: 1, interval: 1, now: accounting, previous: nil))
        #expect((object["latency_negative"] as? NSNumber)?.intValue == 1)
        #expect((object["latency_payloads"] as? NSNumber)?.intValue == 1)
    }

    // MARK: per source

    /// Two sources with different latencies (seeded, with outliers): each source's percentiles
    /// match its own samples, the total's match both together, within the histogram's 1 %.
    @Test func percentilesPerSourceAndInTotal() throws {
        var random = SeededGenerator()
        var accounting = SinkAccounting(localClock: Self.clock)
        let sources = [Self.source, SocketAddress(ip: .v4(0xC613_0002), port: 6000)]
        var samples: [[UInt64]] = [[], []]
        for sequence in 0..<UInt64(4_000) {
            for index in 0..<2 {
                let base: UInt64 = index == 0 ? 40 : 900
                let microseconds =
                    UInt64.random(in: 0..<100, using: &random) == 0
                    ? UInt64.random(in: 20_000...2_000_000, using: &random) : base + UInt64.random(in: 0...base, using: &random)
                samples[index].append(microseconds)
                let sent = 1_000_000_000 + sequence * 100_000
                accounting.record(
                    Self.payload(stream: UInt32(index), sequence: sequence, sentAt: sent).span, from: sources[index],
                    receivedAt: sent + microseconds * 1000)
            }
        }
        func check(_ histogram: LatencyHistogram?, _ raw: [UInt64], _ what: String) {
            let sorted = raw.sorted()
            // Ranks in integers (per mille): 99.9 / 100 × 4,000 in floating point is 3,996.0000000000005.
            for perMille in [500, 900, 990, 999, 1000] {
                let rank = max(1, (perMille * sorted.count + 999) / 1000)
                let expected = sorted[rank - 1]
                let percentile = Double(perMille) / 10
                let got = histogram?.microseconds(atPercentile: percentile) ?? 0
                #expect(
                    got >= expected && Double(got) <= Double(expected) * 1.01 + 1,
                    "seed \(TestSeed.value), \(what) p\(percentile): \(got) against \(expected)")
            }
        }
        check(accounting.latency(of: sources[0]), samples[0], "source 0")
        check(accounting.latency(of: sources[1]), samples[1], "source 1")
        check(accounting.latency, samples[0] + samples[1], "total")
        let object = try Self.json(SinkReport(json: true).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil))
        let entries = try #require(object["sources"] as? [[String: Any]])
        #expect(entries.count == 2)
        for entry in entries {
            let address = try #require(entry["address"] as? String)
            let source = try #require(sources.first { $0.description == address })
            let histogram = try #require(accounting.latency(of: source))
            #expect((entry["latency_p99_us"] as? NSNumber)?.uint64Value == histogram.microseconds(atPercentile: 99))
            #expect((entry["latency_payloads"] as? NSNumber)?.intValue == 4_000)
            #expect(entry["clock"] as? String == "shared")
        }
    }

    @Test func sourcesBeyondTheBoundCountInTheTotalOnly() throws {
        var accounting = SinkAccounting(localClock: Self.clock)
        let count = SinkAccounting.maximumSourceHistograms + 3
        for index in 0..<count {
            let source = SocketAddress(ip: .v4(0xC613_0000 + UInt32(index)), port: 5000)
            accounting.record(Self.payload(stream: UInt32(index), sequence: 0, sentAt: 0).span, from: source, receivedAt: 70_000)
        }
        let last = SocketAddress(ip: .v4(0xC613_0000 + UInt32(count - 1)), port: 5000)
        let first = SocketAddress(ip: .v4(0xC613_0000), port: 5000)
        #expect(accounting.latency(of: first)?.count == 1)
        #expect(accounting.latency(of: last) == nil)
        #expect(accounting.sources[last]?.datagrams == 1, "still tallied")
        #expect(accounting.latency.count == UInt64(count))
        let object = try Self.json(SinkReport(json: true).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil))
        let entries = try #require(object["sources"] as? [[String: Any]])
        #expect(entries.filter { $0["latency_in_total_only"] as? Bool == true }.count == 3)
        #expect(entries.filter { $0["latency_p50_us"] is NSNumber }.count == SinkAccounting.maximumSourceHistograms)
    }

    // MARK: reports

    @Test func everyReportCarriesTheLatencyKeysInOrder() throws {
        var accounting = SinkAccounting(localClock: Self.clock)
        var random = SeededGenerator()
        for sequence in 0..<UInt64(500) {
            let sent = sequence * 1_000_000
            accounting.record(
                Self.payload(sequence: sequence, sentAt: sent).span, from: Self.source,
                receivedAt: sent + UInt64.random(in: 20_000...3_000_000, using: &random))
        }
        for event in ["report", "final"] {
            let object = try Self.json(SinkReport(json: true).line(event: event, elapsed: 1, interval: 1, now: accounting, previous: nil))
            let keys = ["latency_min_us", "latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_p999_us", "latency_max_us"]
            let values = try keys.map { try #require(object[$0] as? NSNumber, "\($0)").doubleValue }
            #expect(values == values.sorted(), "seed \(TestSeed.value): \(values)")
            #expect(object["latency_avg_us"] is NSNumber && object["jitter_us"] is NSNumber)
            #expect((object["latency_payloads"] as? NSNumber)?.intValue == 500)
            #expect(object["latency_us"] == nil, "the old object is gone")
            #expect(object["latency_buckets_us"] == nil, "buckets only with --histogram")
        }
    }

    @Test func histogramOptionAddsBucketsAndATextHistogram() throws {
        var accounting = SinkAccounting(localClock: Self.clock)
        let latencies: [UInt64] = [3, 3, 9, 40, 41, 47, 300, 5_000, 5_000]
        for (sequence, microseconds) in latencies.enumerated() {
            accounting.record(Self.payload(sequence: UInt64(sequence), sentAt: 0).span, from: Self.source, receivedAt: microseconds * 1000)
        }
        let object = try Self.json(
            SinkReport(json: true, histogram: true).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil))
        let buckets = try #require(object["latency_buckets_us"] as? [[NSNumber]])
        #expect(buckets.allSatisfy { $0.count == 3 && $0[0].intValue <= $0[1].intValue })
        #expect(buckets.map { $0[2].intValue }.reduce(0, +) == latencies.count)
        #expect(buckets.first?.prefix(2).map(\.intValue) == [3, 3])
        let text = SinkReport(json: false, histogram: true).line(event: "final", elapsed: 1, interval: 1, now: accounting, previous: nil)
        let rows = text.split(separator: "\n").filter { $0.contains(" -> ") }
        // 2–3, then every row up to 5,000's: none skipped, counts adding up.
        let ranges = rows.map { row in
            row.split(separator: ":")[0].split(separator: " ").compactMap { UInt64($0) }
        }
        #expect(ranges.first == [2, 3])
        #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0[1] + 1 == $1[0] }, "contiguous rows: \(ranges)")
        let counts = rows.map { row in Int(row.split(separator: ":")[1].split(separator: "|")[0].trimmingCharacters(in: .whitespaces)) ?? -1
        }
        #expect(counts.reduce(0, +) == latencies.count)
        #expect(rows.first { $0.contains("   40 -> ") }?.contains("|" + String(repeating: "*", count: 40) + "|") == true, "\(text)")
        #expect(text.contains("one-way latency, 9 payloads:"))
        // Clocks not shared: it says so instead.
        var other = SinkAccounting(localClock: Self.clock)
        other.record(Self.payload(sequence: 0, sentAt: 0, clockID: Self.otherClock).span, from: Self.source, receivedAt: 5)
        let withheld = SinkReport(json: false, histogram: true).line(event: "final", elapsed: 1, interval: 1, now: other, previous: nil)
        #expect(withheld.contains("one-way latency histogram not shown: clocks not shared"))
    }

    @Test func histogramRowsPartitionTheValues() {
        var expectedLow: UInt64 = 0
        for value in 0..<UInt64(70_000) {
            let row = SinkReport.histogramRow(of: value)
            #expect(row.low <= value && value <= row.high)
            if value == expectedLow {
                #expect(row.low == value, "a row starts where the previous ended")
                expectedLow = row.high + 1
            }
        }
        #expect(SinkReport.histogramRow(of: 40) == (40, 47))
        #expect(SinkReport.histogramRow(of: 5) == (4, 7))
        #expect(SinkReport.histogramRow(of: 1_000) == (896, 1_023))
    }

    // MARK: Prometheus

    @Test func prometheusHistogramFromTheHDRHistogram() throws {
        var accounting = SinkAccounting(localClock: Self.clock)
        let latencies: [UInt64] = [5, 10, 11, 90, 100, 2_000, 40_000, 70_000_000]
        for (sequence, microseconds) in latencies.enumerated() {
            accounting.record(Self.payload(sequence: UInt64(sequence), sentAt: 0).span, from: Self.source, receivedAt: microseconds * 1000)
        }
        accounting.record(Self.payload(stream: 2, sequence: 0, sentAt: 0, clockID: Self.otherClock).span, from: nil, receivedAt: 1)
        let exposition = MetricsExposition(constantLabels: [("role", "sink")])
        let published = accounting
        exposition.addSink { published }
        let text = String(decoding: exposition.render(), as: UTF8.self)
        let samples = MetricsTests.samples(exposition.render())
        func bucket(_ le: String) -> Double? { samples[#"udptun_sink_latency_seconds_bucket{role="sink",le="\#(le)"}"#] }
        #expect(text.contains("# TYPE udptun_sink_latency_seconds histogram"))
        #expect(bucket("0.00001") == 2)
        #expect(bucket("0.000025") == 3)
        #expect(bucket("0.0001") == 5)
        #expect(bucket("0.0025") == 6)
        #expect(bucket("0.05") == 7)
        #expect(bucket("10") == 7, "beyond 10 s: in +Inf only")
        #expect(bucket("+Inf") == 8)
        #expect(samples[#"udptun_sink_latency_seconds_count{role="sink"}"#] == 8)
        // 60 s is where the histogram stops: the 70 s one counts as 60 s.
        let sum = try #require(samples[#"udptun_sink_latency_seconds_sum{role="sink"}"#])
        #expect(abs(sum - Double(latencies.dropLast().reduce(0, +) + 60_000_000) / 1e6) < 1e-9)
        #expect(samples[#"udptun_sink_latency_withheld_total{role="sink"}"#] == 1)
        #expect(samples[#"udptun_sink_jitter_seconds{role="sink"}"#] != nil)
        #expect(!text.contains("udptun_sink_latency_max_seconds"), "the gauges are gone")
        // Counts only go up the buckets.
        let counts = MetricsExposition.latencyBoundsMicroseconds.map { bucket(MetricsExposition.seconds(microseconds: $0)) ?? -1 }
        #expect(counts == counts.sorted() && !counts.contains(-1))
    }

    @Test func anEmptyHistogramIsAllZeros() {
        let exposition = MetricsExposition(constantLabels: [("role", "sink")])
        exposition.addSink { SinkAccounting() }
        let samples = MetricsTests.samples(exposition.render())
        #expect(samples[#"udptun_sink_latency_seconds_count{role="sink"}"#] == 0)
        #expect(samples[#"udptun_sink_latency_seconds_bucket{role="sink",le="+Inf"}"#] == 0)
        #expect(samples[#"udptun_sink_latency_seconds_sum{role="sink"}"#] == 0)
    }

    @Test func secondsAreWrittenExactly() {
        #expect(MetricsExposition.seconds(microseconds: 10) == "0.00001")
        #expect(MetricsExposition.seconds(microseconds: 2_500) == "0.0025")
        #expect(MetricsExposition.seconds(microseconds: 2_500_000) == "2.5")
        #expect(MetricsExposition.seconds(microseconds: 10_000_000) == "10")
    }
}
