import KernelIO
import WireFormat

/// Packets and bytes per session (a key with `--client-key`, a GTP-U session), both ways: what the
/// UDP → TUN direction handed to the device for it, and what the TUN → UDP direction sealed for it.
/// Workers tally locally and add once per batch, for the sessions the batch touched only.
public final class SessionCounters: Sendable {
    public let forwarded: [Counter]
    public let forwardedBytes: [Counter]
    public let sent: [Counter]
    public let sentBytes: [Counter]

    public init(sessions: Int) {
        forwarded = (0..<sessions).map { _ in Counter() }
        forwardedBytes = (0..<sessions).map { _ in Counter() }
        sent = (0..<sessions).map { _ in Counter() }
        sentBytes = (0..<sessions).map { _ in Counter() }
    }

    public var count: Int { forwarded.count }

    /// Each session's counts, in session order.
    public var figures: [SessionCounts] {
        (0..<count).map {
            SessionCounts(
                forwarded: forwarded[$0].load, forwardedBytes: forwardedBytes[$0].load,
                sent: sent[$0].load, sentBytes: sentBytes[$0].load)
        }
    }
}

/// One session's packets and bytes: handed to the TUN device from it, and sealed and sent to it.
public struct SessionCounts: Sendable, Equatable {
    public var forwarded: UInt64
    public var forwardedBytes: UInt64
    public var sent: UInt64
    public var sentBytes: UInt64

    public init(forwarded: UInt64, forwardedBytes: UInt64, sent: UInt64, sentBytes: UInt64) {
        self.forwarded = forwarded
        self.forwardedBytes = forwardedBytes
        self.sent = sent
        self.sentBytes = sentBytes
    }

    /// An endpoint with a single session: all it carried is that session's.
    public init(totals: TunnelSnapshot) {
        self.init(
            forwarded: totals[.forwarded], forwardedBytes: totals[.forwardedBytes], sent: totals[.sent], sentBytes: totals[.sentBytes])
    }
}

/// One worker's per-session counts for the batch in hand, allocated once. The range of sessions a
/// batch touched is kept as two bounds, so flushing costs nothing for sessions it did not touch and
/// counting a packet is two increments and two comparisons.
struct SessionTally {
    private var packets: [Int]
    private var bytes: [Int]
    private var lowest = Int.max
    private var highest = -1

    init(sessions: Int) {
        packets = [Int](repeating: 0, count: sessions)
        bytes = [Int](repeating: 0, count: sessions)
    }

    mutating func add(_ session: PeerSession, bytes count: Int, packets number: Int = 1) {
        let index = session.index
        guard index >= 0, index < packets.count else { return }
        packets[index] += number
        bytes[index] += count
        if index < lowest { lowest = index }
        if index > highest { highest = index }
    }

    /// Adds what the batch counted to `counters` (its forwarded or its sent side) and starts over.
    mutating func flush(into counters: SessionCounters, sent: Bool) {
        guard highest >= lowest else { return }
        for index in lowest...highest where packets[index] > 0 {
            (sent ? counters.sent : counters.forwarded)[index].add(packets[index])
            (sent ? counters.sentBytes : counters.forwardedBytes)[index].add(bytes[index])
            packets[index] = 0
            bytes[index] = 0
        }
        lowest = .max
        highest = -1
    }
}
