/// Where packets read from TUN go: to one fixed peer (the client's relay), or to the client that owns
/// each packet's destination address (the relay's return path).
public enum OutboundRoute: Sendable {
    case fixed(SocketAddress)
    case clients(ClientTable)
}

/// TUN → UDP: reads packets the kernel routed into the TUN device, validates them, encapsulates them
/// and sends the batch with one sendmmsg. TCP super-packets (TUN TSO) are cut into MTU-sized
/// segments that leave in one UDP GSO message per up to 64 datagrams.
public struct OutboundPipeline<E: Encapsulation>: Sendable {
    public let tun: TunDevice
    public let socket: UDPSocket
    public let encapsulation: E
    public let route: OutboundRoute
    public let counters: TunnelCounters
    public let batchSize: Int

    public init(tun: TunDevice, socket: UDPSocket, encapsulation: E, route: OutboundRoute,
                counters: TunnelCounters, batchSize: Int = 16) {
        self.tun = tun
        self.socket = socket
        self.encapsulation = encapsulation
        self.route = route
        self.counters = counters
        self.batchSize = batchSize
    }

    /// The per-thread state that moves batches in this direction.
    public func makeStage() -> WorkStage<OutboundWork<E>> { WorkStage(OutboundWork(self)) }
}

/// One thread's TUN → UDP state: read batch, segment buffer, send queue and sealer, allocated once.
public struct OutboundWork<E: Encapsulation>: PipelineWork {
    private let pipeline: OutboundPipeline<E>
    private let virtioLength: Int
    private let readBatch: PacketBatch
    // Segments of one super-packet at a time (sent before the next is cut), so a single buffer
    // serves the whole batch; only touched (resident) when the kernel sends super-packets.
    private let segments: PacketBatch
    private let queue: SendQueue
    private var destinations: [IPAddress?]
    private var headers: [VirtioNetHeader]
    private var resolved: [ClientTable.Entry?]
    /// One per key: a reply is sealed with the key its client's datagrams opened with.
    private var sealers: [E.Sealer]

    init(_ pipeline: OutboundPipeline<E>) {
        self.pipeline = pipeline
        virtioLength = pipeline.tun.hasVirtioHeaders ? VirtioNetHeader.length : 0
        readBatch = PacketBatch(slotCount: pipeline.batchSize,
                                slotSize: pipeline.encapsulation.headroom + virtioLength + 65536)
        segments = PacketBatch(slotCount: 1, slotSize: 2 * 65536)
        queue = SendQueue(capacity: 4 * pipeline.batchSize)
        destinations = [IPAddress?](repeating: nil, count: pipeline.batchSize)
        headers = [VirtioNetHeader](repeating: .plain, count: pipeline.batchSize)
        resolved = [ClientTable.Entry?](repeating: nil, count: pipeline.batchSize)
        sealers = (0..<pipeline.encapsulation.keyCount).map { pipeline.encapsulation.makeSealer(keyIndex: $0) }
    }

    public var readinessDescriptor: Int32 { pipeline.tun.fd }

