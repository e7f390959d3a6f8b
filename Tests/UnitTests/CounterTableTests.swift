import Foundation
import Testing
@testable import CLI
@testable import Engine
@testable import Monitoring
@testable import WireFormat

/// The tunnel's counters are described once (`TunnelCount`); the tallies, the JSON report, the
/// metrics and the documentation's table all follow that description.
@Suite("Counters: one description each")
struct CounterTableTests {
    @Test("the inline tally has room for every count, and keys and metric names are unique and well formed")
    func namesAreWellFormed() {
        #expect(TunnelCount.count == TunnelCount.allCases.count)
        #expect(TunnelCount.count <= BatchTally().counts.count)
        let keys = TunnelCount.allCases.map(\.jsonKey), metrics = TunnelCount.allCases.map(\.metricName)
        #expect(Set(keys).count == keys.count && Set(metrics).count == metrics.count)
        #expect(keys.allSatisfy { $0.allSatisfy { $0.isLowercase || $0 == "_" } }, "\(keys)")
        #expect(TunnelCount.receivedBytes.jsonKey == "received_bytes" && TunnelCount.tooBigSent.jsonKey == "too_big_sent")
        for count in TunnelCount.allCases {
            #expect(count.metricName.hasPrefix("udptun_" + count.jsonKey) && count.metricName.hasSuffix("_total"))
            #expect(count.help.hasSuffix(".") && count.metricHelp.contains("(JSON: \(count.jsonKey))"))
        }
    }

    @Test("every count reaches the JSON report and the metrics under its names, with its own value")
    func everyCountIsReportedAndExposed() throws {
        let counters = TunnelCounters()
        var tally = BatchTally()
        // A distinct value per count, so a count reported under another's name shows.
        for count in TunnelCount.allCases where count != .socketDropped { tally[count] = 100 + count.rawValue }
        counters.add(tally)
        counters.setSocketDropped(UInt64(100 + TunnelCount.socketDropped.rawValue))
        let snapshot = [counters].snapshot()

        let line = TunnelReport(role: "relay", json: true)
            .line(event: "final", elapsed: 1, interval: 1, now: snapshot, previous: TunnelSnapshot())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let exposition = MetricsExposition(constantLabels: [])
        exposition.addTunnel([counters])
        let samples = MetricsTests.samples(exposition.render())
        for count in TunnelCount.allCases {
            let expected = 100 + count.rawValue
            #expect((object[count.jsonKey] as? NSNumber)?.intValue == expected, "JSON \(count.jsonKey)")
            #expect(samples[count.metricName] == Double(expected), "metric \(count.metricName)")
        }
    }

    @Test("two queues: per-queue figures and series for the counts reported per queue")
    func perQueueCounts() {
        let queues = [TunnelCounters(), TunnelCounters()]
        var tally = BatchTally()
        tally[.tunRead] = 3
        tally[.received] = 5
        queues[1].add(tally)
        let figures = Dictionary(uniqueKeysWithValues: queues.perQueueFigures())
        #expect(figures == ["tun_read_q0": 0, "received_q0": 0, "tun_read_q1": 3, "received_q1": 5])
        let exposition = MetricsExposition(constantLabels: [])
        exposition.addTunnel(queues)
        let samples = MetricsTests.samples(exposition.render())
        #expect(samples[#"udptun_queue_tun_read_packets_total{queue="1"}"#] == 3)
        #expect(samples[#"udptun_queue_received_datagrams_total{queue="1"}"#] == 5)
    }
}
