import WireFormat

/// What `udptun-sink --reflect` did with generator payloads (other datagrams are never answered).
public struct ReflectorCounts: Sendable, Equatable {
    /// Answers queued for sending.
    public var reflected: UInt64 = 0
    /// Probes from sources outside `--allow`.
    public var refusedAllow: UInt64 = 0
    /// Probes beyond a source's rate, or from a new source while the table is full of active ones.
    public var refusedRate: UInt64 = 0
    /// Probes from port 0 or an address that is not unicast (answering would go nowhere or to many).
    public var refusedAddress: UInt64 = 0
    /// Answers the kernel refused to send.
    public var sendFailed: UInt64 = 0

    public init() {}
}

/// The reflect decision of `udptun-sink --reflect`, kept by the sink's receive thread: which generator
/// payloads to answer, and the answer. Each source address has a token bucket (`rate` answers a
/// second, `burst` at once), so the sink cannot be made to flood a victim whose address is spoofed,
/// and each sender's stream its counts, which the answer carries. Both tables are bounded and
/// allocated once; an entry is replaced only once idle for longer than its state matters (a bucket
/// that has refilled, a stream silent for `streamIdleNanoseconds`), so made-up sources can neither
/// lock out a real one nor earn a fresh burst by pushing it out.
public struct Reflector: Sendable {
    public static let maximumSources = 1024
    public static let maximumStreams = 4096
    public static let streamIdleNanoseconds: UInt64 = 10_000_000_000
    public static let defaultRate: UInt64 = 1000

    public let rate: UInt64
    public let burst: UInt64
    /// nil: any source.
    private let allowed: PrefixSet?
    public private(set) var counts = ReflectorCounts()

    private struct Source {
        var bucket: TokenBucket
        var lastSeen: UInt64
    }
    private struct StreamKey: Hashable {
        var peer: SocketAddress
        var streamID: UInt32
    }
    private struct Stream {
        var received: UInt64 = 0
        var answered: UInt64 = 0
        var lastSeen: UInt64
    }
    private var sources: [IPAddress: Source] = [:]
    private var streams: [StreamKey: Stream] = [:]
    /// No entry of a full table can be replaced before these times (so a flood of new sources costs
    /// one scan of the table per idle period, not one per datagram).
    private var nextSourceScan: UInt64 = 0
    private var nextStreamScan: UInt64 = 0
    private var sourceIdleNanoseconds: UInt64

    /// `rate` answers per second per source address (1 to 1,000,000), `burst` at once (default: a
    /// tenth of a second's worth, at least 32, a generator's burst); `allowed` nil answers anyone.
    public init(rate: UInt64 = Self.defaultRate, burst: UInt64? = nil, allowed: [IPPrefix]? = nil) {
        precondition(rate >= 1 && rate <= 1_000_000)
        self.rate = rate
        self.burst = min(burst ?? max(rate / 10, 32), 1_000_000)
        self.allowed = allowed.map { PrefixSet($0) }
        // A bucket idle this long is full again: replacing it grants nothing.
        sourceIdleNanoseconds = max(self.burst * 1_000_000_000 / rate, 1_000_000_000)
        sources.reserveCapacity(Self.maximumSources)
        streams.reserveCapacity(Self.maximumStreams)
    }

    public enum Decision: Equatable, Sendable {
        /// The answer is in the buffer's first `length` bytes.
        case answer(length: Int)
        /// Not a generator payload, or a corrupt one: never answered, not counted here.
        case notProbe
        case refusedAddress
        case refusedAllow
        case refusedRate
    }

    /// Decides on one datagram received at `now` (monotonic ns) and writes the answer into `answer`
    /// (which must hold `ProbeAnswer.length(answering: payload.count)` bytes).
    public mutating func reflect(
        _ payload: Span<UInt8>, from source: SocketAddress?, now: UInt64, into answer: inout MutableSpan<UInt8>
    ) -> Decision {
        guard case let .probe(probe) = ProbePayload.decode(payload) else { return .notProbe }
        guard let source, source.port != 0, Self.isUnicast(source.ip) else {
            counts.refusedAddress += 1
            return .refusedAddress
        }
        if let allowed, !allowed.contains(source.ip) {
            counts.refusedAllow += 1
            return .refusedAllow
        }
        // One read and one write per table (no in-place accessors): fewer lookups, and no coroutine
        // frame to allocate where the dictionary's accessors are not inlined (debug builds).
        let ip = source.ip.unmappingIPv4
        var sourceEntry: Source
        if let known = sources[ip] {
            sourceEntry = known
        } else {
            guard makeRoom(inSources: now) else {
                counts.refusedRate += 1
                return .refusedRate
            }
            sourceEntry = Source(bucket: TokenBucket(rate: rate, burst: burst), lastSeen: now)
        }
        let key = StreamKey(peer: source, streamID: probe.streamID)
        var stream: Stream
        if let known = streams[key] {
            stream = known
        } else {
            guard makeRoom(inStreams: now) else {
                sources[ip] = sourceEntry
                counts.refusedRate += 1
                return .refusedRate
            }
            stream = Stream(lastSeen: now)
        }
        sourceEntry.lastSeen = now
        stream.lastSeen = now
        stream.received += 1
        let allowed = sourceEntry.bucket.take(now: now)
        sources[ip] = sourceEntry
        guard allowed else {
            streams[key] = stream
            counts.refusedRate += 1
            return .refusedRate
        }
        let answerSequence = stream.answered
        stream.answered += 1
        streams[key] = stream
        let reply = ProbeAnswer(
            streamID: probe.streamID, sequence: probe.sequence, sendTimeNanoseconds: probe.sendTimeNanoseconds,
            reflectorReceived: stream.received, answerSequence: answerSequence,
            length: ProbeAnswer.length(answering: payload.count))
        reply.encode(into: &answer)
        counts.reflected += 1
        return .answer(length: reply.length)
    }

    /// Counts an answer the kernel refused.
    public mutating func sendFailed(_ count: Int) { counts.sendFailed += UInt64(count) }

    /// Whether a new source fits, replacing one idle long enough that its bucket is full again.
    private mutating func makeRoom(inSources now: UInt64) -> Bool {
        guard sources.count >= Self.maximumSources else { return true }
        guard now >= nextSourceScan, let oldest = sources.min(by: { $0.value.lastSeen < $1.value.lastSeen }) else { return false }
        guard now &- oldest.value.lastSeen >= sourceIdleNanoseconds else {
            nextSourceScan = oldest.value.lastSeen + sourceIdleNanoseconds
            return false
        }
        sources[oldest.key] = nil
        return true
    }

    private mutating func makeRoom(inStreams now: UInt64) -> Bool {
        guard streams.count >= Self.maximumStreams else { return true }
        guard now >= nextStreamScan, let oldest = streams.min(by: { $0.value.lastSeen < $1.value.lastSeen }) else { return false }
        guard now &- oldest.value.lastSeen >= Self.streamIdleNanoseconds else {
            nextStreamScan = oldest.value.lastSeen + Self.streamIdleNanoseconds
            return false
        }
        streams[oldest.key] = nil
        return true
    }

    /// Unicast: not unspecified, not "this network" (0/8), not multicast, not 240/4 (reserved, and the
    /// limited broadcast address in it).
    static func isUnicast(_ address: IPAddress) -> Bool {
        switch address.unmappingIPv4 {
        case let .v4(a):
            return a >> 24 != 0 && a >> 28 < 0xe
        case let .v6(high, low):
            return !(high == 0 && low == 0) && high >> 56 != 0xff
        }
    }
}
