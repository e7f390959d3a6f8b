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
            if streams[probe.streamID] == nil, streams.count >= Self.maximumStreams {
                unsequenced += 1  // too many concurrent streams to track them all
                return
            }
            let arrival = streams[probe.streamID, default: SequenceWindow()].record(probe.sequence)
            if arrival != .duplicate { latency.record(sentAt: probe.sendTimeNanoseconds, receivedAt: receivedAt) }
        }
    }

    public var totals: SinkTotals {
        var totals = SinkTotals(datagrams: datagrams, bytes: bytes, corrupt: corrupt, unsequenced: unsequenced)
        for window in streams.values {
            totals.received += window.unique
            totals.lost += window.lost
            totals.duplicates += window.duplicates
            totals.reordered += window.reordered
        }
        totals.streams = streams.count
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
}
