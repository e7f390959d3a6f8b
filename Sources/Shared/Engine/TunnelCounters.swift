import KernelIO
import WireFormat

/// Every scalar count a tunnel endpoint keeps, described once. The case is the name in code; the
/// JSON key is the case's name in snake case, the metric is `udptun_` + the JSON key + the unit +
/// `_total`, and the help text is written here. Tallies, atomics, snapshots, sums, the JSON report,
/// the metrics and the documentation's table (checked by a test) all follow this list, so a new
/// counter is one case and one line in each switch below.
public enum TunnelCount: Int, CaseIterable, Sendable {
    case received, receivedBytes, forwarded, forwardedBytes, tunRead, tunReadBytes, sent, sentBytes
    case controlSendFailed, tooBigSent, repliesLimited, socketDropped

    /// How many there are (a literal, read per batch; a unit test checks it against the cases).
    public static let count = 12

    /// The JSON report's key: the case name in snake case (`receivedBytes` → `received_bytes`).
    public var jsonKey: String {
        String(describing: self).reduce(into: "") { key, character in
            if character.isUppercase { key += "_" + character.lowercased() } else { key.append(character) }
        }
    }

    /// What one unit of the count is, where the key does not say (metric names carry their unit).
    var unit: String? {
        switch self {
        case .received, .sent: "datagrams"
        case .forwarded, .tunRead: "packets"
        case .socketDropped: "buffers"
        case .receivedBytes, .forwardedBytes, .tunReadBytes, .sentBytes, .controlSendFailed, .tooBigSent, .repliesLimited: nil
        }
    }

    /// The Prometheus counter's name.
    public var metricName: String { "udptun_" + metricStem + "_total" }
    /// The per-queue counter's name (`TunnelCount.perQueue`).
    public var queueMetricName: String { "udptun_queue_" + metricStem + "_total" }
    private var metricStem: String { jsonKey + (unit.map { "_" + $0 } ?? "") }

    /// The help text with the JSON key it equals, for the exposition.
    public var metricHelp: String { help.dropLast() + " (JSON: \(jsonKey))." }

    public var help: String {
        switch self {
        case .received: "UDP datagrams received, control messages and drops included."
        case .receivedBytes: "UDP payload bytes received."
        case .forwarded: "Inner packets written to the TUN device."
        case .forwardedBytes: "Inner packet bytes written to the TUN device."
        case .tunRead: "Packets read from the TUN device, super-packets counted as their segments."
        case .tunReadBytes: "Bytes read from the TUN device."
        case .sent: "UDP datagrams sent, control replies included."
        case .sentBytes: "UDP payload bytes sent."
        case .controlSendFailed: "Control replies the kernel refused to send."
        case .tooBigSent: "ICMP fragmentation-needed / packet-too-big messages sent back to the sender of an oversize packet."
        case .repliesLimited: "Replies to unauthenticated datagrams not sent: over the per-source or the total reply budget."
        case .socketDropped:
            "Buffers the kernel dropped at the full UDP receive buffer, never seen by udptun (SO_RXQ_OVFL; one GSO buffer is up to 64 datagrams)."
        }
    }

    /// The two counts reported per queue when there are several (`tun_read_q0`, `received_q0`, …).
    public static let perQueue: [TunnelCount] = [.tunRead, .received]
}

/// The counters of a tunnel endpoint (client or relay). Workers add to them once per batch from
/// local tallies, so the hot path does no atomic operation per packet.
public final class TunnelCounters: Sendable {
    /// Indexed by `TunnelCount.rawValue`.
    private let counts = CounterBlock(count: TunnelCount.count)
    public let drops: [Counter] = DropReason.allCases.map { _ in Counter() }
    /// Control messages received and sent, by `ControlMessage` type.
    public let controlReceived: [Counter] = ControlMessage.allCases.map { _ in Counter() }
    public let controlSent: [Counter] = ControlMessage.allCases.map { _ in Counter() }

    public init() {}

    /// The count now.
    public subscript(count: TunnelCount) -> UInt64 { counts.load(at: count.rawValue) }

    /// Records the socket's cumulative kernel drop count (SO_RXQ_OVFL), which the kernel keeps.
    public func setSocketDropped(_ value: UInt64) { counts.store(value, at: TunnelCount.socketDropped.rawValue) }

    /// `inout` only so the tally is read in place: a borrowed one had its inline arrays copied to the
    /// stack for every count read (about 25 instructions each).
    public func add(_ tally: inout BatchTally) {
        // Only the counts this batch touched, inlined: a call per count, across the module
        // boundary, was most of what adding cost when a batch holds one packet.
        var touched = tally.touched
        while touched != 0 {
            let index = touched.trailingZeroBitCount
            touched &= touched &- 1
            counts.add(tally.counts[index], at: index)
        }
        if tally.anyDrops {
            for index in drops.indices { drops[index].add(tally.drops[index]) }
        }
        if tally.anyControl {
            for index in controlReceived.indices {
                controlReceived[index].add(tally.controlReceived[index])
                controlSent[index].add(tally.controlSent[index])
            }
        }
    }

