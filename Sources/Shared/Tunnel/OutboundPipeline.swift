/// Where packets read from TUN go: to one fixed peer (the client's relay), or to the client that owns
/// each packet's destination address (the relay's return path).
public enum OutboundRoute: Sendable {
    case fixed(SocketAddress)
    case clients(ClientTable)
}

/// TUN → UDP: reads packets the kernel routed into the TUN device, validates them, encapsulates them
/// in place and sends the batch with one sendmmsg.
public struct OutboundPipeline<E: Encapsulation>: Sendable {
    public let tun: TunDevice
    public let socket: UDPSocket
    public let encapsulation: E
    public let route: OutboundRoute
    public let counters: TunnelCounters
    public let batchSize: Int

    public init(tun: TunDevice, socket: UDPSocket, encapsulation: E, route: OutboundRoute,
                counters: TunnelCounters, batchSize: Int = 64) {
        self.tun = tun
        self.socket = socket
        self.encapsulation = encapsulation
        self.route = route
        self.counters = counters
        self.batchSize = batchSize
    }

    public func run(_ lifecycle: Lifecycle) {
        let batch = PacketBatch(slotCount: batchSize, slotSize: 65536 + encapsulation.headroom)
        var destinations = [IPAddress?](repeating: nil, count: batchSize)
        while !lifecycle.isStopping {
            let read: Int
            do {
                read = try tun.read(into: batch, headroom: encapsulation.headroom, waker: lifecycle.waker,
                                    timeoutMilliseconds: 500)
            } catch {
                if !lifecycle.isStopping { lifecycle.fail("TUN device \(tun.name) failed: \(error)") }
                return
            }
            if read == 0 { continue }
            var tally = BatchTally()
            for slot in 0..<read {
                tally.tunRead += 1
                tally.tunReadBytes += batch.range(of: slot).count
                switch batch.withPacket(slot, IPPacket.validate) {
                case let .success(info): destinations[slot] = info.destination
                case let .failure(reason): destinations[slot] = nil; tally.drop(reason)
                }
            }
            func queue(_ slot: Int, _ peer: SocketAddress?) {
                guard let peer else { tally.drop(.noRoute); return }
                let packet = batch.range(of: slot)
                let payload = batch.withMutableSlot(slot) { encapsulation.encapsulate(&$0, packet: packet) }
                guard let payload else { tally.drop(.oversize); return }
                batch.setRange(payload, of: slot)
                if !batch.appendOutgoing(slot: slot, to: peer, family: socket.family) { tally.drop(.noRoute) }
            }
            switch route {
            case let .fixed(peer):
                for slot in 0..<read where destinations[slot] != nil { queue(slot, peer) }
            case let .clients(table):
                table.withLookup { lookup in
                    for slot in 0..<read {
                        guard let destination = destinations[slot] else { continue }
                        queue(slot, lookup(destination))
                    }
                }
            }
            let result = socket.send(batch, waker: lifecycle.waker)
            tally.udpSent += result.sent
            tally.udpSentBytes += result.sentBytes
            if result.failed > 0 { tally.drop(.sendFailed, count: result.failed) }
            counters.add(tally)
        }
    }
}
