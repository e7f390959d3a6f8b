import KernelIO
import Prometheus

/// The Prometheus text exposition of figures the program already keeps. Nothing on the data plane
/// changes for it: each metric reads its running total (relaxed atomic loads, or a copy the owner
/// publishes) when a scrape renders, under this object's own lock, never a data-plane one.
///
/// swift-prometheus holds the families and writes the text; a counter here is brought up to the
/// total it reads by adding the difference since the last scrape, so the library's counters keep
/// their meaning (they only go up) while the totals stay owned by the workers.
public final class MetricsExposition: Sendable {
    /// Constant labels every series carries (`role`).
    public let constantLabels: [(String, String)]
    private let registry = PrometheusCollectorRegistry()
    private let sources: Locked<[Source]>

    private enum Source {
        case counter(Prometheus.Counter, read: @Sendable () -> UInt64, exported: UInt64)
        case gauge(Prometheus.Gauge, read: @Sendable () -> Double)
        case labelled(LabelledSeries)
        case beforeRender(@Sendable () -> Void)
        case histogram(name: String, help: String, labels: [(String, String)], read: @Sendable () -> HistogramValues?)
    }

    public init(constantLabels: [(String, String)] = []) {
        self.constantLabels = constantLabels
        sources = Locked([])
    }

    /// A monotonic total: `read` returns it. `name` should end in `_total`.
    public func counter(
        _ name: String, help: String, labels: [(String, String)] = [],
        read: @escaping @Sendable () -> UInt64
    ) {
        let counter = registry.makeCounter(descriptor: Self.descriptor(name, help), labels: constantLabels + labels)
        sources.withLock { $0.append(.counter(counter, read: read, exported: 0)) }
    }

    /// A value that goes up and down, or a fixed one (`_info` gauges).
    public func gauge(
        _ name: String, help: String, labels: [(String, String)] = [],
        read: @escaping @Sendable () -> Double
    ) {
        let gauge = registry.makeGauge(descriptor: Self.descriptor(name, help), labels: constantLabels + labels)
        sources.withLock { $0.append(.gauge(gauge, read: read)) }
    }

    /// Series that come and go (one per client), labelled `label`: at each scrape `read` returns
    /// every series' label value, its counter totals (one per name in `counters`) and its gauge
    /// values (one per name in `gauges`). Series no longer returned are removed.
    public func labelledSeries(
        label: String, counters: [(name: String, help: String)], gauges: [(name: String, help: String)],
        read: @escaping @Sendable () -> [LabelledValues]
    ) {
        let family = LabelledSeries(label: label, counterNames: counters, gaugeNames: gauges, constantLabels: constantLabels, read: read)
        sources.withLock { $0.append(.labelled(family)) }
    }

    /// A histogram kept by its owner (swift-prometheus's own can only count observations one by
    /// one): at each scrape `read` returns its cumulative bucket counts, or nil to show no series.
    /// Written after the library's families, in the same text format.
    public func histogram(
        _ name: String, help: String, labels: [(String, String)] = [],
        read: @escaping @Sendable () -> HistogramValues?
    ) {
        sources.withLock { $0.append(.histogram(name: name, help: help, labels: constantLabels + labels, read: read)) }
    }

    /// `name` is the whole name; the library's parts (namespace, unit) are not used.
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Runs `body` at this point of every scrape, in registration order.
    func addBeforeRender(_ body: @escaping @Sendable () -> Void) {
        sources.withLock { $0.append(.beforeRender(body)) }
    }

    /// The exposition text (format 0.0.4), every figure read now.
    public func render() -> [UInt8] {
        sources.withLock { sources in
            var histograms: [UInt8] = []
            for index in sources.indices {
                switch sources[index] {
                case let .counter(counter, read, exported):
                    let total = read()
                    counter.advance(from: exported, to: total)
                    sources[index] = .counter(counter, read: read, exported: total)
                case let .gauge(gauge, read):
                    gauge.set(read())
                case let .labelled(family):
                    family.refresh(registry)
                case let .beforeRender(body):
                    body()
                case let .histogram(name, help, labels, read):
                    if let values = read() { values.emit(name: name, help: help, labels: labels, into: &histograms) }
                }
            }
            var text: [UInt8] = []
            registry.emit(into: &text)
            return text + histograms
        }
    }
}

/// A histogram's figures at one scrape: cumulative counts at or below each upper bound (ascending;
/// `+Inf` is `count`), their sum, and how many.
public struct HistogramValues: Sendable {
    /// (upper bound as written in `le`, count at or below it).
    public var buckets: [(bound: String, count: UInt64)]
    public var sum: Double
    public var count: UInt64

    public init(buckets: [(bound: String, count: UInt64)], sum: Double, count: UInt64) {
        self.buckets = buckets
        self.sum = sum
        self.count = count
    }

