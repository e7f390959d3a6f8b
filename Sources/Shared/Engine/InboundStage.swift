import KernelIO
import WireFormat

/// What the UDP → TUN direction lets in, beyond well-formedness.
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

    public init(
        allowedSources: [IPPrefix]? = nil, onlyPeer: IPAddress? = nil, forwardIPv6: Bool = true,
        maximumPacketLength: Int = 65535, packets: PacketPolicy? = nil
    ) {
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

    /// Whether a keepalive from `peer`, in `session`, naming inner `source` may refresh its return
    /// path: only when a packet policy exists and passes the source (no policy is no pass, never an
    /// unchecked one), and only for an address replies can be routed to.
    func mayRefresh(_ source: IPAddress, from peer: IPAddress, session: PeerSession) -> Bool {
        guard let packets, PacketPolicy.canReceiveReplies(source) else { return false }
        return packets.sourceRefusal(for: source, from: peer, session: session) == nil
    }
}

/// One thread's UDP → TUN state, allocated once: it receives datagrams, checks who sent them, opens
/// them (the framing), validates the inner packet and hands it to the TUN layer; control
/// messages are counted and answered from the same socket. Used by the relay (toward C) and the
/// client (return traffic). All per-thread state is in this one struct, worked on in place by its
/// driver, and the per-datagram work is a method (docs/design.md, "No exclusivity check per packet").
public struct InboundStage: PipelineStage {
    public let socket: any DatagramSocket
    private let counters: TunnelCounters
    private var policy: InboundPolicy
    /// The relay learns return routes here; the client has none.
    private let clients: ClientTable?
    /// The relay's own addresses and local prefixes as last read; the policy's copy is refreshed
    /// when they change.
    private let ownAddresses: OwnAddresses?
    private var ownAddressesVersion: UInt64 = 0
    private let batch: PacketBatch
    private var writer: TunWriter
    private var opener: any PacketOpener
    /// Worker-local memory of recently learned clients, so the shared table is locked only when a
    /// client appears, moves, is due for a refresh, or is not cached (more active clients than lines).
    private var learned: LearnedClients
    private var credits: [(address: IPAddress, traffic: ClientTable.Traffic)] = []
    private var lastCredit: UInt64 = 0
    /// Where an opener builds a control reply; each is sent at once (replies are rare, and a flood
    /// of requests costs the relay no more syscalls than it cost the sender).
    private let reply: PacketBatch
    /// Seals the ICMP errors the relay sends back for oversize packets; they are held to a budget
    /// per worker, like a router's ICMP rate limit, so a flood of big packets cannot become a flood
    /// of replies.
    private var errorSealer: any PacketSealer
    private var tooBigBudget = TokenBucket(rate: 100, burst: 20)
    /// Every reply to a datagram nobody authenticated also passes the process's reply budget (per
    /// source, and in total across workers); nil when the framing authenticates its senders.
    private var replyGate: ReplyGate?
    private var echoRefreshBudget = TokenBucket(rate: 10, burst: 10)
    private let headroom: Int
    private var tally = BatchTally()
    private let sessionCounters: SessionCounters?
    private var sessionTally: SessionTally
    private var deviceError: SystemError?
    /// Lines of each worker's cache of learned clients (`LearnedClients`).
    public static var defaultCacheLines: Int { 4096 }
    /// How often a worker re-stamps a known client in the shared table (nanoseconds).
    public static var refreshInterval: UInt64 { 1_000_000_000 }

    /// `tunQueues` are every queue of the device: packets are written through the queue of their
    /// flow, not the socket's own (see `FlowSteering`).
    public init(
        socket: any DatagramSocket, tunQueues: [any TunQueue], framing: any Framing,
        policy: InboundPolicy, counters: TunnelCounters, clients: ClientTable? = nil,
        ownAddresses: OwnAddresses? = nil, sessionCounters: SessionCounters? = nil, batchSize: Int = 16,
        cacheLines: Int = InboundStage.defaultCacheLines, replyBudget: ReplyBudget? = nil
    ) {
        self.socket = socket
        self.sessionCounters = sessionCounters
        sessionTally = SessionTally(sessions: sessionCounters?.count ?? 0)
        self.counters = counters
        self.policy = policy
        self.clients = clients
        self.ownAddresses = ownAddresses
        batch = PacketBatch(slotCount: batchSize, slotSize: 65536)
        writer = TunWriter(queues: tunQueues)
        opener = framing.makeOpener()
        learned = LearnedClients(lines: clients == nil ? 1 : cacheLines)
        credits.reserveCapacity(clients == nil ? 0 : cacheLines)
        reply = PacketBatch(slotCount: 1, slotSize: 2048)
        errorSealer = framing.makeSealer()
        headroom = framing.headroom
        replyGate = framing.isAuthenticated ? nil : (replyBudget ?? ReplyBudget()).makeGate()
    }

