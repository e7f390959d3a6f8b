import KernelIO
import WireFormat

/// Where packets read from TUN go: to one fixed peer (the client's relay), or to the client that owns
/// each packet's destination address (the relay's return path).
public enum OutboundRoute: Sendable {
    case fixed(SocketAddress, session: PeerSession = PeerSession())
    case clients(ClientTable)
}

/// One thread's TUN → UDP state, allocated once: it takes a batch of plain IP packets from the TUN
/// layer (which has already cut super-packets into runs of segments), validates them, encapsulates
/// them in place and sends the batch with one sendmmsg. A run of segments leaves as one UDP GSO
/// message per up to 64 datagrams, copied nowhere on the way; equal-length packets to one peer are
/// gathered into one message the same way.
public struct OutboundStage: PipelineStage {
    public let socket: any DatagramSocket
    private let route: OutboundRoute
    private let counters: TunnelCounters
    private var reader: TunReader
    private let queue: SendQueue
    private let headroom: Int
    private var destinations: [IPAddress?]
    private var resolved: [ClientTable.Entry?]
    private var sealer: any PacketSealer
    private var tally = BatchTally()
    private let sessionCounters: SessionCounters?
    private var sessionTally: SessionTally
    private var presence = TunPresence()

    public init(
        tunQueue: any TunQueue, socket: any DatagramSocket, framing: any Framing, route: OutboundRoute,
        counters: TunnelCounters, sessionCounters: SessionCounters? = nil, batchSize: Int = 16
    ) {
        self.socket = socket
        self.sessionCounters = sessionCounters
        sessionTally = SessionTally(sessions: sessionCounters?.count ?? 0)
        self.route = route
        self.counters = counters
        headroom = framing.headroom
        reader = TunReader(
            queue: tunQueue, batchSize: batchSize, headroom: framing.headroom,
            overhead: framing.overhead)
        queue = SendQueue(capacity: 4 * batchSize)
        destinations = [IPAddress?](repeating: nil, count: batchSize)
        resolved = [ClientTable.Entry?](repeating: nil, count: batchSize)
        sealer = framing.makeSealer()
    }

    public var readinessDescriptor: Int32 { reader.queue.readinessDescriptor }

    public mutating func pump(_ lifecycle: Lifecycle) -> Int? {
        let read: Int
        do {
            read = try reader.read()
        } catch {
            // A device that is down is not gone: nothing to read until it is up again.
            if error.isDeviceGone, !presence.isGone(reader.queue, after: error) { return 0 }
            if !lifecycle.isStopping {
                lifecycle.fail(
                    error.isDeviceGone
                        ? "TUN device \(reader.queue.name) disappeared (deleted?): \(error)"
                        : "TUN device \(reader.queue.name) failed: \(error)")
            }
            return nil
        }
        if read == 0 { return 0 }
        tally.reset()
        tally[.tunReadBytes] += reader.bytesRead
        for index in 0..<read {
            destinations[index] = nil
            switch reader.entry(index) {
            case let .dropped(reason, count):
                tally[.tunRead] += count
                tally.drop(reason, count: count)
            case let .packets(run):
                // Segments share the headers of their first packet (the segmenter built them from it).
                switch reader.buffer(of: run).withMutableSlot(run.slot, { IPPacket.validate($0.span.extracting(run.range(of: 0))) }) {
                case let .success(info): destinations[index] = info.destination
                case let .failure(reason): tally[.tunRead] += run.count; tally.drop(reason, count: run.count)
                }
            }
        }
        switch route {
        case let .fixed(peer, session):
            for index in 0..<read where destinations[index] != nil { send(index, to: peer, from: nil, session: session, lifecycle) }
        case let .clients(table):
            // Resolve the whole batch under one lock, then send outside it; each client's share is
            // counted in the same lock.
            table.withRoutes { route in
                for index in 0..<read {
                    guard let destination = destinations[index], case let .packets(run) = reader.entry(index) else {
                        resolved[index] = nil
                        continue
                    }
                    resolved[index] = route(destination, run.traffic)
                }
            }
            for index in 0..<read where destinations[index] != nil {
                if let entry = resolved[index] {
                    send(index, to: entry.endpoint, from: entry.localAddress, session: entry.session, lifecycle)
                } else if case let .packets(run) = reader.entry(index) {
                    tally[.tunRead] += run.count
                    tally.drop(.noRoute, count: run.count)
                }
            }
        }
        flushQueue(lifecycle)
        counters.add(&tally)
        if let sessionCounters { sessionTally.flush(into: sessionCounters, sent: true) }
        return read
    }

