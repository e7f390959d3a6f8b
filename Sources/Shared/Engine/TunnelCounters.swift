import Synchronization
import KernelIO
import WireFormat

/// The counters of a tunnel endpoint (client or relay). Workers add to them once per batch from
/// local tallies, so the hot path does no atomic operation per packet.
public final class TunnelCounters: Sendable {
    public let udpReceived = Counter()
    public let udpReceivedBytes = Counter()
    public let udpSent = Counter()
    public let udpSentBytes = Counter()
    public let tunRead = Counter()
    public let tunReadBytes = Counter()
    public let tunWritten = Counter()
    public let tunWrittenBytes = Counter()
    public let drops: [Counter] = DropReason.allCases.map { _ in Counter() }
    /// Control messages received and sent, by `ControlMessage` type.
    public let controlReceived: [Counter] = ControlMessage.allCases.map { _ in Counter() }
    public let controlSent: [Counter] = ControlMessage.allCases.map { _ in Counter() }
    /// Control replies the kernel refused to send.
    public let controlSendFailed = Counter()
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent back to the sender of an oversize packet.
    public let tooBigSent = Counter()
    /// Buffers the kernel dropped at the UDP socket's full receive buffer (never seen by udptun).
    private let socketDrops = Atomic<UInt64>(0)

    public init() {}

    /// Records the socket's cumulative kernel drop count (SO_RXQ_OVFL). The kernel counts dropped
    /// buffers: one UDP GSO buffer from a peer is up to 64 datagrams.
    public func setSocketDrops(_ value: UInt64) { socketDrops.store(value, ordering: .relaxed) }

    public func add(_ tally: BatchTally) {
        udpReceived.add(tally.udpReceived)
        udpReceivedBytes.add(tally.udpReceivedBytes)
        udpSent.add(tally.udpSent)
        udpSentBytes.add(tally.udpSentBytes)
        tunRead.add(tally.tunRead)
        tunReadBytes.add(tally.tunReadBytes)
        tunWritten.add(tally.tunWritten)
        tunWrittenBytes.add(tally.tunWrittenBytes)
        if tally.anyDrops {
            for reason in DropReason.allCases { drops[reason.rawValue].add(tally.drops[reason.rawValue]) }
        }
        controlSendFailed.add(tally.controlSendFailed)
        tooBigSent.add(tally.tooBigSent)
        if tally.anyControl {
            for type in ControlMessage.allCases {
                controlReceived[type.rawValue].add(tally.controlReceived[type.rawValue])
                controlSent[type.rawValue].add(tally.controlSent[type.rawValue])
            }
        }
    }

    public func snapshot() -> TunnelSnapshot {
        var snapshot = TunnelSnapshot()
        snapshot.udpReceived = udpReceived.load
        snapshot.udpReceivedBytes = udpReceivedBytes.load
        snapshot.udpSent = udpSent.load
        snapshot.udpSentBytes = udpSentBytes.load
        snapshot.tunRead = tunRead.load
        snapshot.tunReadBytes = tunReadBytes.load
        snapshot.tunWritten = tunWritten.load
        snapshot.tunWrittenBytes = tunWrittenBytes.load
        snapshot.drops = drops.map(\.load)
        snapshot.controlReceived = controlReceived.map(\.load)
        snapshot.controlSent = controlSent.map(\.load)
        snapshot.controlSendFailed = controlSendFailed.load
        snapshot.tooBigSent = tooBigSent.load
        snapshot.socketDrops = socketDrops.load(ordering: .relaxed)
        return snapshot
    }
}

/// One worker's counts for the batch in hand; a value type kept on the worker's stack.
public struct BatchTally {
    public var udpReceived = 0
    public var udpReceivedBytes = 0
    public var udpSent = 0
    public var udpSentBytes = 0
    public var tunRead = 0
    public var tunReadBytes = 0
    public var tunWritten = 0
    public var tunWrittenBytes = 0
    /// Indexed by `DropReason.rawValue`; inline so a tally never allocates.
    public var drops = InlineArray<32, Int>(repeating: 0)
    public private(set) var anyDrops = false
    /// Indexed by `ControlMessage.rawValue`.
    public var controlReceived = InlineArray<6, Int>(repeating: 0)
    public var controlSent = InlineArray<6, Int>(repeating: 0)
    public private(set) var anyControl = false
    public var controlSendFailed = 0
    public var tooBigSent = 0

    public init() {}

    /// Back to zero for the next batch, touching the per-reason counts only when some were taken (a
    /// fresh tally is a few hundred bytes to copy, paid per batch).
    public mutating func reset() {
        udpReceived = 0
        udpReceivedBytes = 0
        udpSent = 0
        udpSentBytes = 0
        tunRead = 0
        tunReadBytes = 0
        tunWritten = 0
        tunWrittenBytes = 0
        controlSendFailed = 0
        tooBigSent = 0
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
    public var udpReceived: UInt64 = 0
    public var udpReceivedBytes: UInt64 = 0
    public var udpSent: UInt64 = 0
    public var udpSentBytes: UInt64 = 0
    public var tunRead: UInt64 = 0
    public var tunReadBytes: UInt64 = 0
    public var tunWritten: UInt64 = 0
    public var tunWrittenBytes: UInt64 = 0
    public var drops: [UInt64] = DropReason.allCases.map { _ in 0 }
    public var controlReceived: [UInt64] = ControlMessage.allCases.map { _ in 0 }
    public var controlSent: [UInt64] = ControlMessage.allCases.map { _ in 0 }
    public var controlSendFailed: UInt64 = 0
    public var tooBigSent: UInt64 = 0
    public var socketDrops: UInt64 = 0

    public init() {}

    public var dropped: UInt64 { drops.reduce(0, +) }
    /// Control datagrams received (answered or consumed): `udpReceived = tunWritten + control + UDP-side drops`.
    public var control: UInt64 { controlReceived.reduce(0, +) }

    public func drops(_ reason: DropReason) -> UInt64 { drops[reason.rawValue] }

    /// Counts of two queues together.
    public static func + (lhs: TunnelSnapshot, rhs: TunnelSnapshot) -> TunnelSnapshot {
        var sum = TunnelSnapshot()
        sum.udpReceived = lhs.udpReceived + rhs.udpReceived
        sum.udpReceivedBytes = lhs.udpReceivedBytes + rhs.udpReceivedBytes
        sum.udpSent = lhs.udpSent + rhs.udpSent
        sum.udpSentBytes = lhs.udpSentBytes + rhs.udpSentBytes
        sum.tunRead = lhs.tunRead + rhs.tunRead
        sum.tunReadBytes = lhs.tunReadBytes + rhs.tunReadBytes
        sum.tunWritten = lhs.tunWritten + rhs.tunWritten
        sum.tunWrittenBytes = lhs.tunWrittenBytes + rhs.tunWrittenBytes
        sum.drops = zip(lhs.drops, rhs.drops).map { $0 + $1 }
        sum.controlReceived = zip(lhs.controlReceived, rhs.controlReceived).map { $0 + $1 }
        sum.controlSent = zip(lhs.controlSent, rhs.controlSent).map { $0 + $1 }
        sum.controlSendFailed = lhs.controlSendFailed + rhs.controlSendFailed
        sum.tooBigSent = lhs.tooBigSent + rhs.tooBigSent
        sum.socketDrops = lhs.socketDrops + rhs.socketDrops
        return sum
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
            [("tun_read_q\(index)", counters.tunRead.load), ("received_q\(index)", counters.udpReceived.load)]
        }
    }
}