    @_specialize(where E == RawEncapsulation)
    @_specialize(where E == AuthenticatedEncapsulation)
    public mutating func pump(_ lifecycle: Lifecycle) -> Int? {
        let tun = pipeline.tun, socket = pipeline.socket, encapsulation = pipeline.encapsulation
        let virtioLength = virtioLength, readBatch = readBatch, segments = segments, queue = queue
        let headroom = encapsulation.headroom
        let read: Int
        do {
            read = try tun.read(into: readBatch, headroom: headroom)
        } catch {
            if !lifecycle.isStopping {
                lifecycle.fail(error.isDeviceGone
                    ? "TUN device \(tun.name) disappeared (deleted?): \(error)"
                    : "TUN device \(tun.name) failed: \(error)")
            }
            return nil
        }
        if read == 0 { return 0 }
        var tally = BatchTally()
        for slot in 0..<read {
            let range = readBatch.range(of: slot)
            tally.tunReadBytes += range.count - virtioLength
            destinations[slot] = nil
            if virtioLength > 0 {
                guard range.count > virtioLength,
                      let header = readBatch.withPacket(slot, { VirtioNetHeader($0) }) else {
                    tally.tunRead += 1
                    tally.drop(.truncated)
                    continue
                }
                headers[slot] = header
                readBatch.setRange((range.lowerBound + virtioLength)..<range.upperBound, of: slot)
            }
            switch readBatch.withPacket(slot, IPPacket.validate) {
            case let .success(info): destinations[slot] = info.destination
            case let .failure(reason): tally.tunRead += 1; tally.drop(reason)
            }
        }

        func flushQueue() {
            let result = socket.send(queue, waker: lifecycle.waker)
            tally.udpSent += result.sent
            tally.udpSentBytes += result.sentBytes
            if result.failed > 0 { tally.drop(.sendFailed, count: result.failed) }
        }
        // Equal-length packets to one peer leave as one UDP GSO message where the socket can.
        let gather = socket.segmentationEnabled
        func enqueue(_ batch: PacketBatch, _ slot: Int, _ range: Range<Int>, _ peer: SocketAddress, segmentSize: Int? = nil) -> Bool {
            if queue.isFull { flushQueue() }
            return queue.append(batch, slot: slot, range: range, to: peer, family: socket.family, segmentSize: segmentSize,
                                gather: gather)
        }

        /// Encapsulates and queues one packet read from TUN (or the segments of a super-packet).
        func send(_ slot: Int, to peer: SocketAddress?, keyIndex: Int) {
            let header = virtioLength > 0 ? headers[slot] : .plain
            guard let peer else { tally.tunRead += 1; tally.drop(.noRoute); return }
            if header.isGSO {
                sendSegments(slot, header: header, to: peer, keyIndex: keyIndex)
                return
            }
            tally.tunRead += 1
            let packet = readBatch.range(of: slot)
            let sealed: Result<Range<Int>, DropReason> = readBatch.withMutableSlot(slot) { bytes in
                if header.needsChecksumCompletion,
                   !TransportChecksum.finishPartial(&bytes, packet: packet, start: Int(header.checksumStart),
                                                    offset: Int(header.checksumOffset)) { return .failure(.badTransportHeader) }
                return sealers[keyIndex].seal(&bytes, packet: packet).map { .success($0) } ?? .failure(.oversize)
            }
            switch sealed {
            case let .success(payload): if !enqueue(readBatch, slot, payload, peer) { tally.drop(.noRoute) }
            case let .failure(reason): tally.drop(reason)
            }
        }

        func sendSegments(_ slot: Int, header: VirtioNetHeader, to peer: SocketAddress, keyIndex: Int) {
            let result = segments.withMutableSlot(0) { output in
                readBatch.withPacket(slot) { packet in
                    GSOSegmenter.segment(packet, header: header, into: &output, headroom: headroom,
                                         overhead: encapsulation.overhead)
                }
            }
            guard case let .success(layout) = result else {
                tally.tunRead += 1
                if case let .failure(reason) = result { tally.drop(reason) }
                return
            }
            tally.tunRead += layout.count
            let stride = layout.stride
            // Encapsulate each segment in place; the datagrams must end up back to back.
            var end = 0
            for index in 0..<layout.count {
                let start = index * stride + headroom
                let packet = start..<(start + layout.length(of: index))
                guard let payload = segments.withMutableSlot(0, { sealers[keyIndex].seal(&$0, packet: packet) }),
                      payload.lowerBound == index * stride else {
                    tally.drop(.oversize, count: layout.count)  // none of the segments leaves
                    return
                }
                end = payload.upperBound
            }
            if socket.segmentationEnabled {
                let perSend = max(1, min(SendQueue.maximumSegments, SendQueue.maximumBytes / stride))
                var first = 0
                while first < layout.count {
                    let last = min(first + perSend, layout.count)
                    let range = (first * stride)..<(last == layout.count ? end : last * stride)
                    if !enqueue(segments, 0, range, peer, segmentSize: stride) { tally.drop(.noRoute, count: last - first) }
                    first = last
                }
            } else {
                for index in 0..<layout.count {
                    let start = index * stride
                    let range = start..<(index == layout.count - 1 ? end : start + stride)
                    if !enqueue(segments, 0, range, peer) { tally.drop(.noRoute) }
                }
            }
            flushQueue()  // frees the segment buffer for the next super-packet
        }

        switch pipeline.route {
        case let .fixed(peer):
            for slot in 0..<read where destinations[slot] != nil { send(slot, to: peer, keyIndex: 0) }
        case let .clients(table):
            // Resolve the whole batch under one lock, then send outside it.
            table.withLookup { lookup in
                for slot in 0..<read {
                    resolved[slot] = destinations[slot].flatMap(lookup)
                }
            }
            for slot in 0..<read where destinations[slot] != nil {
                send(slot, to: resolved[slot]?.endpoint, keyIndex: resolved[slot]?.keyIndex ?? 0)
            }
        }
        flushQueue()
        pipeline.counters.add(tally)
        return read
    }
}
