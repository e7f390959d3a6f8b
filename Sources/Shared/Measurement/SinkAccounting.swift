import WireFormat

/// Everything the sink counts, kept by its single receive thread (no sharing, no locks).
///
/// One-way latency (receive time minus the payload's send time) is recorded only for payloads whose
/// sender's clock is the sink's (`ClockIdentity`) or when the operator said the clocks are
/// synchronised; the rest are counted in `latencyWithheld`. Interarrival jitter needs no shared
/// clock and is kept for every source.
public struct SinkAccounting: Sendable {
    public static let maximumStreams = 64
    public static let maximumSources = 1024
    /// Sources with a latency histogram of their own, the first to arrive: each takes about 20 KB
    /// (`LatencyHistogram`), so at most about 1.3 MB in all; later sources count in the total only.
    public static let maximumSourceHistograms = 64

    public struct SourceTally: Sendable, Equatable {
        public var datagrams: UInt64 = 0
        public var bytes: UInt64 = 0
        /// Generator payloads (not duplicates) whose one-way latency was taken, and those withheld
        /// because their sender's clock is not known to be the sink's.
        public var latencyCompared: UInt64 = 0
        public var latencyWithheld: UInt64 = 0
        public var jitter = InterarrivalJitter()
        /// This source's slot in `sourceLatency`; nil beyond `maximumSourceHistograms`.
        var histogramSlot: Int?

        public init(datagrams: UInt64 = 0, bytes: UInt64 = 0) {
            self.datagrams = datagrams
            self.bytes = bytes
        }
    }

    /// The sink's own clock id, and whether the operator vouches for every sender's clock.
    public let localClock: UInt16
    public let synchronisedClocks: Bool
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
    /// One-way latency of every payload whose clock could be compared, all sources together.
    public private(set) var latency = LatencyHistogram()
    /// Per source, for the first `maximumSourceHistograms` sources (see `latency(of:)`).
    private var sourceLatency: [LatencyHistogram] = []
    /// Payloads whose one-way latency was not taken: clocks not known to be shared.
    public private(set) var latencyWithheld: UInt64 = 0
    /// Payloads compared that arrived before they were sent by the clocks: the clocks disagree
    /// (not recorded in `latency`, which would misstate them as 0).
    public private(set) var latencyNegative: UInt64 = 0

    /// `localClock`: `ClockIdentity.local()` in the sink; `synchronisedClocks`: trust one-way
    /// latency from other clocks too (the operator's `--synchronised-clocks`).
    public init(localClock: UInt16 = ProbePayload.unknownClock, synchronisedClocks: Bool = false) {
        self.localClock = localClock
        self.synchronisedClocks = synchronisedClocks
    }

    /// Whether the one-way figures hold: the operator said so, or from what the payloads said.
    public var clock: ClockAgreement? {
        synchronisedClocks ? .synchronised : ClockAgreement(compared: latency.count + latencyNegative, withheld: latencyWithheld)
    }

    /// The same for one source's payloads.
    public func clock(of tally: SourceTally) -> ClockAgreement? {
        synchronisedClocks ? .synchronised : ClockAgreement(compared: tally.latencyCompared, withheld: tally.latencyWithheld)
    }

    /// The one-way latency of `source`'s payloads; nil when it has no histogram of its own.
    public func latency(of source: SocketAddress) -> LatencyHistogram? {
        sources[source]?.histogramSlot.map { sourceLatency[$0] }
    }

    /// The largest of the sources' jitter, in µs (nil before any source has two payloads).
    public var largestJitterMicroseconds: Double? {
        sources.values.compactMap(\.jitter.microseconds).max()
    }

    public mutating func record(_ payload: Span<UInt8>, from source: SocketAddress?, receivedAt: UInt64) {
        datagrams += 1
        bytes += UInt64(payload.count)
        // One lookup per datagram; a new source is inserted (an allocation) once.
        var tally: Dictionary<SocketAddress, SourceTally>.Index?
        if let source {
            tally = sources.index(forKey: source)
            if tally == nil, sources.count < Self.maximumSources {
                var fresh = SourceTally()
                if sourceLatency.count < Self.maximumSourceHistograms {
                    fresh.histogramSlot = sourceLatency.count
                    sourceLatency.append(LatencyHistogram())
                }
                sources[source] = fresh
                tally = sources.index(forKey: source)
            }
            if let tally {
                sources.values[tally].datagrams += 1
                sources.values[tally].bytes += UInt64(payload.count)
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
            guard arrival != .duplicate else { return }
            if let tally { sources.values[tally].jitter.record(sentAt: probe.sendTimeNanoseconds, receivedAt: receivedAt) }
            guard ClockIdentity.comparable(sender: probe.clockID, sink: localClock, synchronised: synchronisedClocks) else {
                latencyWithheld += 1
                if let tally { sources.values[tally].latencyWithheld += 1 }
                return
            }
            if let tally { sources.values[tally].latencyCompared += 1 }
            guard receivedAt >= probe.sendTimeNanoseconds else {
                latencyNegative += 1
                return
            }
            let nanoseconds = receivedAt - probe.sendTimeNanoseconds
            latency.record(nanoseconds: nanoseconds)
            if let tally, let slot = sources.values[tally].histogramSlot { sourceLatency[slot].record(nanoseconds: nanoseconds) }
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

/// Whether one-way latency figures mean something, from the payloads' clock ids.
public enum ClockAgreement: String, Sendable {
    /// Every payload's sender uses the sink's clock (same host).
    case shared
    /// The operator said the clocks are synchronised (`--synchronised-clocks`).
    case synchronised
    /// No payload's sender is known to use the sink's clock: no one-way figures.
    case notShared = "not shared"
    /// Some are and some are not: the figures cover the former only.
    case partlyShared = "partly shared"

    /// nil when no payload has said anything yet.
    init?(compared: UInt64, withheld: UInt64) {
        switch (compared, withheld) {
        case (0, 0): return nil
        case (_, 0): self = .shared
        case (0, _): self = .notShared
        default: self = .partlyShared
        }
    }
}
