import KernelIO
import Testing

@testable import Engine
@testable import TestSupport
@testable import WireFormat

@Suite("ICMP fragmentation needed / ICMPv6 packet too big")
struct PacketTooBigTests {
    static let relay = IPAddress("198.18.1.2")!
    static let relay6 = IPAddress("2001:db8:1::2")!

    static func info(_ packet: [UInt8]) throws -> IPPacketInfo { try PacketBuilder.validate(packet).get() }

    static func error(about packet: [UInt8], mtu: Int, from source: IPAddress) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0xee, count: 2048)
        let info = try Self.info(packet)
        var span = buffer.mutableSpan
        let range = try #require(PacketTooBig.write(into: &span, at: 16, about: packet.span, info: info, mtu: mtu, from: source))
        #expect(range.lowerBound == 16)
        return Array(buffer[range])
    }

    @Test func ipv4FragmentationNeededQuotesThePacketAndNamesTheMTU() throws {
        let big = PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: PacketBuilder.tcp(payload: EngineTests.bytes(1432)))
        #expect(big.count == 1472)
        let error = try Self.error(about: big, mtu: 1400, from: Self.relay)
        #expect(error.count == 576, "RFC 1812: as much of the packet as fits in 576 bytes")
        let info = try Self.info(error)  // a valid IPv4 packet: lengths and header checksum
        #expect(info.source == Self.relay && info.destination == IPAddress("198.19.0.1"))
        #expect(info.transportProtocol == IPProtocolNumber.icmp && error[8] == 64)
        #expect(Array(error[20..<24]) == [3, 4, error[22], error[23]], "type 3 (unreachable), code 4 (fragmentation needed)")
        #expect(InternetChecksum.of(error.span.extracting(20..<576)) == 0, "ICMP checksum")
        #expect(Array(error[24..<28]) == [0, 0, 0x05, 0x78], "next-hop MTU 1400 (RFC 1191)")
        #expect(Array(error[28...]) == Array(big[0..<548]), "the offending packet's start")
    }

    @Test func ipv6PacketTooBigIsCheckedWithThePseudoHeader() throws {
        let big = PacketBuilder.ipv6(transport: PacketBuilder.udp(payload: EngineTests.bytes(1424)))
        let error = try Self.error(about: big, mtu: 1400, from: Self.relay6)
        #expect(error.count == 1280, "RFC 4443: as much as fits in the minimum MTU")
        let info = try Self.info(error)
        #expect(info.source == Self.relay6 && info.destination == IPAddress("2001:db8::1"))
        #expect(info.transportProtocol == IPProtocolNumber.icmpv6 && error[7] == 64)
        #expect(error[40] == 2 && error[41] == 0, "type 2, code 0")
        #expect(Array(error[44..<48]) == [0, 0, 0x05, 0x78], "MTU 1400")
        var checksum = InternetChecksum()
        checksum.add(Self.relay6)
        checksum.add(info.destination)
        checksum.add(UInt32(1240))
        checksum.add(UInt32(IPProtocolNumber.icmpv6))
        checksum.add(error.span.extracting(40..<1280))
        #expect(checksum.value == 0, "ICMPv6 checksum over the pseudo-header")
        #expect(Array(error[48...]) == Array(big[0..<1232]))
        // An MTU below IPv6's minimum is never advertised.
        let low = try Self.error(about: big, mtu: 1000, from: Self.relay6)
        #expect(Array(low[44..<48]) == [0, 0, 0x05, 0x00])
    }

    @Test func onlyPacketsThatMayNotBeFragmentedAndAreNotErrorsWarrantAReport() throws {
        func warrants(_ packet: [UInt8]) throws -> Bool { PacketTooBig.warrantsReport(packet.span, info: try Self.info(packet)) }
        let payload = PacketBuilder.udp(payload: EngineTests.bytes(100))
        #expect(try warrants(PacketBuilder.ipv4(transport: payload)))
        #expect(try !warrants(PacketBuilder.ipv4(flagsAndOffset: 0, transport: payload)), "no DF: the relay drops it, counted")
        var echo = [UInt8](repeating: 0, count: 64), unreachable = echo
        echo[0] = 8
        unreachable[0] = 3
        #expect(try warrants(PacketBuilder.ipv4(proto: IPProtocolNumber.icmp, transport: echo)))
        #expect(try !warrants(PacketBuilder.ipv4(proto: IPProtocolNumber.icmp, transport: unreachable)), "never about an ICMP error")
        #expect(try warrants(PacketBuilder.ipv6(transport: payload)))
        var echo6 = echo, error6 = echo
        echo6[0] = 128
        error6[0] = 2
        #expect(try warrants(PacketBuilder.ipv6(nextHeader: IPProtocolNumber.icmpv6, transport: echo6)))
        #expect(try !warrants(PacketBuilder.ipv6(nextHeader: IPProtocolNumber.icmpv6, transport: error6)))
        // The other family, or no room, writes nothing.
        var buffer = [UInt8](repeating: 0, count: 100)
        var span = buffer.mutableSpan
        let packet = PacketBuilder.ipv4(transport: payload)
        #expect(
            PacketTooBig.write(into: &span, at: 0, about: packet.span, info: try Self.info(packet), mtu: 1400, from: Self.relay6) == nil)
        #expect(PacketTooBig.write(into: &span, at: 0, about: packet.span, info: try Self.info(packet), mtu: 1400, from: Self.relay) == nil)
    }

    @Test("the relay answers an oversize DF packet through the tunnel, within its budget, and forwards none")
    func relayReportsOversizePackets() throws {
        let device = FakeTunQueue(), socket = FakeDatagramSocket(), counters = TunnelCounters(), lifecycle = try Lifecycle()
        var stage = InboundStage(
            socket: socket, tunQueues: [device], framing: RawFraming(),
            policy: EngineTests.relayPolicy(maximumPacketLength: 200), counters: counters,
            clients: ClientTable(capacity: 8))
        let big = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: EngineTests.bytes(300)))
        socket.deliver(big, from: EngineTests.clientA)
        socket.deliver(
            PacketBuilder.ipv4(flagsAndOffset: 0, transport: PacketBuilder.udp(payload: EngineTests.bytes(300))),
            from: EngineTests.clientA)
        EngineTests.drain(&stage, lifecycle)
        #expect(socket.sent.count == 1 && socket.sent.first?.peer == EngineTests.clientA)
        let error = try #require(socket.sent.first?.bytes)
        let info = try Self.info(error)
        #expect(info.source == EngineTests.relayOwn && info.destination == IPAddress("198.19.0.1"))
        #expect(error[20] == 3 && error[21] == 4 && Array(error[26..<28]) == [0, 200])
        var snapshot = counters.snapshot()
        #expect(snapshot[.tooBigSent] == 1 && snapshot.drops(.oversize) == 2 && snapshot[.forwarded] == 0 && device.written.isEmpty)
        // A flood of big packets gets a bounded number of answers: the raw framing is unauthenticated,
        // so one source gets the reply budget's few a second (a burst of 5), the rest counted.
        for _ in 0..<200 { socket.deliver(big, from: EngineTests.clientA) }
        EngineTests.drain(&stage, lifecycle)
        snapshot = counters.snapshot()
        #expect(snapshot.drops(.oversize) == 202)
        #expect(snapshot[.tooBigSent] >= ReplyBudget.perSourcePerSecond && snapshot[.tooBigSent] < 40, "\(snapshot[.tooBigSent])")
        #expect(snapshot[.tooBigSent] + snapshot[.repliesLimited] <= 202 && snapshot[.repliesLimited] > 0)
        #expect(snapshot[.received] == snapshot[.forwarded] + snapshot.control + snapshot.dropped)
    }
}