    /// Encapsulates and queues one entry's packets: a single packet (gathered with its equals), or a
    /// run of segments that leaves as UDP GSO messages. `source` is the address the peer sent to
    /// (a wildcard listener's replies leave from it), nil for the kernel's choice.
    private mutating func send(
        _ index: Int, to peer: SocketAddress, from source: IPAddress?, session: PeerSession,
        _ lifecycle: Lifecycle
    ) {
        guard case let .packets(run) = reader.entry(index) else { return }
        tally[.tunRead] += run.count
        let buffer = reader.buffer(of: run), slot = run.slot, origin = run.start - headroom
        // Encapsulate each packet in place. A run whose datagrams end up back to back at its stride
        // leaves as UDP GSO messages of that stride; when the framing's header for these packets
        // is shorter than its headroom (GTP-U without a QoS flow to name), each datagram is queued on
        // its own and equal lengths are still gathered into one message.
        var end = 0, individually = false
        for packet in 0..<run.count {
            let range = run.range(of: packet)
            guard let payload = buffer.withMutableSlot(slot, { sealer.seal(&$0, packet: range, session: session) }) else {
                tally.drop(.oversize, count: individually ? run.count - packet : run.count)  // what has not left
                return
            }
            if packet == 0 { individually = run.count == 1 || payload.lowerBound != origin }
            if individually {
                if sessionCounters != nil { sessionTally.add(session, bytes: payload.count) }
                enqueue(buffer, slot, payload, peer, source, segmentSize: nil, lifecycle)
                continue
            }
            guard payload.lowerBound == origin + packet * run.stride else {
                tally.drop(.oversize, count: run.count)  // none of the run leaves
                return
            }
            end = payload.upperBound
        }
        if individually { return }
        if sessionCounters != nil { sessionTally.add(session, bytes: end - origin, packets: run.count) }
        let stride = run.stride
        if socket.udpGSOEnabled {
            let perSend = max(1, min(SendQueue.maximumSegments, SendQueue.maximumBytes / stride))
            var first = 0
            while first < run.count {
                let last = min(first + perSend, run.count)
                let range = (origin + first * stride)..<(last == run.count ? end : origin + last * stride)
                enqueue(buffer, slot, range, peer, source, segmentSize: stride, lifecycle, datagrams: last - first)
                first = last
            }
        } else {
            for packet in 0..<run.count {
                let start = origin + packet * stride
                enqueue(buffer, slot, start..<(packet == run.count - 1 ? end : start + stride), peer, source, segmentSize: nil, lifecycle)
            }
        }
    }

    private mutating func enqueue(
        _ buffer: PacketBatch, _ slot: Int, _ range: Range<Int>, _ peer: SocketAddress,
        _ source: IPAddress?, segmentSize: Int?, _ lifecycle: Lifecycle, datagrams: Int = 1
    ) {
        if queue.isFull { flushQueue(lifecycle) }
        // Equal-length packets to one peer leave as one UDP GSO message where the socket can.
        if !queue.append(
            buffer, slot: slot, range: range, to: peer, from: source, family: socket.family, segmentSize: segmentSize,
            gather: socket.udpGSOEnabled)
        {
            tally.drop(.noRoute, count: datagrams)  // a peer the socket's family cannot reach
        }
    }

    private mutating func flushQueue(_ lifecycle: Lifecycle) {
        guard queue.count > 0 else { return }
        let result = socket.send(queue, waker: lifecycle.waker)
        tally[.sent] += result.sent
        tally[.sentBytes] += result.sentBytes
        if result.failed > 0 { tally.drop(.sendFailed, count: result.failed) }
    }
}

extension PacketRun {
    /// The run's packets and bytes, as a client's traffic.
    var traffic: ClientTable.Traffic {
        ClientTable.Traffic(packets: UInt64(count), bytes: UInt64((count - 1) * length + lastLength))
    }
}
