/// UDP → TUN: receives datagrams, checks who sent them, decapsulates, validates the inner packet and
/// writes it to the TUN device. Used by the relay (toward C) and the client (return traffic).
public struct InboundPolicy: Sendable {
    /// Datagram sources accepted; nil accepts any source.
    public var allowedSources: [IPPrefix]?
    /// When set, only datagrams from this endpoint's address are accepted (the client's relay).
    public var onlyPeer: IPAddress?
    public var forwardIPv6: Bool
    /// Largest inner packet the TUN device accepts (its MTU).
    public var maximumPacketLength: Int
    /// Inner sources per client and reachable destinations (the relay); nil checks neither.
    public var packets: PacketPolicy?

    public init(allowedSources: [IPPrefix]? = nil, onlyPeer: IPAddress? = nil, forwardIPv6: Bool = true,
                maximumPacketLength: Int = 65535, packets: PacketPolicy? = nil) {
        self.allowedSources = allowedSources
        self.onlyPeer = onlyPeer
        self.forwardIPv6 = forwardIPv6
        self.maximumPacketLength = maximumPacketLength
        self.packets = packets
    }

    /// Why a datagram from `peer` is refused, or nil if it may be processed.
    func refusal(for peer: SocketAddress) -> DropReason? {
        if let onlyPeer, peer.ip != onlyPeer { return .unknownPeer }
        if let allowedSources, !allowedSources.contains(where: { $0.contains(peer.ip) }) { return .notAllowed }
        return nil
    }
}

public struct InboundPipeline<E: Encapsulation>: Sendable {
    public let socket: UDPSocket
    /// Every queue of the device: packets are written through the queue of their flow, not the
    /// socket's own (see `FlowSteering`).
    public let tunQueues: [TunDevice]
    public let encapsulation: E
    public let policy: InboundPolicy
    public let counters: TunnelCounters
    /// The relay learns return routes here; the client passes nil.
    public let clients: ClientTable?
    public let batchSize: Int
    /// How often a worker re-stamps a known client in the shared table (nanoseconds).
    public static var refreshInterval: UInt64 { 1_000_000_000 }

    public init(socket: UDPSocket, tunQueues: [TunDevice], encapsulation: E, policy: InboundPolicy,
                counters: TunnelCounters, clients: ClientTable?, batchSize: Int = 16) {
        self.socket = socket
        precondition(!tunQueues.isEmpty, "an inbound pipeline needs a TUN queue")
        self.tunQueues = tunQueues
        self.encapsulation = encapsulation
        self.policy = policy
        self.counters = counters
        self.clients = clients
        self.batchSize = batchSize
    }

    /// The per-thread state that moves batches in this direction.
    public func makeStage() -> WorkStage<InboundWork<E>> { WorkStage(InboundWork(self)) }
}

/// One thread's UDP → TUN state: the receive batch, the TUN writer and the opener, allocated once.
/// Per-batch values (`tally`, `deviceError`) are stored here too, and the per-datagram work is a
/// method, not a nested function: a local `var` captured by a nested function and a closure is
/// boxed, and every access to a box is a dynamic exclusivity check.
public struct InboundWork<E: Encapsulation>: PipelineWork {
    private let pipeline: InboundPipeline<E>
    private let batch: PacketBatch
    private var writer: TunWriter
    // Worker-local memory of the last learned endpoint per client, so the shared table is locked
    // only when a client appears, moves, or is due for a refresh.
    private var learned: [IPAddress: ClientTable.Entry] = [:]
    private var opener: E.Opener
    private var tally = BatchTally()
    private var deviceError: SystemError?

    init(_ pipeline: InboundPipeline<E>) {
        self.pipeline = pipeline
        batch = PacketBatch(slotCount: pipeline.batchSize, slotSize: 65536)
        writer = TunWriter(queues: pipeline.tunQueues, coalesce: true)
        learned.reserveCapacity(pipeline.clients?.capacity ?? 0)
        opener = pipeline.encapsulation.makeOpener()
    }

