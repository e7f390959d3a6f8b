import Glibc
import Synchronization
import Testing

@testable import Engine
@testable import KernelIO
@testable import TestSupport
@testable import WireFormat

/// Both directions' batch loops driven over in-memory TUN queues and sockets (TestSupport): no root,
/// no namespaces, every counter checked against what went in.
@Suite("Engine: both directions over in-memory TUN queues and sockets")
struct EngineTests {
    static let clientA = SocketAddress(ip: IPAddress("198.18.1.1")!, port: 40000)
    static let clientB = SocketAddress(ip: IPAddress("198.18.1.3")!, port: 40001)
    static let stranger = SocketAddress(ip: IPAddress("198.18.9.9")!, port: 40002)
    static let relayOwn = IPAddress("198.18.2.1")!

    /// A UDP probe from an inner source to an inner destination (198.19.0.1 → 198.18.2.2 by default).
    static func packet(from source: UInt32 = 0xC613_0001, to destination: UInt32 = 0xC612_0202, sequence: UInt64 = 1) -> [UInt8] {
        PacketBuilder.probePacket(source: source, destination: destination, destinationPort: 8080, sequence: sequence, streamID: 9)
    }

    static func relayPolicy(maximumPacketLength: Int = 1500, forwardIPv6: Bool = false) -> InboundPolicy {
        InboundPolicy(
            allowedSources: [IPPrefix("198.18.1.0/24")!], forwardIPv6: forwardIPv6,
            maximumPacketLength: maximumPacketLength,
            packets: PacketPolicy(
                clientRules: [
                    PacketPolicy.ClientRule("198.18.1.1/32=198.19.0.0/24,2001:db8::/32")!,
                    PacketPolicy.ClientRule("198.18.1.3/32=198.19.0.2/32")!
                ],
                ownAddresses: [relayOwn]))
    }

    /// Pumps until the stage has taken everything (a stage takes at most a batch per pump).
    @discardableResult
    static func drain<Stage: PipelineStage>(_ stage: inout Stage, _ lifecycle: Lifecycle) -> Int? {
        var total = 0
        while true {
            guard let moved = stage.pump(lifecycle) else { return nil }
            if moved == 0 { return total }
            total += moved
        }
    }

