import Glibc
import Synchronization
import Testing

@testable import Engine
@testable import KernelIO
@testable import TestSupport
@testable import WireFormat

/// `--keepalive` and the relay's per-client view: what a keepalive is on the wire, what a relay does
/// with one, when a client sends one, and the traffic each client is credited with.
@Suite("Keepalive and per-client traffic")
struct KeepaliveTests {
    static let client = SocketAddress(ip: IPAddress("198.18.1.1")!, port: 40000)
    static let natRebound = SocketAddress(ip: IPAddress("198.18.1.1")!, port: 50000)
    static let inner = IPAddress("198.19.0.1")!

    static func keepalive(from source: IPAddress) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 64)
        var span = buffer.mutableSpan
        let range = try #require(KeepalivePacket.write(into: &span, at: 4, from: source))
        return Array(buffer[range])
    }

    @Test("a keepalive is an IP header alone to the unspecified address, which validation (and so a kernel) refuses to forward")
    func keepaliveOnTheWire() throws {
        for source in [Self.inner, IPAddress("2001:db8:19::1")!, IPAddress.v4(0)] {
            let packet = try Self.keepalive(from: source)
            #expect(packet.count == (source.isIPv4 ? 20 : 40))
            #expect(KeepalivePacket.source(of: packet.span) == source)
            #expect(PacketBuilder.validate(packet) == .failure(.badAddress), "never a forwardable packet")
        }
        var damaged = try Self.keepalive(from: Self.inner)
        damaged[11] ^= 1  // IPv4 header checksum
        #expect(KeepalivePacket.source(of: damaged.span) == nil)
        // Data is never taken for a keepalive.
        let data = PacketBuilder.probePacket(source: 0xC613_0001, destination: 0xC612_0202, destinationPort: 8080, sequence: 1, streamID: 1)
        #expect(KeepalivePacket.source(of: data.span) == nil)
        var other = try Self.keepalive(from: Self.inner)
        other[9] = 17
        PacketBuilder.refreshIPv4Checksum(&other)
        #expect(KeepalivePacket.source(of: other.span) == nil)
    }

    @Test(
        "the relay counts a keepalive, refreshes only a return path the source rules allow, forwards nothing",
        arguments: [false, true])
    func relayRefreshesOnKeepalive(sealed: Bool) throws {
        let key = TunnelKey(base64: "4bSnGPpLdMwaTD4gZ/K7VF3eNTGhwavHxA7aWTVMwK8=")!
        let framing: any Framing = sealed ? AuthenticatedFraming(key: key, encrypt: true) : RawFraming()
        let clients = ClientTable(capacity: 8), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let policy = InboundPolicy(
            allowedSources: [IPPrefix("198.18.1.0/24")!], maximumPacketLength: 1500,
            packets: PacketPolicy(clientRules: [PacketPolicy.ClientRule("198.18.1.1/32=198.19.0.0/24")!]))
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: framing, policy: policy,
            counters: counters, clients: clients)
        let sender = KeepaliveSender(
            framing: framing, socket: socket, relay: SocketAddress(ip: .v4(0xC612_0102), port: 8080),
            counters: TunnelCounters()
        ) { [Self.inner, IPAddress("198.19.9.9")!] }
        #expect(sender.send() == 2)
        let datagrams = socket.sent
        socket.clearSent()
        // Both arrive from a new NAT port: the allowed inner address moves there, the other is refused.
        for datagram in datagrams { socket.deliver(datagram.bytes, from: Self.natRebound) }
        EngineTests.drain(&inbound, lifecycle)
        let figures = counters.snapshot()
        #expect(figures.controlReceived[ControlMessage.keepalive.rawValue] == 2)
        #expect(tun.written.isEmpty && figures[.forwarded] == 0 && figures.dropped == 0)
        #expect(clients.endpoint(for: Self.inner) == Self.natRebound)
        #expect(clients.endpoint(for: IPAddress("198.19.9.9")!) == nil, "outside the client's --allowed-ips")
        #expect(figures[.received] == figures[.forwarded] + figures.control + figures.dropped)
    }

    @Test("a keepalive the client table refuses counts as a drop only, so received = forwarded + control + dropped")
    func refusedKeepaliveCountsOnce() throws {
        let clients = ClientTable(capacity: 1), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let policy = InboundPolicy(
            allowedSources: [IPPrefix("198.18.1.0/24")!], maximumPacketLength: 1500,
            packets: PacketPolicy(clientRules: [PacketPolicy.ClientRule("198.18.1.1/32=198.19.0.0/24")!]))
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: RawFraming(), policy: policy, counters: counters, clients: clients)
        socket.deliver(try Self.keepalive(from: Self.inner), from: Self.client)
        socket.deliver(try Self.keepalive(from: IPAddress("198.19.0.2")!), from: Self.client)  // the table is full
        EngineTests.drain(&inbound, lifecycle)
        let figures = counters.snapshot()
        #expect(figures.drops(.clientTableFull) == 1)
        #expect(figures.controlReceived[ControlMessage.keepalive.rawValue] == 1, "the refused one is a drop, not a keepalive")
        #expect(figures[.received] == figures[.forwarded] + figures.control + figures.dropped)
    }

    @Test("a relay stage without a packet policy learns nothing from a keepalive: no source rules to pass is no pass")
    func keepaliveWithoutPolicyTeachesNothing() throws {
        let clients = ClientTable(capacity: 8), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: RawFraming(), policy: InboundPolicy(),
            counters: counters, clients: clients)
        socket.deliver(try Self.keepalive(from: Self.inner), from: Self.client)
        EngineTests.drain(&inbound, lifecycle)
        #expect(counters.snapshot().controlReceived[ControlMessage.keepalive.rawValue] == 1)
        #expect(clients.count == 0 && tun.written.isEmpty)
    }

    @Test("a GTP-U peer's Echo Request (its keepalive) refreshes the return paths through its endpoint, and only those")
    func echoRequestRefreshesGTPUPaths() throws {
        let upf = GTPUFraming(role: .upf([GTPUSession("0x100=198.19.0.0/24")!]), qfi: nil, localAddress: IPAddress("198.18.1.2")!)
        let clients = ClientTable(capacity: 8), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let other = SocketAddress(ip: IPAddress("198.18.1.3")!, port: 2152)
        clients.learn(Self.inner, at: Self.client, now: 1)
        clients.learn(.v4(0xC613_0002), at: Self.client, now: 1)
        clients.learn(.v4(0xC613_0003), at: other, now: 1)
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: upf, policy: EngineTests.relayPolicy(),
            counters: counters, clients: clients)
        var request = [UInt8](repeating: 0, count: 16)
        var span = request.mutableSpan
        let length = GTPU.writeEchoRequest(&span, sequence: 1)
        socket.deliver(Array(request.prefix(length)), from: Self.client)
        EngineTests.drain(&inbound, lifecycle)
        #expect(counters.snapshot().controlReceived[ControlMessage.echoRequest.rawValue] == 1)
        #expect(socket.sent.count == 1, "answered with an Echo Response")
        let refreshed = Dictionary(uniqueKeysWithValues: clients.clients().map { ($0.address, $0.entry.refreshedAt > 1) })
        #expect(refreshed == [Self.inner: true, .v4(0xC613_0002): true, .v4(0xC613_0003): false])
        #expect(clients.addressesOldestFirst().first == .v4(0xC613_0003), "the others moved to the newest end")
        #expect(tun.written.isEmpty)
    }

    @Test("a client with no usable inner address still sends one keepalive (for the NAT), which teaches the relay nothing")
    func keepaliveWithoutSource() throws {
        let clients = ClientTable(capacity: 8), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters()
        let sender = KeepaliveSender(
            framing: RawFraming(), socket: socket, relay: Self.client,
            counters: counters
        ) { [IPAddress("fe80::1")!, IPAddress("127.0.0.1")!] }
        #expect(sender.send() == 1)
        #expect(counters.snapshot().controlSent[ControlMessage.keepalive.rawValue] == 1)
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: RawFraming(),
            policy: EngineTests.relayPolicy(), counters: TunnelCounters(), clients: clients)
        socket.deliver(socket.sent[0].bytes, from: Self.client)
        EngineTests.drain(&inbound, lifecycle)
        #expect(clients.count == 0 && tun.written.isEmpty)
    }

    @Test("the keepalive task fires only after the interval passes with nothing sent, then every interval while idle")
    func keepaliveTiming() throws {
        let sent = Atomic<UInt64>(0), now = Atomic<UInt64>(1_000), fired = Atomic<Int>(0)
        let task = Keepalive.task(
            interval: 2, dataSent: { sent.load(ordering: .relaxed) },
            now: { now.load(ordering: .relaxed) }
        ) { fired.add(1, ordering: .relaxed) }
        func at(_ seconds: Double, sending: UInt64 = 0) {
            sent.add(sending, ordering: .relaxed)
            now.store(1_000 + UInt64(seconds * 1e9), ordering: .relaxed)
            task.run()
        }
        at(1.9)
        #expect(fired.load(ordering: .relaxed) == 0)
        at(2.0)
        #expect(fired.load(ordering: .relaxed) == 1)
        at(3.0, sending: 5)  // data: the idle clock starts again
        at(4.5)
        #expect(fired.load(ordering: .relaxed) == 1)
        at(5.0)
        #expect(fired.load(ordering: .relaxed) == 2)
        at(6.9)
        at(7.0)
        #expect(fired.load(ordering: .relaxed) == 3)
    }

    @Test("each client is credited with what it sent and what was routed to it, packets and bytes, across workers")
    func perClientTraffic() throws {
        let clients = ClientTable(capacity: 8), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), sockets = [FakeDatagramSocket(), FakeDatagramSocket()]
        var workers = sockets.map {
            InboundStage(
                socket: $0, tunQueues: [tun], framing: RawFraming(), policy: EngineTests.relayPolicy(),
                counters: TunnelCounters(), clients: clients)
        }
        let fromA = EngineTests.packet(from: 0xC613_0001), fromB = EngineTests.packet(from: 0xC613_0002, sequence: 2)
        let peerB = SocketAddress(ip: IPAddress("198.18.1.3")!, port: 40001)
        for _ in 0..<5 { sockets[0].deliver(fromA, from: Self.client) }
        for _ in 0..<3 { sockets[1].deliver(fromA, from: Self.client) }
        sockets[1].deliver(fromB, from: peerB)
        for index in workers.indices { EngineTests.drain(&workers[index], lifecycle) }
        for index in workers.indices { workers[index].finish() }
        var outbound = OutboundStage(
            tunQueue: tun, socket: sockets[0], framing: RawFraming(), route: .clients(clients),
            counters: TunnelCounters())
        let reply = EngineTests.packet(from: 0xC612_0202, to: 0xC613_0002)
        tun.inject(reply)
        tun.inject(reply)
        tun.inject(EngineTests.packet(from: 0xC612_0202, to: 0xC613_0063))  // nobody's
        EngineTests.drain(&outbound, lifecycle)
        let view = Dictionary(uniqueKeysWithValues: clients.clients().map { ($0.address, $0) })
        let a = try #require(view[Self.inner]), b = try #require(view[IPAddress("198.19.0.2")!])
        #expect(a.received == ClientTable.Traffic(packets: 8, bytes: UInt64(8 * fromA.count)))
        #expect(a.sent == ClientTable.Traffic())
        #expect(b.received == ClientTable.Traffic(packets: 1, bytes: UInt64(fromB.count)))
        #expect(b.sent == ClientTable.Traffic(packets: 2, bytes: UInt64(2 * reply.count)))
        #expect(b.entry.endpoint == peerB)
    }

    @Test("traffic counted on a worker's cache line for one address is credited to it when another address takes the line")
    func creditSurvivesCacheCollisions() throws {
        let clients = ClientTable(capacity: 64), lifecycle = try Lifecycle()
        let tun = FakeTunQueue(), socket = FakeDatagramSocket()
        // Direct-mapped cache of one line: every new address evicts the last.
        var inbound = InboundStage(
            socket: socket, tunQueues: [tun], framing: RawFraming(), policy: InboundPolicy(),
            counters: TunnelCounters(), clients: clients, cacheLines: 1)
        var expected: [IPAddress: UInt64] = [:]
        var generator = SeededGenerator(seed: 7)
        for _ in 0..<300 {
            let source = UInt32(0xC613_0001) + UInt32.random(in: 0..<20, using: &generator)
            socket.deliver(EngineTests.packet(from: source), from: Self.client)
            expected[.v4(source), default: 0] += 1
            if Bool.random(using: &generator) { EngineTests.drain(&inbound, lifecycle) }
        }
        EngineTests.drain(&inbound, lifecycle)
        inbound.finish()
        let credited = Dictionary(uniqueKeysWithValues: clients.clients().map { ($0.address, $0.received.packets) })
        #expect(credited == expected)
    }
}
