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

    public init(allowedSources: [IPPrefix]? = nil, onlyPeer: IPAddress? = nil, forwardIPv6: Bool = true,
                maximumPacketLength: Int = 65535) {
        self.allowedSources = allowedSources
        self.onlyPeer = onlyPeer
        self.forwardIPv6 = forwardIPv6
        self.maximumPacketLength = maximumPacketLength
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
    public let tun: TunDevice
    public let encapsulation: E
    public let policy: InboundPolicy
    public let counters: TunnelCounters
    /// The relay learns return routes here; the client passes nil.
    public let clients: ClientTable?
    public let batchSize: Int
    /// How often a worker re-stamps a known client in the shared table (nanoseconds).
    public static var refreshInterval: UInt64 { 1_000_000_000 }

    public init(socket: UDPSocket, tun: TunDevice, encapsulation: E, policy: InboundPolicy,
                counters: TunnelCounters, clients: ClientTable?, batchSize: Int = 64) {
        self.socket = socket
        self.tun = tun
        self.encapsulation = encapsulation
        self.policy = policy
        self.counters = counters
        self.clients = clients
        self.batchSize = batchSize
    }

    /// Runs until the lifecycle stops. Fatal socket errors end the process through `lifecycle.fail`.
    public func run(_ lifecycle: Lifecycle) {
        let batch = PacketBatch(slotCount: batchSize, slotSize: 65536)
        // Worker-local memory of the last learned endpoint per client, so the shared table is locked
        // only when a client appears, moves, or is due for a refresh.
        var learned: [IPAddress: ClientTable.Entry] = [:]
        learned.reserveCapacity(clients?.capacity ?? 0)
        while !lifecycle.isStopping {
            let received: Int
            do {
                received = try socket.receive(into: batch, waker: lifecycle.waker, timeoutMilliseconds: 500)
            } catch {
                lifecycle.fail("UDP receive failed: \(error)")
                return
            }
            if received == 0 { continue }
            var tally = BatchTally()
            let now = clients == nil ? 0 : Clock.monotonicNanoseconds()
            for slot in 0..<received {
                tally.udpReceived += 1
                tally.udpReceivedBytes += batch.range(of: slot).count
                guard let peer = batch.peer(of: slot) else { tally.drop(.unknownPeer); continue }
                if let refusal = policy.refusal(for: peer) { tally.drop(refusal); continue }
                let verdict = batch.withPacket(slot) { datagram -> Result<IPPacketInfo, DropReason> in
                    switch encapsulation.decapsulate(datagram) {
                    case let .failure(reason):
                        return .failure(reason)
                    case let .success(inner):
                        let base = batch.range(of: slot).lowerBound
                        batch.setRange((base + inner.lowerBound)..<(base + inner.upperBound), of: slot)
                        return IPPacket.validate(datagram.extracting(inner))
                    }
                }
                guard case let .success(info) = verdict else {
                    if case let .failure(reason) = verdict { tally.drop(reason) }
                    continue
                }
                if info.version == 6, !policy.forwardIPv6 { tally.drop(.ipv6Disabled); continue }
                if info.totalLength > policy.maximumPacketLength { tally.drop(.oversize); continue }
                if let clients {
                    let known = learned[info.source]
                    if known?.endpoint != peer || now &- (known?.refreshedAt ?? 0) > Self.refreshInterval {
                        if learned.count >= clients.capacity { learned.removeAll(keepingCapacity: true) }
                        learned[info.source] = ClientTable.Entry(endpoint: peer, refreshedAt: now)
                        clients.learn(info.source, at: peer, now: now)
                    }
                }
                do {
                    try tun.write(batch, slot: slot)
                    tally.tunWritten += 1
                    tally.tunWrittenBytes += info.totalLength
                } catch {
                    tally.drop(.tunWriteFailed)
                    if error.isDeviceGone, !lifecycle.isStopping {
                        counters.add(tally)
                        lifecycle.fail("TUN device \(tun.name) is gone: \(error)")
                        return
                    }
                }
            }
            counters.add(tally)
        }
    }
}
