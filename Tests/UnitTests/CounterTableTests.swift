import Foundation
import Testing

@testable import CLI
@testable import Engine
@testable import KernelIO
@testable import Measurement
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
        counters.add(&tally)
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
        queues[1].add(&tally)
        let figures = Dictionary(uniqueKeysWithValues: queues.perQueueFigures())
        #expect(figures == ["tun_read_q0": 0, "received_q0": 0, "tun_read_q1": 3, "received_q1": 5])
        let exposition = MetricsExposition(constantLabels: [])
        exposition.addTunnel(queues)
        let samples = MetricsTests.samples(exposition.render())
        #expect(samples[#"udptun_queue_tun_read_packets_total{queue="1"}"#] == 3)
        #expect(samples[#"udptun_queue_received_datagrams_total{queue="1"}"#] == 5)
    }
}

/// docs/monitoring.md's "Counters" table against the code: every counter the programs expose or
/// report has its row, and every row names a counter that exists.
@Suite("Counters: the documentation's table")
struct CounterDocumentationTests {
    /// The table's rows as (JSON key, metric) cells, backticks removed; "–" where there is none.
    static func rows() throws -> [(json: String, metric: String)] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/monitoring.md"), encoding: .utf8)
        let section = try #require(text.components(separatedBy: "\n## Counters\n").dropFirst().first)
        let table = section.components(separatedBy: "\n## ")[0]
        return table.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| JSON key") }.map { line in
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "`", with: "")
            }
            return (cells[1], cells[2])
        }
    }

    /// Every metric family the Monitoring module can expose, from each program's parts.
    static func exposedFamilies() throws -> Set<String> {
        let exposition = MetricsExposition(constantLabels: [])
        exposition.addBuildInfo(version: "0.0.0")
        exposition.addTunnel([TunnelCounters(), TunnelCounters()])
        exposition.addOffloads([("udp_gso", true)])
        exposition.addSessions(names: ["a", "b"], counters: SessionCounters(sessions: 2))
        let clients = ClientTable(capacity: 4)
        _ = clients.learn(IPAddress("198.19.0.1")!, at: SocketAddress(ip: IPAddress("198.18.1.1")!, port: 1), now: 1)
        exposition.addClientTable(clients)
        exposition.addClients(clients)
        exposition.addOwnAddresses(try OwnAddresses(reader: { () throws(SystemError) in [] }))
        exposition.addGenerator(ProbeGenerator.Counters())
        exposition.addGTPUPaths(GTPUPathMonitor())
        exposition.addSink { SinkAccounting() }
        let text = String(decoding: exposition.render(), as: UTF8.self)
        return Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
    }

    @Test("each tunnel count, drop reason and control message has its row with its JSON key and metric")
    func tunnelCountsHaveRows() throws {
        let rows = try Self.rows()
        func has(_ json: String, _ metric: String) -> Bool { rows.contains { $0.json == json && $0.metric == metric } }
        for count in TunnelCount.allCases {
            #expect(has(count.jsonKey, count.metricName), "no row `\(count.jsonKey)` | `\(count.metricName)`")
        }
        for reason in DropReason.allCases {
            #expect(has("drops.\(reason)", #"udptun_dropped_packets_total{reason="\#(reason)"}"#), "no row for drops.\(reason)")
        }
        for type in ControlMessage.allCases {
            for direction in ["in", "out"] {
                #expect(
                    has("control_\(direction).\(type)", #"udptun_control_messages_total{type="\#(type)",direction="\#(direction)"}"#),
                    "no row for control_\(direction).\(type)")
            }
        }
    }

    @Test("the metrics in the table are exactly those the programs expose")
    func tableMatchesExposition() throws {
        let documented = Set(try Self.rows().map(\.metric).filter { $0 != "–" }.map { String($0.split(separator: "{")[0]) })
        let exposed = try Self.exposedFamilies()
        #expect(
            exposed.subtracting(documented).isEmpty, "exposed but not in docs/monitoring.md: \(exposed.subtracting(documented).sorted())")
        #expect(
            documented.subtracting(exposed).isEmpty, "in docs/monitoring.md but not exposed: \(documented.subtracting(exposed).sorted())")
    }
}
