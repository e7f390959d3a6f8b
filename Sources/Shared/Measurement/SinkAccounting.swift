import WireFormat

/// Everything the sink counts, kept by its single receive thread (no sharing, no locks).
public struct SinkAccounting: Sendable {
    public static let maximumStreams = 64
    public static let maximumSources = 1024

    public struct SourceTally: Sendable, Equatable {
        public var datagrams: UInt64 = 0
        public var bytes: UInt64 = 0
    }

    public private(set) var datagrams: UInt64 = 0
    public private(set) var bytes: UInt64 = 0
    public private(set) var corrupt: UInt64 = 0
    public private(set) var unsequenced: UInt64 = 0
    public private(set) var streams: [UInt32: SequenceWindow] = [:]
    /// When each stream was last seen, as the datagram count then: with `maximumStreams` tracked, a
    /// new one replaces the least recently seen, so made-up stream ids cannot lock a real one out.
    private var lastSeen: [UInt32: UInt64] = [:]
    /// Streams replaced that way.
    public private(set) var streamsReplaced: UInt64 = 0
    /// What the replaced streams had counted, so the totals never go back.
    private var replaced = SinkTotals(datagrams: 0, bytes: 0, corrupt: 0, unsequenced: 0)
    public private(set) var sources: [SocketAddress: SourceTally] = [:]
    /// Datagrams from sources beyond `maximumSources` (counted in totals, not per source).
    public private(set) var otherSources: UInt64 = 0
    public private(set) var latency = LatencyStats()

    public init() {}

    public mutating func record(_ payload: Span<UInt8>, from source: SocketAddress?, receivedAt: UInt64) {
        datagrams += 1
        bytes += UInt64(payload.count)
        if let source {
            if sources[source] != nil || sources.count < Self.maximumSources {
                sources[source, default: SourceTally()].datagrams += 1
                sources[source, default: SourceTally()].bytes += UInt64(payload.count)
            } else {
                otherSources += 1
            }
        }
        switch ProbePayload.decode(payload) {
        case .unsequenced:
            unsequenced += 1
        case .corrupt:
            corrupt += 1
        case let .probe(probe):
            if streams[probe.streamID] == nil, streams.count >= Self.maximumStreams { replaceLeastRecentlySeen() }
            lastSeen[probe.streamID] = datagrams
            let arrival = streams[probe.streamID, default: SequenceWindow()].record(probe.sequence)
            if arrival != .duplicate { latency.record(sentAt: probe.sendTimeNanoseconds, receivedAt: receivedAt) }
        }
    }

    /// Drops the stream seen longest ago (a scan of `maximumStreams` entries, only when full), keeping
    /// its counts in the totals.
    private mutating func replaceLeastRecentlySeen() {
        guard let oldest = lastSeen.min(by: { $0.value < $1.value })?.key else { return }
        lastSeen[oldest] = nil
        if let window = streams.removeValue(forKey: oldest) {
            replaced.received += window.unique
            replaced.lost += window.lost
            replaced.duplicates += window.duplicates
            replaced.reordered += window.reordered
        }
        streamsReplaced += 1
    }

    public var totals: SinkTotals {
        var totals = SinkTotals(datagrams: datagrams, bytes: bytes, corrupt: corrupt, unsequenced: unsequenced)
        totals.received = replaced.received
        totals.lost = replaced.lost
        totals.duplicates = replaced.duplicates
        totals.reordered = replaced.reordered
        for window in streams.values {
            totals.received += window.unique
            totals.lost += window.lost
            totals.duplicates += window.duplicates
            totals.reordered += window.reordered
        }
        totals.streams = streams.count
        totals.streamsReplaced = streamsReplaced
        return totals
    }
}

/// The sink's headline numbers.
public struct SinkTotals: Sendable, Equatable {
    public var datagrams: UInt64
    public var bytes: UInt64
    public var corrupt: UInt64
    public var unsequenced: UInt64
    /// Unique generator payloads.
    public var received: UInt64 = 0
    public var lost: UInt64 = 0
    public var duplicates: UInt64 = 0
    public var reordered: UInt64 = 0
    public var streams = 0
    /// Streams dropped, least recently seen first, to make room for new ones (their counts stay in
    /// the totals).
    public var streamsReplaced: UInt64 = 0
}