    static func bytes(_ count: Int, seed: UInt8 = 0) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &+ Int(seed)) } }

    @Test("UDP → TUN: every datagram forwarded or dropped under exactly one reason, counters balanced")
    func inboundDropsByReason() throws {
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        var stage = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(),
            policy: Self.relayPolicy(maximumPacketLength: 200), counters: counters, clients: ClientTable(capacity: 8))
        let good = Self.packet()
        var badChecksum = good
        badChecksum[10] ^= 0xff
        let ipv6 = PacketBuilder.ipv6(transport: PacketBuilder.udp(payload: [1, 2, 3]))
        let big = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: Self.bytes(300)))
        let cases: [([UInt8], SocketAddress, DropReason?)] = [
            (good, Self.clientA, nil),
            (good, Self.stranger, .notAllowed),
            ([0x00, 1, 2, 3], Self.clientA, .badVersion),
            (badChecksum, Self.clientA, .badChecksum),
            (Self.packet(to: 0xC612_0201), Self.clientA, .forbiddenDestination),  // the relay itself
            (Self.packet(from: 0xC613_0001), Self.clientB, .spoofedSource),  // B may only use 198.19.0.2
            (ipv6, Self.clientA, .ipv6Disabled),
            (big, Self.clientA, .oversize),
            ([], Self.clientA, .truncated)
        ]
        for (bytes, peer, _) in cases { socket.deliver(bytes, from: peer) }
        #expect(Self.drain(&stage, lifecycle) == cases.count)
        let snapshot = counters.snapshot()
        #expect(snapshot[.received] == UInt64(cases.count))
        #expect(snapshot[.forwarded] == 1)
        for reason in DropReason.allCases {
            let expected = cases.filter { $0.2 == reason }.count
            #expect(snapshot.drops(reason) == UInt64(expected), "\(reason)")
        }
        #expect(snapshot[.received] == snapshot[.forwarded] + snapshot.control + snapshot.dropped)
        #expect(device.written.map(\.packet) == [good], "the one valid packet, unchanged")
        #expect(lifecycle.fatalError == nil)
    }

    @Test("control messages are answered from the socket they reached, consumed, or refused with a reply; all counted")
    func controlMessagesAnswered() throws {
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        var stage = InboundStage(
            socket: socket, tunQueues: [device], framing: AnsweringFraming(),
            policy: InboundPolicy(), counters: counters)
        socket.deliver([AnsweringFraming.echoRequest, 7, 8, 9], from: Self.clientA)
        socket.deliver([AnsweringFraming.endMarker], from: Self.clientA)
        socket.deliver([AnsweringFraming.refused, 1], from: Self.clientB)
        socket.deliver(Self.packet(), from: Self.clientA)
        Self.drain(&stage, lifecycle)
        #expect(
            socket.sent == [
                FakeDatagramSocket.Datagram(peer: Self.clientA, bytes: [AnsweringFraming.echoResponse, 7, 8, 9]),
                FakeDatagramSocket.Datagram(peer: Self.clientB, bytes: [AnsweringFraming.errorIndication])
            ])
        let snapshot = counters.snapshot()
        #expect(snapshot.controlReceived[ControlMessage.echoRequest.rawValue] == 1)
        #expect(snapshot.controlReceived[ControlMessage.endMarker.rawValue] == 1)
        #expect(snapshot.controlSent[ControlMessage.echoResponse.rawValue] == 1)
        #expect(snapshot.controlSent[ControlMessage.errorIndication.rawValue] == 1)
        #expect(snapshot.drops(.unknownKey) == 1)
        #expect(snapshot[.forwarded] == 1 && device.written.count == 1, "control messages are never forwarded")
        #expect(snapshot[.received] == 4 && snapshot[.received] == snapshot[.forwarded] + snapshot.control + snapshot.dropped)
        // A reply the kernel refuses is counted, not lost track of.
        socket.refuseSends()
        socket.deliver([AnsweringFraming.echoRequest], from: Self.clientA)
        Self.drain(&stage, lifecycle)
        #expect(counters.snapshot()[.controlSendFailed] == 1)
        #expect(counters.snapshot().controlSent[ControlMessage.echoResponse.rawValue] == 1)
    }

    /// The segments of one TCP super-packet, as a peer's GSO send puts them on the wire.
    static func tcpSegments(payload: Int) throws -> [[UInt8]] {
        let (packet, header) = PacketBuilder.tcpSuperPacket(payload: bytes(payload))
        var output = [UInt8](repeating: 0, count: 2 * 65536)
        var span = output.mutableSpan
        let layout = try GSOSegmenter.segment(packet.span, header: header, into: &span).get()
        return (0..<layout.count).map { Array(output[($0 * layout.stride)..<($0 * layout.stride + layout.length(of: $0))]) }
    }

    @Test("a UDP GRO receive of one TCP flow is written to TUN as one super-packet, and the kernel would cut it back exactly")
    func groReceiveCoalescedOnWrite() throws {
        let device = FakeTunQueue(virtioHeaders: true), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let lifecycle = try Lifecycle()
        var stage = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(), policy: InboundPolicy(),
            counters: counters)
        let segments = try Self.tcpSegments(payload: 14_000)
        #expect(segments.count == 10)
        socket.deliverCoalesced(segments, from: Self.clientA)
        Self.drain(&stage, lifecycle)
        #expect(device.written.count == 1)
        let frame = try #require(device.written.first)
        #expect(frame.header.isGSO)
        var output = [UInt8](repeating: 0, count: 2 * 65536)
        var span = output.mutableSpan
        let layout = try GSOSegmenter.segment(frame.packet.span, header: frame.header, into: &span).get()
        let cut = (0..<layout.count).map { Array(output[($0 * layout.stride)..<($0 * layout.stride + layout.length(of: $0))]) }
        #expect(cut == segments, "coalescing and segmenting give back the very segments")
        #expect(counters.snapshot()[.received] == 10 && counters.snapshot()[.forwarded] == 10)
    }

    @Test(
        "TUN → UDP: a super-packet leaves as one UDP GSO message of its segments, raw and sealed",
        arguments: [false, true])
    func superPacketLeavesAsOneMessage(sealed: Bool) throws {
        let key = TunnelKey(base64: "4bSnGPpLdMwaTD4gZ/K7VF3eNTGhwavHxA7aWTVMwK8=")!
        let framing: any Framing = sealed ? AuthenticatedFraming(key: key, encrypt: true) : RawFraming()
        let device = FakeTunQueue(virtioHeaders: true), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let lifecycle = try Lifecycle()
        var stage = OutboundStage(
            tunQueue: device, socket: socket, framing: framing, route: .fixed(Self.clientA),
            counters: counters)
        let (packet, header) = PacketBuilder.tcpSuperPacket(payload: Self.bytes(20_000))
        device.inject(packet, header: header)
        device.inject(Self.packet())  // and a plain packet behind it
        #expect(Self.drain(&stage, lifecycle) == 2)
        #expect(socket.messages == 2, "one GSO message for the 15 segments, one for the plain packet")
        #expect(socket.sent.count == 16)
        var opener = framing.makeOpener()
        var reply = [UInt8](repeating: 0, count: 64)
        var payloadBytes = 0
        for datagram in socket.sent {
            #expect(datagram.peer == Self.clientA)
            var bytes = datagram.bytes
            let count = bytes.count
            var span = bytes.mutableSpan
            var replySpan = reply.mutableSpan
            guard case let .forward(inner, _) = opener.open(&span, datagram: 0..<count, from: Self.clientA, reply: &replySpan) else {
                Issue.record("a datagram did not open")
                continue
            }
            let info = try IPPacket.validate(span.span.extracting(inner)).get()
            if info.transportProtocol == IPProtocolNumber.tcp {
                #expect(
                    TransportChecksum.compute(
                        span.span.extracting(inner), version: 4, proto: info.transportProtocol,
                        start: info.headerLength) == 0, "every segment carries a full, valid checksum")
                payloadBytes += inner.count - 20 - 32
            }
        }
        #expect(payloadBytes == 20_000)
        let snapshot = counters.snapshot()
        #expect(snapshot[.tunRead] == 16 && snapshot[.sent] == 16 && snapshot.dropped == 0)
    }

    @Test("TUN → UDP without UDP GSO: the segments leave one datagram per message")
    func segmentsWithoutSocketSegmentation() throws {
        let device = FakeTunQueue(virtioHeaders: true), socket = FakeDatagramSocket(segmentation: false)
        let counters = TunnelCounters(), lifecycle = try Lifecycle()
        var stage = OutboundStage(
            tunQueue: device, socket: socket, framing: RawFraming(), route: .fixed(Self.clientA),
            counters: counters)
        let (packet, header) = PacketBuilder.tcpSuperPacket(payload: Self.bytes(7000))
        device.inject(packet, header: header)
        Self.drain(&stage, lifecycle)
        #expect(socket.messages == 5 && socket.sent.count == 5)
        #expect(try socket.sent.map { try IPPacket.validate($0.bytes.span).get().totalLength } == [1452, 1452, 1452, 1452, 1452])
    }

    @Test("TUN → UDP: malformed frames and packets are dropped by reason, tun_read = sent + dropped")
    func outboundDropsByReason() throws {
        let device = FakeTunQueue(virtioHeaders: true), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let lifecycle = try Lifecycle()
        var stage = OutboundStage(
            tunQueue: device, socket: socket, framing: RawFraming(), route: .fixed(Self.clientA),
            counters: counters)
        var badChecksum = Self.packet()
        badChecksum[10] ^= 0xff
        var partial = VirtioNetHeader()
        partial.flags = VirtioNetHeader.needsChecksum
        partial.checksumStart = 2000  // beyond the packet
        partial.checksumOffset = 6
        var badGSO = VirtioNetHeader()
        badGSO.gsoTypeRaw = VirtioNetHeader.GSOType.tcpv4.rawValue
        badGSO.gsoSize = 1400
        device.injectFrame([1, 2, 3])  // shorter than its virtio-net header
        device.inject([0x00, 0, 0, 0])  // not IP
        device.inject(badChecksum)
        device.inject(Self.packet(), header: partial)  // a checksum it cannot finish
        device.inject(Self.packet(), header: badGSO)  // a "TCP super-packet" that is UDP
        device.inject(Self.packet(sequence: 2))
        Self.drain(&stage, lifecycle)
        let snapshot = counters.snapshot()
        #expect(snapshot.drops(.truncated) == 1)
        #expect(snapshot.drops(.badVersion) == 1)
        #expect(snapshot.drops(.badChecksum) == 1)
        #expect(snapshot.drops(.badTransportHeader) == 2)
        #expect(snapshot[.tunRead] == 6 && snapshot[.sent] == 1)
        #expect(snapshot[.tunRead] == snapshot[.sent] + snapshot.dropped)
        // Read on its own, a frame shorter than its header is one more drop and no bytes.
        device.injectFrame([1, 2, 3])
        #expect(Self.drain(&stage, lifecycle) == 1)
        let after = counters.snapshot()
        #expect(after.drops(.truncated) == 2 && after[.tunRead] == 7 && after[.tunReadBytes] == snapshot[.tunReadBytes])
    }

    @Test("the relay's replies go to the client that owns the destination, sealed with that client's key")
    func repliesRoutedToTheirClient() throws {
        let alice = TunnelKey(base64: "4bSnGPpLdMwaTD4gZ/K7VF3eNTGhwavHxA7aWTVMwK8=")!
        let bob = TunnelKey(base64: "q0Zs6N3lQpUjV2mYb1n8cT5rWx4eHf7gKd9aLs2uYiA=")!
        let relay = AuthenticatedFraming(keys: [alice, bob], encrypt: true)
        let clients = ClientTable(capacity: 16), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: relay, policy: InboundPolicy(),
            counters: counters, clients: clients)
        var outbound = OutboundStage(tunQueue: tun, socket: socket, framing: relay, route: .clients(clients), counters: counters)
        // Alice (198.19.0.1) and Bob (198.19.0.2) each send one packet, sealed with their own key.
        for (key, peer, source) in [(alice, Self.clientA, UInt32(0xC613_0001)), (bob, Self.clientB, UInt32(0xC613_0002))] {
            var sealer = AuthenticatedFraming(key: key, encrypt: true).makeSealer()
            var buffer = [UInt8](repeating: 0, count: 20) + Self.packet(from: source) + [UInt8](repeating: 0, count: 16)
            let count = buffer.count
            var span = buffer.mutableSpan
            let range = try #require(sealer.seal(&span, packet: 20..<(count - 16), session: PeerSession()))
            socket.deliver(Array(buffer[range]), from: peer)
        }
        Self.drain(&inbound, lifecycle)
        #expect(tun.written.count == 2 && clients.count == 2)
        // C answers both, and someone nobody sent from.
        tun.inject(Self.packet(from: 0xC612_0202, to: 0xC613_0002))
        tun.inject(Self.packet(from: 0xC612_0202, to: 0xC613_0001))
        tun.inject(Self.packet(from: 0xC612_0202, to: 0xC613_0063))
        Self.drain(&outbound, lifecycle)
        #expect(socket.sent.map(\.peer) == [Self.clientB, Self.clientA])
        #expect(counters.snapshot().drops(.noRoute) == 1)
        // Each reply opens with its own client's key only.
        func opens(_ datagram: FakeDatagramSocket.Datagram, with key: TunnelKey) -> Bool {
            var opener = AuthenticatedFraming(key: key, encrypt: true).makeOpener()
            var bytes = datagram.bytes, reply = [UInt8](repeating: 0, count: 16)
            let count = bytes.count
            var span = bytes.mutableSpan, replySpan = reply.mutableSpan
            if case .forward = opener.open(&span, datagram: 0..<count, from: datagram.peer, reply: &replySpan) { return true }
            return false
        }
        #expect(opens(socket.sent[0], with: bob) && !opens(socket.sent[0], with: alice))
        #expect(opens(socket.sent[1], with: alice) && !opens(socket.sent[1], with: bob))
    }

    @Test("a device that fails ends its stage with the fault as the process's error; a refused write is only counted")
    func deviceFaults() throws {
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let readLifecycle = try Lifecycle()
        var outbound = OutboundStage(
            tunQueue: device, socket: socket, framing: RawFraming(), route: .fixed(Self.clientA),
            counters: counters)
        device.failReads(with: SystemError("read from faketun", code: .fileDescriptorInBadState))
        #expect(outbound.pump(readLifecycle) == nil)
        #expect(readLifecycle.fatalError?.contains("disappeared") == true)

        let writeLifecycle = try Lifecycle()
        var inbound = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(), policy: InboundPolicy(),
            counters: counters)
        device.failWrites(with: SystemError("write to faketun", code: .invalidArgument))
        socket.deliver(Self.packet(), from: Self.clientA)
        #expect(inbound.pump(writeLifecycle) == 1, "a refused packet is not a dead device")
        #expect(counters.snapshot().drops(.tunWriteFailed) == 1 && writeLifecycle.fatalError == nil)
        device.failWrites(with: SystemError("write to faketun", code: .ioError))
        device.remove()
        socket.deliver(Self.packet(), from: Self.clientA)
        #expect(inbound.pump(writeLifecycle) == nil)
        #expect(writeLifecycle.fatalError?.contains("disappeared") == true)

        let receiveLifecycle = try Lifecycle()
        socket.failReceives(with: SystemError("recvmmsg", code: .notSocket))
        #expect(inbound.pump(receiveLifecycle) == nil)
        #expect(receiveLifecycle.fatalError?.contains("UDP receive failed") == true)
    }

    @Test("a device that is down (EIO, still there) drops and counts, and the stages run on; deleted, they end")
    func deviceDownIsNotGone() throws {
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        var inbound = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(), policy: InboundPolicy(),
            counters: counters)
        var outbound = OutboundStage(
            tunQueue: device, socket: socket, framing: RawFraming(), route: .fixed(Self.clientA),
            counters: counters)
        device.failWrites(with: SystemError("write to faketun", code: .ioError))
        device.failReads(with: SystemError("read from faketun", code: .ioError))
        for _ in 0..<3 { socket.deliver(Self.packet(), from: Self.clientA) }
        #expect(inbound.pump(lifecycle) == 3, "a device that is down is not gone")
        #expect(outbound.pump(lifecycle) == 0)
        #expect(lifecycle.fatalError == nil)
        #expect(counters.snapshot().drops(.tunWriteFailed) == 3)
        device.heal()
        socket.deliver(Self.packet(), from: Self.clientA)
        #expect(inbound.pump(lifecycle) == 1)
        #expect(device.written.count == 1, "up again: packets flow")
        // Deleted: the kernel detaches the descriptor (EBADFD), and the name is gone.
        device.failWrites(with: SystemError("write to faketun", code: .fileDescriptorInBadState))
        socket.deliver(Self.packet(), from: Self.clientA)
        #expect(inbound.pump(lifecycle) == nil)
        #expect(lifecycle.fatalError?.contains("disappeared") == true)
        // An EIO once the name is gone ends it too (a fresh stage: the last check that found the
        // device is trusted for a few milliseconds).
        let readLifecycle = try Lifecycle()
        var fresh = OutboundStage(
            tunQueue: device, socket: socket, framing: RawFraming(), route: .fixed(Self.clientA),
            counters: counters)
        device.failReads(with: SystemError("read from faketun", code: .ioError))
        device.remove()
        #expect(fresh.pump(readLifecycle) == nil)
        #expect(readLifecycle.fatalError?.contains("disappeared") == true)
    }

    @Test("random damage: whatever arrives, the counters balance and exactly the valid packets are forwarded")
    func randomDamageBalances() throws {
        let seed = TestSeed.value
        var random = SeededGenerator(seed: seed)
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        let policy = InboundPolicy(allowedSources: [IPPrefix("198.18.1.0/24")!], forwardIPv6: true)
        var stage = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(), policy: policy,
            counters: counters)
        var expectedForwarded = 0
        let total = 2000
        for index in 0..<total {
            var bytes = Self.packet(sequence: UInt64(index))
            for _ in 0..<Int.random(in: 0...3, using: &random) {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            if Bool.random(using: &random) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random))) }
            let peer = Int.random(in: 0..<10, using: &random) == 0 ? Self.stranger : Self.clientA
            if peer == Self.clientA, case .success = IPPacket.validate(bytes.span) { expectedForwarded += 1 }
            socket.deliver(bytes, from: peer)
        }
        Self.drain(&stage, lifecycle)
        let snapshot = counters.snapshot()
        #expect(snapshot[.received] == UInt64(total), "seed \(seed)")
        #expect(snapshot[.received] == snapshot[.forwarded] + snapshot.control + snapshot.dropped, "seed \(seed)")
        #expect(snapshot[.forwarded] == UInt64(expectedForwarded), "seed \(seed)")
        #expect(device.written.count == expectedForwarded, "seed \(seed)")
        #expect(expectedForwarded > 0 && expectedForwarded < total, "seed \(seed): the mix must hold both kinds")
    }

    @Test("own addresses: unreadable at start is an error; a refresh that fails keeps the list; an added one is protected")
    func ownAddressesRefresh() throws {
        #expect(throws: SystemError.self) {
            _ = try OwnAddresses { () throws(SystemError) -> [IPAddress] in
                throw SystemError("getifaddrs", code: .addressFamilyNotSupported)
            }
        }
        let list = Locked<Result<[IPAddress], SystemError>>(.success([Self.relayOwn]))
        let own = try OwnAddresses { () throws(SystemError) -> [IPAddress] in try list.withLock { $0 }.get() }
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        var stage = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(),
            policy: InboundPolicy(packets: PacketPolicy(ownAddresses: own.current.addresses)),
            counters: counters, ownAddresses: own)
        let added = IPAddress("198.18.2.9")!
        socket.deliver(Self.packet(to: 0xC612_0209), from: Self.clientA)
        Self.drain(&stage, lifecycle)
        #expect(device.written.count == 1, "not an own address yet")
        list.withLock { $0 = .success([Self.relayOwn, added]) }
        #expect(own.refresh() == .changed(added: [added], removed: []))
        socket.deliver(Self.packet(to: 0xC612_0209), from: Self.clientA)
        Self.drain(&stage, lifecycle)
        #expect(device.written.count == 1 && counters.snapshot().drops(.forbiddenDestination) == 1)
        list.withLock { $0 = .failure(SystemError("getifaddrs", code: .addressFamilyNotSupported)) }
        guard case .failed = own.refresh() else { Issue.record("a failed read must say so"); return }
        #expect(own.failedRefreshes == 1)
        #expect(Set(own.current.addresses) == [Self.relayOwn, added], "the last good list stays in force")
        #expect(own.refresh() != .unchanged || own.failedRefreshes == 2)
    }

    @Test("locally delivered prefixes: read with the addresses, refreshed with them, and no destination")
    func localPrefixesRefresh() throws {
        let routes = Mutex<Result<[IPPrefix], SystemError>>(.success([IPPrefix("198.18.2.255/32")!]))
        let own = try OwnAddresses(
            reader: { () throws(SystemError) -> [IPAddress] in [Self.relayOwn] },
            localRoutes: { () throws(SystemError) -> [IPPrefix] in try routes.withLock { $0 }.get() })
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        var stage = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(),
            policy: InboundPolicy(packets: PacketPolicy()), counters: counters, ownAddresses: own)
        socket.deliver(Self.packet(to: 0xC612_02FF), from: Self.clientA)  // 198.18.2.255
        socket.deliver(Self.packet(to: 0xC612_0905), from: Self.clientA)  // 198.18.9.5
        Self.drain(&stage, lifecycle)
        #expect(device.written.count == 1 && counters.snapshot().drops(.forbiddenDestination) == 1)
        routes.withLock { $0 = .success([IPPrefix("198.18.2.255/32")!, IPPrefix("198.18.9.0/24")!]) }
        #expect(own.refresh() == .changed(added: [], removed: [], addedRoutes: [IPPrefix("198.18.9.0/24")!]))
        socket.deliver(Self.packet(to: 0xC612_0905), from: Self.clientA)
        Self.drain(&stage, lifecycle)
        #expect(device.written.count == 1 && counters.snapshot().drops(.forbiddenDestination) == 2, "a whole local prefix")
        routes.withLock { $0 = .failure(SystemError("RTM_GETROUTE", code: .addressFamilyNotSupported)) }
        guard case .failed = own.refresh() else { Issue.record("a failed read must say so"); return }
        #expect(own.snapshot.localPrefixes.count == 2, "the last good list stays in force")
        #expect(throws: SystemError.self) {
            _ = try OwnAddresses(
                reader: { () throws(SystemError) -> [IPAddress] in [] },
                localRoutes: { () throws(SystemError) -> [IPPrefix] in throw SystemError("RTM_GETROUTE", code: .addressFamilyNotSupported) }
            )
        }
    }

    @Test("housekeeping runs its tasks on their interval and stops with the process")
    func housekeepingRunsAndStops() throws {
        let lifecycle = try Lifecycle()
        let runs = Atomic<Int>(0)
        let thread = try #require(Housekeeping([.init("count", every: 0.05) { runs.add(1, ordering: .relaxed) }]).start(lifecycle))
        Clock.sleep(nanoseconds: 400_000_000)
        lifecycle.stop()
        thread.join()
        let count = runs.load(ordering: .relaxed)
        #expect((2...9).contains(count), "\(count) runs in 0.4 s at one per 0.05 s")
        #expect(Housekeeping([]).start(lifecycle) == nil)
    }
}