    public var readinessDescriptor: Int32 { pipeline.socket.fd }

    @_specialize(where E == RawEncapsulation)
    @_specialize(where E == AuthenticatedEncapsulation)
    public mutating func pump(_ lifecycle: Lifecycle) -> Int? {
        let socket = pipeline.socket, batch = batch
        let received: Int
        do {
            received = try socket.receive(into: batch, waker: lifecycle.waker, timeoutMilliseconds: 0)
        } catch {
            lifecycle.fail("UDP receive failed: \(error)")
            return nil
        }
        if received == 0 { return 0 }
        tally = BatchTally()
        deviceError = nil
        let now = pipeline.clients == nil ? 0 : Clock.monotonicNanoseconds()
        for slot in 0..<received where deviceError == nil {
            let range = batch.range(of: slot)
            // A UDP GRO receive holds several datagrams of `segmentSize` bytes (the last shorter).
            let segmentSize = batch.segmentSize(of: slot) > 0 ? batch.segmentSize(of: slot) : max(range.count, 1)
            let datagrams = max(1, (range.count + segmentSize - 1) / segmentSize)
            tally.udpReceived += datagrams
            tally.udpReceivedBytes += range.count
            guard let peer = batch.peer(of: slot) else { tally.drop(.unknownPeer, count: datagrams); continue }
            if let refusal = pipeline.policy.refusal(for: peer) { tally.drop(refusal, count: datagrams); continue }
            batch.withMutableSlot(slot) { bytes in
                var offset = range.lowerBound
                repeat {
                    let end = min(offset + segmentSize, range.upperBound)
                    deliver(&bytes, offset..<end, from: peer, now: now)
                    offset = end
                } while offset < range.upperBound && deviceError == nil
            }
        }
        if deviceError == nil {
            do throws(SystemError) { try writer.flush(tally: &tally) } catch { deviceError = error }
        }
        pipeline.counters.add(tally)
        if let kernelDrops = batch.kernelDrops { pipeline.counters.setSocketDrops(kernelDrops) }
        if let deviceError, !lifecycle.isStopping {
            lifecycle.fail("TUN device \(pipeline.tunQueues[0].name) disappeared (deleted?): \(deviceError)")
            return nil
        }
        return received
    }

    /// One datagram: open (verify, decrypt), validate, learn the sender, hand to the writer.
    private mutating func deliver(_ slotBytes: inout MutableSpan<UInt8>, _ datagram: Range<Int>, from peer: SocketAddress,
                                  now: UInt64) {
        let inner: Range<Int>
        switch opener.open(&slotBytes, datagram: datagram) {
        case let .success(range): inner = range
        case let .failure(reason): tally.drop(reason); return
        }
        let packet = slotBytes.span.extracting(inner)
        let info: IPPacketInfo
        switch IPPacket.validate(packet) {
        case let .success(valid): info = valid
        case let .failure(reason): tally.drop(reason); return
        }
        if let refusal = pipeline.policy.packets?.refusal(for: info, from: peer.ip, keyIndex: opener.lastKeyIndex) {
            tally.drop(refusal)
            return
        }
        if info.version == 6, !pipeline.policy.forwardIPv6 { tally.drop(.ipv6Disabled); return }
        if info.totalLength > pipeline.policy.maximumPacketLength { tally.drop(.oversize); return }
        if let clients = pipeline.clients {
            let known = learned[info.source], keyIndex = opener.lastKeyIndex ?? 0
            if known?.endpoint != peer || known?.keyIndex != keyIndex
                || now &- (known?.refreshedAt ?? 0) > InboundPipeline<E>.refreshInterval {
                if learned.count >= clients.capacity { learned.removeAll(keepingCapacity: true) }
                learned[info.source] = ClientTable.Entry(endpoint: peer, keyIndex: keyIndex, refreshedAt: now)
                clients.learn(info.source, at: peer, keyIndex: keyIndex, now: now)
            }
        }
        do throws(SystemError) {
            try writer.write(packet, info: info, tally: &tally)
        } catch {
            deviceError = error
        }
    }
}