    public var readinessDescriptor: Int32 { socket.readinessDescriptor }

    public mutating func pump(_ lifecycle: Lifecycle) -> Int? {
        let socket = socket, batch = batch
        let received: Int
        do {
            received = try socket.receive(into: batch)
        } catch {
            lifecycle.fail("UDP receive failed: \(error)")
            return nil
        }
        if received == 0 { return 0 }
        if let ownAddresses, ownAddresses.version != ownAddressesVersion, policy.packets != nil {
            (ownAddressesVersion, policy.packets!.ownAddresses, policy.packets!.localPrefixes) = ownAddresses.snapshot
        }
        tally.reset()
        deviceError = nil
        let now = clients == nil ? 0 : Clock.monotonicNanoseconds()
        for slot in 0..<received where deviceError == nil {
            let range = batch.range(of: slot)
            // A UDP GRO receive holds several datagrams of `segmentSize` bytes (the last shorter).
            let segmentSize = batch.segmentSize(of: slot) > 0 ? batch.segmentSize(of: slot) : max(range.count, 1)
            let datagrams = max(1, (range.count + segmentSize - 1) / segmentSize)
            tally[.received] += datagrams
            tally[.receivedBytes] += range.count
            guard let peer = batch.peer(of: slot) else { tally.drop(.unknownPeer, count: datagrams); continue }
            if let refusal = policy.refusal(for: peer) { tally.drop(refusal, count: datagrams); continue }
            let local = batch.localAddress(of: slot)
            batch.withMutableSlot(slot) { bytes in
                var offset = range.lowerBound
                repeat {
                    let end = min(offset + segmentSize, range.upperBound)
                    deliver(&bytes, offset..<end, from: peer, to: local, now: now)
                    offset = end
                } while offset < range.upperBound && deviceError == nil
            }
        }
        if deviceError == nil {
            do throws(SystemError) { try writer.flush() } catch { deviceError = error }
        }
        countWrites()
        if learned.hasPending, now &- lastCredit >= Self.refreshInterval { creditClients(at: now) }
        counters.add(&tally)
        if let sessionCounters { sessionTally.flush(into: sessionCounters, sent: false) }
        if let kernelDrops = batch.kernelDrops { counters.setSocketDropped(kernelDrops) }
        if let deviceError, !lifecycle.isStopping {
            lifecycle.fail("TUN device \(writer.name) disappeared (deleted?): \(deviceError)")
            return nil
        }
        return received
    }

    /// One datagram, sent from `peer` to `local` (when the socket reports it): open (verify,
    /// decrypt, answer), validate, learn the sender, hand to the writer.
    private mutating func deliver(
        _ slotBytes: inout MutableSpan<UInt8>, _ datagram: Range<Int>, from peer: SocketAddress,
        to local: IPAddress?, now: UInt64
    ) {
        let opened = reply.withMutableSlot(0) { reply in
            opener.open(&slotBytes, datagram: datagram, from: peer, reply: &reply)
        }
        let inner: Range<Int>, session: PeerSession
        switch opened {
        case let .forward(range, forwardSession):
            inner = range
            session = forwardSession
        case let .control(message, reply):
            tally.received(message)
            if let reply { send(reply, to: peer, from: local) }
            // A GTP-U peer's Echo Request (its keepalive) names no inner address: the return paths
            // through its endpoint stay fresh: the work is that endpoint's entries (none for a
            // stranger), a bounded number of times a second.
            if message == .echoRequest, let clients, echoRefreshBudget.take(now: now) {
                clients.refresh(endpoint: peer, now: now)
            }
            return
        case let .drop(reason, reply):
            tally.drop(reason)
            if let reply { send(reply, to: peer, from: local) }
            return
        }
        let packet = slotBytes.span.extracting(inner)
        if packet.count <= IPPacket.ipv6HeaderLength, let source = KeepalivePacket.source(of: packet) {
            // Refreshes the return path as a packet from that source would (same source checks),
            // forwards nothing. A keepalive without a usable source only kept the NAT mapping. One
            // the table refuses is counted as that drop alone.
            if clients != nil, policy.mayRefresh(source, from: peer.ip, session: session),
                learnReturnPath(source, ClientTable.Entry(endpoint: peer, session: session, localAddress: local, refreshedAt: now)) == nil
            {
                return
            }
            tally.received(.keepalive)
            return
        }
        let info: IPPacketInfo
        switch IPPacket.validate(packet) {
        case let .success(valid): info = valid
        case let .failure(reason): tally.drop(reason); return
        }
        if let refusal = policy.packets?.refusal(for: info, from: peer.ip, session: session) {
            tally.drop(refusal)
            return
        }
        if info.version == 6, !policy.forwardIPv6 { tally.drop(.ipv6Disabled); return }
        if info.totalLength > policy.maximumPacketLength {
            tally.drop(.oversize)
            if let packets = policy.packets, PacketTooBig.warrantsReport(packet, info: info), tooBigBudget.take(now: now) {
                // From the address the client sent to where it is of the inner family.
                let source = local.flatMap { $0.isIPv4 == info.source.isIPv4 ? $0 : nil } ?? packets.errorSource(like: info.source)
                reportTooBig(packet, info: info, from: source, to: peer, via: local, session: session)
            }
            return
        }
        if clients != nil {
            guard
                let line = learnReturnPath(
                    info.source, ClientTable.Entry(endpoint: peer, session: session, localAddress: local, refreshedAt: now))
            else { return }
            learned.count(line: line, bytes: packet.count)
        }
        if sessionCounters != nil { sessionTally.add(session, bytes: packet.count) }
        do throws(SystemError) {
            try writer.write(packet, info: info)
        } catch {
            deviceError = error
        }
    }

