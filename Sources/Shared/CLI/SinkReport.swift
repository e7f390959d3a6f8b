import Measurement
import WireFormat

/// Formats the sink's counters as iperf3-style lines or JSON objects.
public struct SinkReport {
    public let json: Bool
    /// `--histogram`: the final report adds the latency distribution (text rows, or JSON buckets).
    public let histogram: Bool

    public init(json: Bool, histogram: Bool = false) {
        self.json = json
        self.histogram = histogram
    }

    /// Why one-way figures are missing, for the text lines.
    static let notSharedReason = "clocks not shared (--synchronised-clocks to trust them)"

    /// `reflector`: what `--reflect` did (nil without it).
    public func line(
        event: String, elapsed: Double, interval: Double, now: SinkAccounting, previous: SinkTotals?,
        reflector: ReflectorCounts? = nil
    ) -> String {
        let totals = now.totals
        let seconds = max(interval, 1e-9)
        let intervalDatagrams = totals.datagrams &- (previous?.datagrams ?? 0)
        let intervalBytes = totals.bytes &- (previous?.bytes ?? 0)
        let sources = now.sources.sorted { $0.key.description < $1.key.description }
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
            Self.addLatency(to: &object, now.latency, clock: now.clock, jitter: now.largestJitterMicroseconds)
            object.add("latency_withheld", now.latencyWithheld)
            object.add("latency_negative", now.latencyNegative)
            if let reflector { Self.add(reflector, to: &object) }
            if event == "final" {
                object.add(
                    "sources",
                    sources.map { source, tally in
                        var entry = JSONLine()
                        entry.add("address", source.description)
                        entry.add("datagrams", tally.datagrams)
                        entry.add("bytes", tally.bytes)
                        Self.addLatency(
                            to: &entry, now.latency(of: source), clock: now.clock(of: tally), jitter: tally.jitter.microseconds)
                        entry.add("latency_withheld", tally.latencyWithheld)
                        if now.latency(of: source) == nil { entry.add("latency_in_total_only", true) }
                        return entry
                    })
                if histogram {
                    object.add("latency_buckets_us", now.latency.occupiedBuckets.map { [$0.lowest, $0.highest, $0.count] })
                }
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
        text += Self.latencyText(now.latency, clock: now.clock, withheld: now.latencyWithheld, jitter: now.largestJitterMicroseconds)
        if now.latencyNegative > 0 { text += " | \(now.latencyNegative) arrived before they were sent: the clocks disagree" }
        if let reflector {
            text +=
                " | reflected \(reflector.reflected) refused allow/rate/address \(reflector.refusedAllow)/\(reflector.refusedRate)/\(reflector.refusedAddress)"
            if reflector.sendFailed > 0 { text += " send_failed \(reflector.sendFailed)" }
        }
        if event == "final" {
            for (source, tally) in sources {
                text += "\n  from \(source): \(tally.datagrams) datagrams \(tally.bytes) bytes"
                text += Self.latencyText(
                    now.latency(of: source), clock: now.clock(of: tally), withheld: tally.latencyWithheld, jitter: tally.jitter.microseconds
                )
                if now.latency(of: source) == nil, tally.latencyCompared > 0 {
                    text += " | latency in the total only (beyond the first \(SinkAccounting.maximumSourceHistograms) sources)"
                }
            }
            if histogram { text += "\n" + Self.histogramText(now.latency, clock: now.clock) }
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

    /// The latency keys of a report or of one source: percentiles (null when there is nothing to
    /// show: no payload yet, or clocks not shared; `clock` says which), jitter, and `clock` once
    /// a payload has said something.
    static func addLatency(to object: inout JSONLine, _ latency: LatencyHistogram?, clock: ClockAgreement?, jitter: Double?) {
        if let clock { object.add("clock", clock.rawValue) }
        let summary = latency?.summary
        object.add("latency_payloads", latency?.count ?? 0)
        object.add("latency_min_us", summary.map { Double($0.minimum) })
        object.add("latency_avg_us", summary?.mean)
        object.add("latency_p50_us", summary.map { Double($0.p50) })
        object.add("latency_p90_us", summary.map { Double($0.p90) })
        object.add("latency_p99_us", summary.map { Double($0.p99) })
        object.add("latency_p999_us", summary.map { Double($0.p999) })
        object.add("latency_max_us", summary.map { Double($0.maximum) })
        object.add("jitter_us", jitter)
    }

    static func latencyText(_ latency: LatencyHistogram?, clock: ClockAgreement?, withheld: UInt64, jitter: Double?) -> String {
        var text = ""
        if let summary = latency?.summary {
            text += " | latency µs p50 \(summary.p50) p90 \(summary.p90) p99 \(summary.p99) p99.9 \(summary.p999) max \(summary.maximum)"
            if withheld > 0 { text += " (\(withheld) from other clocks not shown)" }
        } else if clock == .notShared {
            text += " | latency not shown: " + notSharedReason
        }
        if let jitter { text += " | jitter \(format1(jitter)) µs" }
        return text
    }

    /// The distribution as rows of value ranges (four per power of two from 8 µs, each a quarter
    /// of it wide), with counts and a bar, like the histograms of bcc's latency tools.
    static func histogramText(_ latency: LatencyHistogram, clock: ClockAgreement?) -> String {
        guard !latency.isEmpty else {
            return clock == .notShared
                ? "one-way latency histogram not shown: " + notSharedReason : "one-way latency histogram: no payloads"
        }
        var rows: [(low: UInt64, high: UInt64, count: UInt64)] = []
        for bucket in latency.occupiedBuckets {
            let (low, high) = histogramRow(of: bucket.lowest)
            if let last = rows.last, last.low == low {
                rows[rows.count - 1].count += bucket.count
                continue
            }
            // Empty rows between occupied ones, so gaps show.
            var next = rows.last.map { $0.high + 1 } ?? low
            while next < low {
                let row = histogramRow(of: next)
                rows.append((row.low, row.high, 0))
                next = row.high + 1
            }
            rows.append((low, high, bucket.count))
        }
        let widest = rows.map(\.count).max() ?? 1
        let barWidth = 40
        var text = "one-way latency, \(latency.count) payloads:\n"
        text += TunnelReport.pad("µs", 25) + " : count" + String(repeating: " ", count: 6) + "distribution"
        for row in rows {
            let filled = row.count == 0 ? 0 : max(1, Int((Double(row.count) / Double(widest) * Double(barWidth)).rounded()))
            let bar = String(repeating: "*", count: filled) + String(repeating: " ", count: barWidth - filled)
            let count = String(row.count)
            text += "\n" + TunnelReport.pad(String(row.low), 12) + " -> " + TunnelReport.pad(String(row.high), 9) + " : " + count
            text += String(repeating: " ", count: max(1, 11 - count.count)) + "|" + bar + "|"
        }
        return text
    }

    /// The row holding `value`: 0, 1, 2–3 and 4–7, then quarters of each power of two (8–9, …,
    /// 14–15, 16–19, …). A row's edges fall on the histogram's bucket edges, so no bucket is split.
    static func histogramRow(of value: UInt64) -> (low: UInt64, high: UInt64) {
        if value < 2 { return (value, value) }
        let power = UInt64(1) << (63 - UInt64(value.leadingZeroBitCount))
        if power < 8 { return (power, power * 2 - 1) }
        let width = power / 4
        let low = power + (value - power) / width * width
        return (low, low + width - 1)
    }
}