    /// The text format's lines: HELP, TYPE, `_bucket` per bound and `+Inf`, `_sum`, `_count`.
    func emit(name: String, help: String, labels: [(String, String)], into text: inout [UInt8]) {
        let escapedHelp = help.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
        let rendered = labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }
        func series(_ suffix: String, _ extra: String?, _ value: String) {
            let all = rendered + (extra.map { [$0] } ?? [])
            text += Array("\(name)\(suffix)\(all.isEmpty ? "" : "{" + all.joined(separator: ",") + "}") \(value)\n".utf8)
        }
        text += Array("# HELP \(name) \(escapedHelp)\n# TYPE \(name) histogram\n".utf8)
        for bucket in buckets { series("_bucket", "le=\"\(bucket.bound)\"", String(bucket.count)) }
        series("_bucket", "le=\"+Inf\"", String(count))
        series("_sum", nil, "\(sum)")
        series("_count", nil, String(count))
    }

    static func escape(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }
}

/// One series' values for `labelledSeries`.
public struct LabelledValues: Sendable {
    public var label: String
    public var counters: [UInt64]
    public var gauges: [Double]

    public init(label: String, counters: [UInt64], gauges: [Double]) {
        self.label = label
        self.counters = counters
        self.gauges = gauges
    }
}

/// Counters and gauges labelled by a value that comes and goes; touched only under the
/// exposition's lock.
private final class LabelledSeries: @unchecked Sendable {
    let label: String
    let counterNames: [(name: String, help: String)]
    let gaugeNames: [(name: String, help: String)]
    let constantLabels: [(String, String)]
    let read: @Sendable () -> [LabelledValues]
    private var series: [String: (counters: [Prometheus.Counter], exported: [UInt64], gauges: [Prometheus.Gauge])] = [:]

    init(
        label: String, counterNames: [(name: String, help: String)], gaugeNames: [(name: String, help: String)],
        constantLabels: [(String, String)], read: @escaping @Sendable () -> [LabelledValues]
    ) {
        self.label = label
        self.counterNames = counterNames
        self.gaugeNames = gaugeNames
        self.constantLabels = constantLabels
        self.read = read
    }

    func refresh(_ registry: PrometheusCollectorRegistry) {
        var seen = Set<String>()
        for values in read() where values.counters.count == counterNames.count && values.gauges.count == gaugeNames.count {
            seen.insert(values.label)
            let labels = constantLabels + [(label, values.label)]
            var entry =
                series[values.label] ?? (
                    counterNames.map { registry.makeCounter(descriptor: MetricsExposition.descriptor($0.name, $0.help), labels: labels) },
                    [UInt64](repeating: 0, count: counterNames.count),
                    gaugeNames.map { registry.makeGauge(descriptor: MetricsExposition.descriptor($0.name, $0.help), labels: labels) }
                )
            for index in counterNames.indices {
                entry.counters[index].advance(from: entry.exported[index], to: values.counters[index])
                entry.exported[index] = values.counters[index]
            }
            for index in gaugeNames.indices { entry.gauges[index].set(values.gauges[index]) }
            series[values.label] = entry
        }
        for (value, entry) in series where !seen.contains(value) {
            for counter in entry.counters { registry.unregisterCounter(counter) }
            for gauge in entry.gauges { registry.unregisterGauge(gauge) }
            series[value] = nil
        }
    }
}

extension Prometheus.Counter {
    /// Brings a counter that showed `exported` to `total`. A total below it means the series started
    /// over (a client forgotten and learned again): the counter does too.
    func advance(from exported: UInt64, to total: UInt64) {
        if total < exported {
            reset()
            if total > 0 { increment(by: Int64(truncatingIfNeeded: total)) }
        } else if total > exported {
            increment(by: Int64(truncatingIfNeeded: total - exported))
        }
    }
}

/// A value taken once per scrape, before the metrics that read it: several metrics then show one
/// instant of the owner's figures, and a costly copy is made once. Read only while rendering.
public final class ScrapeSnapshot<Value: Sendable>: @unchecked Sendable {
    fileprivate let take: @Sendable () -> Value
    fileprivate var taken: Value

    fileprivate init(_ take: @escaping @Sendable () -> Value) {
        self.take = take
        taken = take()
    }

    /// The value of this scrape (under the exposition's lock).
    public var value: Value { taken }

    fileprivate func refresh() { taken = take() }
}

extension MetricsExposition {
    /// Registers `take`, run at the start of every scrape; metrics registered after it read `value`.
    public func snapshot<Value: Sendable>(_ take: @escaping @Sendable () -> Value) -> ScrapeSnapshot<Value> {
        let snapshot = ScrapeSnapshot(take)
        addBeforeRender { snapshot.refresh() }
        return snapshot
    }
}