extension EngineTests {
    @Test("with a change probe, own addresses are read again only when it reports a change")
    func ownAddressesReadOnlyOnChange() throws {
        let reads = Atomic<Int>(0), changed = Atomic<Bool>(false)
        let own = try OwnAddresses(
            reader: { () throws(SystemError) -> [IPAddress] in
                reads.add(1, ordering: .relaxed)
                return [Self.relayOwn]
            }, changes: { changed.exchange(false, ordering: .relaxed) })
        #expect(reads.load(ordering: .relaxed) == 1)
        for _ in 0..<5 { #expect(own.refreshIfChanged() == .unchanged) }
        #expect(reads.load(ordering: .relaxed) == 1, "no change announced, nothing read")
        changed.store(true, ordering: .relaxed)
        own.refreshIfChanged()
        #expect(reads.load(ordering: .relaxed) == 2)
    }
}

extension EngineTests {
    @Test("per-session counts: each direction tallies by session, and a forgotten session's return paths go")
    func sessionCountsAndForgetting() throws {
        let counters = SessionCounters(sessions: 2)
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), lifecycle = try Lifecycle(), clients = ClientTable(capacity: 8)
        let key0 = TunnelKey(base64: "4bSnGPpLdMwaTD4gZ/K7VF3eNTGhwavHxA7aWTVMwK8=")!
        let key1 = TunnelKey(base64: "q0Zs6N3lQpUjV2mYb1n8cT5rWx4eHf7gKd9aLs2uYiA=")!
        let relay = AuthenticatedFraming(keys: [key0, key1], encrypt: false)
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: relay, policy: InboundPolicy(),
            counters: TunnelCounters(), clients: clients, sessionCounters: counters)
        var outbound = OutboundStage(
            tunQueue: tun, socket: socket, framing: relay, route: .clients(clients),
            counters: TunnelCounters(), sessionCounters: counters)
        var sealer = AuthenticatedFraming(key: key1, encrypt: false).makeSealer()
        for sequence in 0..<3 {
            var buffer = [UInt8](repeating: 0, count: 20) + Self.packet(sequence: UInt64(sequence)) + [UInt8](repeating: 0, count: 16)
            let count = buffer.count
            var span = buffer.mutableSpan
            let range = try #require(sealer.seal(&span, packet: 20..<(count - 16), session: PeerSession()))
            socket.deliver(Array(buffer[range]), from: Self.clientA)
        }
        Self.drain(&inbound, lifecycle)
        tun.inject(Self.packet(from: 0xC612_0202, to: 0xC613_0001))
        Self.drain(&outbound, lifecycle)
        let figures = counters.figures
        #expect(figures[0].forwarded == 0 && figures[1].forwarded == 3 && figures[1].forwardedBytes == UInt64(3 * Self.packet().count))
        #expect(figures[1].sent == 1 && figures[0].sent == 0, "\(figures) sent \(socket.sent.count)")
        #expect(clients.forget(session: PeerSession(index: 0)) == 0)
        #expect(clients.forget(session: PeerSession(index: 1)) == 1 && clients.count == 0)
    }

    @Test("a wildcard relay answers each client from the address it sent to, replies and control alike")
    func repliesLeaveFromTheAddressTheClientUsed() throws {
        let clients = ClientTable(capacity: 16), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let first = IPAddress("198.18.1.2")!, second = IPAddress("198.18.1.4")!
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: AnsweringFraming(), policy: InboundPolicy(),
            counters: counters, clients: clients)
        var outbound = OutboundStage(
            tunQueue: tun, socket: socket, framing: RawFraming(), route: .clients(clients),
            counters: counters)
        socket.deliver(Self.packet(from: 0xC613_0001), from: Self.clientA, to: first)
        socket.deliver(Self.packet(from: 0xC613_0002), from: Self.clientB, to: second)
        socket.deliver([AnsweringFraming.echoRequest, 1], from: Self.clientB, to: second)
        Self.drain(&inbound, lifecycle)
        #expect(clients.withLookup { $0(.v4(0xC613_0002)) }?.localAddress == second)
        #expect(
            socket.sent == [
                FakeDatagramSocket.Datagram(
                    peer: Self.clientB, bytes: [AnsweringFraming.echoResponse, 1],
                    source: second)
            ])
        // Equal-length replies to both clients are not gathered into one message: their sources differ.
        tun.inject(Self.packet(from: 0xC612_0202, to: 0xC613_0002))
        tun.inject(Self.packet(from: 0xC612_0202, to: 0xC613_0001))
        tun.inject(Self.packet(from: 0xC612_0202, to: 0xC613_0001, sequence: 2))
        Self.drain(&outbound, lifecycle)
        #expect(socket.sent.dropFirst().map(\.peer) == [Self.clientB, Self.clientA, Self.clientA])
        #expect(socket.sent.dropFirst().map(\.source) == [second, first, first])
        #expect(socket.messages == 2, "B's reply alone, A's two gathered")
        // The client moving to the other address moves its replies too.
        socket.deliver(Self.packet(from: 0xC613_0001, sequence: 3), from: Self.clientA, to: second)
        Self.drain(&inbound, lifecycle)
        #expect(clients.withLookup { $0(.v4(0xC613_0001)) }?.localAddress == second)
    }

}