    public func snapshot() -> TunnelSnapshot {
        TunnelSnapshot(
            counts: (0..<TunnelCount.count).map { counts.load(at: $0) }, drops: drops.map(\.load),
            controlReceived: controlReceived.map(\.load),
            controlSent: controlSent.map(\.load))
    }
}

/// One worker's counts for the batch in hand; a value type kept on the worker's stack.
public struct BatchTally {
    /// Indexed by `TunnelCount.rawValue`; inline so a tally never allocates. Written through the
    /// subscript, which keeps `touched`.
    public var counts = InlineArray<16, Int>(repeating: 0)
    /// Bit `rawValue` set for each count written in this batch (through the subscript).
    public var touched: UInt16 = 0
    /// Indexed by `DropReason.rawValue`.
    public var drops = InlineArray<32, Int>(repeating: 0)
    public private(set) var anyDrops = false
    /// Indexed by `ControlMessage.rawValue`.
    public var controlReceived = InlineArray<6, Int>(repeating: 0)
    public var controlSent = InlineArray<6, Int>(repeating: 0)
    public private(set) var anyControl = false

    public init() {}

    @inlinable public subscript(count: TunnelCount) -> Int {
        get { counts[count.rawValue] }
        @inline(__always) set {
            counts[count.rawValue] = newValue
            touched |= 1 << count.rawValue
        }
    }

    /// Back to zero for the next batch, touching the per-reason counts only when some were taken (a
    /// fresh tally is a few hundred bytes to copy, paid per batch).
    public mutating func reset() {
        for index in 0..<TunnelCount.count { counts[index] = 0 }
        touched = 0
        if anyDrops {
            drops = InlineArray(repeating: 0)
            anyDrops = false
        }
        if anyControl {
            controlReceived = InlineArray(repeating: 0)
            controlSent = InlineArray(repeating: 0)
            anyControl = false
        }
    }

    public mutating func drop(_ reason: DropReason, count: Int = 1) {
        anyDrops = true
        drops[reason.rawValue] += count
    }

    public mutating func received(_ message: ControlMessage) {
        anyControl = true
        controlReceived[message.rawValue] += 1
    }

    public mutating func sent(_ message: ControlMessage, count: Int = 1) {
        anyControl = true
        controlSent[message.rawValue] += count
    }
}

/// Counter values at one instant, for reports.
public struct TunnelSnapshot: Sendable, Equatable {
    /// Indexed by `TunnelCount.rawValue`.
    public var counts: [UInt64] = Array(repeating: 0, count: TunnelCount.count)
    public var drops: [UInt64] = DropReason.allCases.map { _ in 0 }
    public var controlReceived: [UInt64] = ControlMessage.allCases.map { _ in 0 }
    public var controlSent: [UInt64] = ControlMessage.allCases.map { _ in 0 }

    public init() {}

    init(counts: [UInt64], drops: [UInt64], controlReceived: [UInt64], controlSent: [UInt64]) {
        self.counts = counts
        self.drops = drops
        self.controlReceived = controlReceived
        self.controlSent = controlSent
    }

    public subscript(count: TunnelCount) -> UInt64 {
        get { counts[count.rawValue] }
        set { counts[count.rawValue] = newValue }
    }

    public var dropped: UInt64 { drops.reduce(0, +) }
    /// Control datagrams received (answered or consumed): `received = forwarded + control + UDP-side drops`.
    public var control: UInt64 { controlReceived.reduce(0, +) }

    public func drops(_ reason: DropReason) -> UInt64 { drops[reason.rawValue] }

    /// Counts of two queues together.
    public static func + (lhs: TunnelSnapshot, rhs: TunnelSnapshot) -> TunnelSnapshot {
        func sum(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] { zip(a, b).map { $0 + $1 } }
        return TunnelSnapshot(
            counts: sum(lhs.counts, rhs.counts), drops: sum(lhs.drops, rhs.drops),
            controlReceived: sum(lhs.controlReceived, rhs.controlReceived),
            controlSent: sum(lhs.controlSent, rhs.controlSent))
    }
}

extension [TunnelCounters] {
    /// The endpoint's counts: every queue's counters together.
    public func snapshot() -> TunnelSnapshot { map { $0.snapshot() }.reduce(TunnelSnapshot(), +) }

    /// With several queues, what each one carried (`tun_read_q0`, `received_q0`, …), so an operator
    /// sees whether the kernel spreads the flows; nothing with one queue.
    public func perQueueFigures() -> [(String, UInt64)] {
        guard count > 1 else { return [] }
        return enumerated().flatMap { index, counters in
            TunnelCount.perQueue.map { ("\($0.jsonKey)_q\(index)", counters[$0]) }
        }
    }
}
