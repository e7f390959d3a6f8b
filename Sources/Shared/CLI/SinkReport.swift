import Measurement
import WireFormat

/// Formats the sink's counters as iperf3-style lines or JSON objects.
public struct SinkReport {
    public let json: Bool

    public init(json: Bool) { self.json = json }

    /// `reflector`: what `--reflect` did (nil without it).
    public func line(
        event: String, elapsed: Double, interval: Double, now: SinkAccounting, previous: SinkTotals?,
        reflector: ReflectorCounts? = nil
    ) -> String {
        let totals = now.totals
        let seconds = max(interval, 1e-9)
        let intervalDatagrams = totals.datagrams &- (previous?.datagrams ?? 0)
        let intervalBytes = totals.bytes &- (previous?.bytes ?? 0)
        let latency = now.latency
        if json {
            var object = JSONLine()
            object.add("event", event)
            object.add("role", "sink")
            object.add("elapsed", elapsed)
            object.add("received", totals.received)
            object.add("lost", totals.lost)
            object.add("duplicates", totals.duplicates)
            object.add("reordered", totals.reordered)
            object.add("corrupt", totals.corrupt)
            object.add("unsequenced", totals.unsequenced)
            object.add("datagrams", totals.datagrams)
            object.add("bytes", totals.bytes)
            object.add("streams", totals.streams)
            object.add("streams_replaced", totals.streamsReplaced)
            object.add("interval_pps", Double(intervalDatagrams) / seconds, decimals: 1)
            object.add("interval_mbps", Double(intervalBytes) * 8 / seconds / 1e6)
            var latencyObject = JSONLine()
            latencyObject.add("min", latency.count == 0 ? nil : Double(latency.minimum) / 1000)
            latencyObject.add("avg", latency.average.map { $0 / 1000 })
            latencyObject.add("max", latency.count == 0 ? nil : Double(latency.maximum) / 1000)
            object.add("latency_us", latencyObject)
            if let reflector { Self.add(reflector, to: &object) }
            if event == "final" {
                object.add(
                    "sources",
                    now.sources.sorted { $0.key.description < $1.key.description }.map { source, tally in
                        var entry = JSONLine()
                        entry.add("address", source.description)
                        entry.add("datagrams", tally.datagrams)
                        entry.add("bytes", tally.bytes)
                        return entry
                    })
            }
            return object.description
        }
        var text = "[\(TunnelReport.pad(format1(elapsed) + "s", 7))] "
        if event == "final" {
            text += "total \(totals.datagrams) datagrams \(totals.bytes) bytes"
        } else {
            text +=
                "\(TunnelReport.formatRate(Double(intervalDatagrams) / seconds)) \(TunnelReport.formatBits(Double(intervalBytes) * 8 / seconds))"
        }
        text += " | received \(totals.received) lost \(totals.lost) dup \(totals.duplicates) reordered \(totals.reordered)"
        text += " corrupt \(totals.corrupt) unsequenced \(totals.unsequenced)"
        if let average = latency.average {
            text +=
                " | latency min/avg/max \(format3(Double(latency.minimum) / 1e6))/\(format3(average / 1e6))/\(format3(Double(latency.maximum) / 1e6)) ms"
        }
        if let reflector {
            text +=
                " | reflected \(reflector.reflected) refused allow/rate/address \(reflector.refusedAllow)/\(reflector.refusedRate)/\(reflector.refusedAddress)"
            if reflector.sendFailed > 0 { text += " send_failed \(reflector.sendFailed)" }
        }
        if event == "final" {
            for (source, tally) in now.sources.sorted(by: { $0.key.description < $1.key.description }) {
                text += "\n  from \(source): \(tally.datagrams) datagrams \(tally.bytes) bytes"
            }
        }
        return text
    }

    static func add(_ reflector: ReflectorCounts, to object: inout JSONLine) {
        object.add("reflected", reflector.reflected)
        object.add("reflect_refused_allow", reflector.refusedAllow)
        object.add("reflect_refused_rate", reflector.refusedRate)
        object.add("reflect_refused_address", reflector.refusedAddress)
        object.add("reflect_send_failed", reflector.sendFailed)
    }
}

func format3(_ value: Double) -> String { JSONLine.format(value, decimals: 3).withDecimals(3) }