    /// What this worker counted per client goes to the table before the final report.
    public mutating func finish() { creditClients(at: lastCredit) }

    /// Nothing arrived for a while: a client that stopped sending gets its last packets counted.
    public mutating func wentQuiet() {
        if learned.hasPending { creditClients(at: Clock.monotonicNanoseconds()) }
    }

    /// Gives the shared table `address`'s return path unless this worker did so within
    /// `refreshInterval`. Returns the worker's cache line that now holds it, nil (counted) when the
    /// table refuses a new address, or an address another endpoint is using.
    private mutating func learnReturnPath(_ address: IPAddress, _ entry: ClientTable.Entry) -> Int? {
        let line = learned.line(of: address)
        guard let clients, !learned.isFresh(line: line, address, entry, within: Self.refreshInterval) else { return line }
        switch clients.learn(address, entry, credit: learned.takePending(line: line)) {
        case .refreshed, .changed:
            learned.remember(line: line, address, entry)
            return line
        case .rateLimited:
            tally.drop(.newClientLimit)
            return nil
        case .full:
            tally.drop(.clientTableFull)
            return nil
        case .inUse:
            tally.drop(.addressInUse)
            return nil
        }
    }

    /// Hands the traffic counted per client to the table: at most once per `refreshInterval` while
    /// busy, when the socket went quiet and when stopping, so a client's figures are at most that late.
    private mutating func creditClients(at now: UInt64) {
        guard let clients else { return }
        lastCredit = now
        learned.takeAllPending(into: &credits)
        clients.credit(credits)
        credits.removeAll(keepingCapacity: true)
    }

    /// Tells the sender of an oversize packet the largest the device takes (RFC 1191, RFC 8201), in
    /// the tunnel it came through, so its TCP lowers the segment size instead of stalling.
    private mutating func reportTooBig(
        _ packet: Span<UInt8>, info: IPPacketInfo, from source: IPAddress?, to peer: SocketAddress,
        via local: IPAddress?, session: PeerSession
    ) {
        guard let source else { return }
        let mtu = policy.maximumPacketLength, headroom = headroom
        let sealed = reply.withMutableSlot(0) { slot -> Range<Int>? in
            guard let error = PacketTooBig.write(into: &slot, at: headroom, about: packet, info: info, mtu: mtu, from: source) else {
                return nil
            }
            return errorSealer.seal(&slot, packet: error, session: session)
        }
        guard let sealed, allowReply(to: peer) else { return }
        if sendReply(sealed, to: peer, from: local) { tally[.tooBigSent] += 1 }
    }

    private mutating func send(_ control: ControlReply, to peer: SocketAddress, from local: IPAddress?) {
        guard allowReply(to: peer) else { return }
        if sendReply(0..<control.length, to: peer, from: local) { tally.sent(control.message) }
    }

    /// The reply budget's word on a reply to `peer`; a refusal is counted.
    private mutating func allowReply(to peer: SocketAddress) -> Bool {
        guard replyGate != nil else { return true }
        if replyGate!.allow(to: peer.ip) { return true }
        tally[.repliesLimited] += 1
        return false
    }

    /// Sends `range` of the reply buffer at once; a send the kernel refuses is counted here.
    private mutating func sendReply(_ range: Range<Int>, to peer: SocketAddress, from local: IPAddress?) -> Bool {
        reply.setRange(range, of: 0)
        let sent = reply.withPacket(0) { bytes in (try? socket.send(bytes, to: peer, from: local)) != nil }
        if !sent { tally[.controlSendFailed] += 1 }
        return sent
    }

    private mutating func countWrites() {
        let counts = writer.takeCounts()
        tally[.forwarded] += counts.written
        tally[.forwardedBytes] += counts.writtenBytes
        if counts.failed > 0 { tally.drop(.tunWriteFailed, count: counts.failed) }
    }
}
