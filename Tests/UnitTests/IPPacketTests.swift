import Testing

@testable import Engine
@testable import TestSupport
@testable import WireFormat

@Suite("Inner packet validation")
struct IPPacketTests {
    let probe = [UInt8](repeating: 0xab, count: 100)

    func failure(_ packet: [UInt8]) -> DropReason? {
        if case let .failure(reason) = PacketBuilder.validate(packet) { return reason }
        return nil
    }

    @Test func acceptsWellFormedIPv4UDP() throws {
        let packet = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: probe))
        let info = try PacketBuilder.validate(packet).get()
        #expect(info.version == 4)
        #expect(info.source == IPAddress("198.19.0.1"))
        #expect(info.destination == IPAddress("198.18.2.2"))
        #expect(info.transportProtocol == IPProtocolNumber.udp)
        #expect(info.totalLength == packet.count)
        #expect(!info.isFragment)
    }

    @Test func acceptsIPv4WithOptionsAndTCP() throws {
        let packet = PacketBuilder.ipv4(
            proto: IPProtocolNumber.tcp, options: [1, 1, 1, 0], transport: PacketBuilder.tcp(payload: [1, 2, 3]))
        let info = try PacketBuilder.validate(packet).get()
        #expect(info.headerLength == 24)
        #expect(info.transportProtocol == IPProtocolNumber.tcp)
    }

    /// Loose and strict source routes (RFC 791): one hop, 198.18.2.2, then the end of the options.
    static let looseSourceRoute: [UInt8] = [131, 7, 4, 198, 18, 2, 2, 0]
    static let strictSourceRoute: [UInt8] = [137, 7, 4, 198, 18, 2, 2, 0]

    @Test("IPv4 source routes (LSRR, SSRR) are dropped, wherever they sit among the options; other options pass")
    func rejectsIPv4SourceRoutes() throws {
        let transport = PacketBuilder.udp(payload: probe)
        #expect(failure(PacketBuilder.ipv4(options: Self.looseSourceRoute, transport: transport)) == .sourceRouted)
        #expect(failure(PacketBuilder.ipv4(options: Self.strictSourceRoute, transport: transport)) == .sourceRouted)
        #expect(failure(PacketBuilder.ipv4(options: [1, 1, 1, 1] + Self.looseSourceRoute, transport: transport)) == .sourceRouted)
        #expect(
            failure(PacketBuilder.ipv4(options: [7, 7, 4, 0, 0, 0, 0, 1] + Self.strictSourceRoute, transport: transport))
                == .sourceRouted)
        // A fragment carries the (copied) option too.
        #expect(
            failure(PacketBuilder.ipv4(flagsAndOffset: 0x0010, options: Self.looseSourceRoute, transport: Array(probe.prefix(64))))
                == .sourceRouted)
        // Record Route, timestamps and NOPs are harmless: forwarded.
        let recordRoute: [UInt8] = [7, 7, 4, 0, 0, 0, 0, 0]
        let timestamp: [UInt8] = [68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        for options in [recordRoute, timestamp, [1, 1, 1, 1], [1, 0, 131, 7]] {  // after the end of options, no route
            let info = try PacketBuilder.validate(PacketBuilder.ipv4(options: options, transport: transport)).get()
            #expect(info.headerLength == 20 + options.count, "options \(options)")
        }
        // An option that runs past the header cannot be read: refused, not guessed at.
        #expect(failure(PacketBuilder.ipv4(options: [1, 7, 9, 0], transport: transport)) == .badHeaderLength)
        #expect(failure(PacketBuilder.ipv4(options: [1, 1, 7, 1], transport: transport)) == .badHeaderLength)
        #expect(failure(PacketBuilder.ipv4(options: [1, 1, 1, 7], transport: transport)) == .badHeaderLength)
    }

    /// An IPv6 extension header of `length` bytes (a multiple of 8) that `next` follows, its body PadN.
    static func extensionHeader(next: UInt8, length: Int = 8) -> [UInt8] {
        [next, UInt8(length / 8 - 1), 1, UInt8(length - 4)] + [UInt8](repeating: 0, count: length - 4)
    }

    /// A routing header of type 4 (segment routing) with one segment left, 2001:db8::2 : 24 bytes.
    static func routingHeader(next: UInt8) -> [UInt8] {
        [next, 2, 4, 1, 0, 0, 0, 0] + [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [2]
    }

    @Test("an IPv6 routing header is dropped, after any other extension headers; hop-by-hop, destination options and fragments pass")
    func rejectsIPv6RoutingHeaders() throws {
        let udp = PacketBuilder.udp(payload: probe)
        let routing: UInt8 = 43, hopByHop: UInt8 = 0, destination: UInt8 = 60, fragment: UInt8 = IPProtocolNumber.ipv6Fragment
        let udpNumber = IPProtocolNumber.udp
        #expect(failure(PacketBuilder.ipv6(nextHeader: routing, transport: Self.routingHeader(next: udpNumber) + udp)) == .sourceRouted)
        #expect(
            failure(
                PacketBuilder.ipv6(
                    nextHeader: hopByHop,
                    transport: Self.extensionHeader(next: routing) + Self.routingHeader(next: udpNumber) + udp))
                == .sourceRouted)
        #expect(
            failure(
                PacketBuilder.ipv6(
                    nextHeader: destination,
                    transport: Self.extensionHeader(next: routing, length: 16) + Self.routingHeader(next: udpNumber) + udp))
                == .sourceRouted)
        // A first fragment shows what follows its fragment header.
        let firstFragment: [UInt8] = [routing, 0, 0, 1, 0, 0, 0x12, 0x34]
        #expect(
            failure(PacketBuilder.ipv6(nextHeader: fragment, transport: firstFragment + Self.routingHeader(next: udpNumber) + udp))
                == .sourceRouted)
        // The harmless ones still pass.
        let passing: [(UInt8, [UInt8])] = [
            (hopByHop, Self.extensionHeader(next: udpNumber) + udp),
            (destination, Self.extensionHeader(next: udpNumber) + udp),
            (hopByHop, Self.extensionHeader(next: destination) + Self.extensionHeader(next: udpNumber, length: 24) + udp),
            (fragment, [udpNumber, 0, 0, 0, 0, 0, 0x12, 0x34] + udp),
            (fragment, [routing, 0, 0x01, 0x00, 0, 0, 0x12, 0x34] + Array(probe.prefix(32)))  // a later fragment: its bytes are data
        ]
        for (next, transport) in passing {
            let info = try PacketBuilder.validate(PacketBuilder.ipv6(nextHeader: next, transport: transport)).get()
            #expect(info.transportProtocol == next)
        }
        // An extension header that runs past the packet cannot be walked: refused.
        #expect(failure(PacketBuilder.ipv6(nextHeader: hopByHop, transport: [udpNumber, 3, 1, 4, 0, 0, 0, 0])) == .badHeaderLength)
    }

    @Test func rejectsEmptyAndShortInputs() {
        #expect(failure([]) == .truncated)
        #expect(failure([0x45]) == .truncated)
        #expect(failure(Array(PacketBuilder.ipv4(transport: []).prefix(19))) == .truncated)
        #expect(failure([0x60] + [UInt8](repeating: 0, count: 38)) == .truncated)
    }

    @Test(arguments: [0, 1, 2, 3, 5, 7, 8, 15] as [UInt8])
    func rejectsWrongVersion(version: UInt8) {
        var packet = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: probe))
        packet[0] = version << 4 | 5
        #expect(failure(packet) == .badVersion)
    }

    @Test func rejectsBadHeaderLength() {
        var packet = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: []))
        packet[0] = 0x44  // 16-byte header
        #expect(failure(packet) == .badHeaderLength)
        var tooLong = PacketBuilder.ipv4(transport: [])
        tooLong[0] = 0x46  // 24 bytes claimed, 20 present
        #expect(failure(tooLong) == .badHeaderLength)
    }

    @Test func rejectsTotalLengthDisagreeingWithBytes() {
        let packet = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: probe))
        #expect(failure(Array(packet.dropLast())) == .lengthMismatch)  // truncated in flight
        #expect(failure(packet + [0]) == .lengthMismatch)  // trailing garbage
        var shortTotal = packet
        PacketBuilder.put16(&shortTotal, 2, 10)  // less than the header itself
        PacketBuilder.refreshIPv4Checksum(&shortTotal)
        #expect(failure(shortTotal) == .lengthMismatch)
    }

    @Test func rejectsEverySingleBitFlipInTheIPv4Header() {
        let packet = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: probe))
        for bit in 0..<(20 * 8) {
            var flipped = packet
            flipped[bit / 8] ^= 1 << (bit % 8)
            #expect(failure(flipped) != nil, "bit \(bit) flipped was accepted")
        }
    }

    @Test func rejectsBadChecksum() {
        var packet = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: probe))
        packet[10] ^= 0xff
        #expect(failure(packet) == .badChecksum)
    }

    @Test func rejectsExpiredTTLAndHopLimit() {
        #expect(failure(PacketBuilder.ipv4(ttl: 0, transport: PacketBuilder.udp(payload: probe))) == .ttlExpired)
        #expect(failure(PacketBuilder.ipv6(hopLimit: 0, transport: PacketBuilder.udp(payload: probe))) == .ttlExpired)
    }

    @Test func checksFragments() throws {
        let udp = PacketBuilder.udp(payload: [UInt8](repeating: 1, count: 16))
        // First fragment (MF, offset 0) with a whole UDP header: fine even though UDP length > bytes.
        var first = PacketBuilder.udp(payload: [UInt8](repeating: 1, count: 8))
        PacketBuilder.put16(&first, 4, 100)
        let firstInfo = try PacketBuilder.validate(PacketBuilder.ipv4(flagsAndOffset: 0x2000, transport: first)).get()
        #expect(firstInfo.isFragment)
        // A later fragment carries no transport header to check.
        #expect(try PacketBuilder.validate(PacketBuilder.ipv4(flagsAndOffset: 0x0003, transport: udp)).get().isFragment)
        // Reserved flag bit set.
        #expect(failure(PacketBuilder.ipv4(flagsAndOffset: 0x8000, transport: udp)) == .badFragment)
        // Offset + length beyond 65535.
        #expect(failure(PacketBuilder.ipv4(flagsAndOffset: 0x1fff, transport: udp)) == .badFragment)
        // RFC 1858 tiny-fragment attack on TCP (offset 8 bytes).
        #expect(failure(PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, flagsAndOffset: 0x0001, transport: udp)) == .badFragment)
        // More-fragments with a payload that is not a multiple of 8.
        #expect(failure(PacketBuilder.ipv4(flagsAndOffset: 0x2001, transport: [1, 2, 3])) == .badFragment)
        // More-fragments with no payload at all.
        #expect(failure(PacketBuilder.ipv4(flagsAndOffset: 0x2000, transport: [])) == .badFragment)
    }

    @Test(arguments: [0x0000_0000, 0xffff_ffff, 0xe000_0001, 0x7f00_0001] as [UInt32])
    func rejectsInvalidIPv4Sources(source: UInt32) {
        #expect(failure(PacketBuilder.ipv4(source: source, transport: PacketBuilder.udp(payload: probe))) == .badAddress)
    }

    @Test func rejectsUnspecifiedDestination() {
        #expect(failure(PacketBuilder.ipv4(destination: 0, transport: PacketBuilder.udp(payload: probe))) == .badAddress)
        #expect(failure(PacketBuilder.ipv6(destination: (0, 0), transport: PacketBuilder.udp(payload: probe))) == .badAddress)
    }

    @Test func rejectsBrokenTransportHeaders() {
        var udp = PacketBuilder.udp(payload: probe)
        PacketBuilder.put16(&udp, 4, 7)
        #expect(failure(PacketBuilder.ipv4(transport: udp)) == .badTransportHeader)
        PacketBuilder.put16(&udp, 4, UInt16(udp.count + 1))
        #expect(failure(PacketBuilder.ipv4(transport: udp)) == .badTransportHeader)
        #expect(failure(PacketBuilder.ipv4(transport: [1, 2, 3])) == .badTransportHeader)
        #expect(
            failure(PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: PacketBuilder.tcp(dataOffsetWords: 4)))
                == .badTransportHeader)
        var tcp = PacketBuilder.tcp()
        tcp[12] = 0xf0  // 60-byte header claimed in a 20-byte segment
        #expect(failure(PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: tcp)) == .badTransportHeader)
        #expect(
            failure(PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: [UInt8](repeating: 0x50, count: 19))) == .badTransportHeader)
    }

    @Test func acceptsAndChecksIPv6() throws {
        let packet = PacketBuilder.ipv6(transport: PacketBuilder.udp(payload: probe))
        let info = try PacketBuilder.validate(packet).get()
        #expect(info.version == 6)
        #expect(info.source == IPAddress("2001:db8::1"))
        #expect(failure(Array(packet.dropLast())) == .lengthMismatch)
        #expect(failure(packet + [9]) == .lengthMismatch)
        #expect(
            failure(PacketBuilder.ipv6(source: (0xff02_0000_0000_0000, 1), transport: PacketBuilder.udp(payload: probe))) == .badAddress)
        #expect(failure(PacketBuilder.ipv6(source: (0, 1), transport: PacketBuilder.udp(payload: probe))) == .badAddress)
        #expect(failure(PacketBuilder.ipv6(transport: [0, 1, 2])) == .badTransportHeader)
        // Jumbogram marker (payload length 0) with a payload present.
        var jumbo = packet
        PacketBuilder.put16(&jumbo, 4, 0)
        #expect(failure(jumbo) == .lengthMismatch)
    }

    @Test func randomBytesNeverCrashAndAcceptedOnesAreConsistent() {
        var generator = SeededGenerator()
        var accepted = 0
        for round in 0..<50_000 {
            let length = Int.random(in: 0...80, using: &generator)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Half the inputs get a plausible first byte so validation reaches deeper checks.
            if round % 2 == 0, !bytes.isEmpty { bytes[0] = round % 4 == 0 ? 0x45 : 0x60 }
            if case let .success(info) = PacketBuilder.validate(bytes) {
                accepted += 1
                #expect(info.totalLength == bytes.count, "seed \(TestSeed.value), round \(round)")
                #expect(info.headerLength <= info.totalLength, "seed \(TestSeed.value), round \(round)")
                #expect(!info.source.isInvalidSource, "seed \(TestSeed.value), round \(round)")
            }
        }
        #expect(accepted < 50_000)
    }

    @Test func internetChecksumMatchesRFC1071Example() {
        // RFC 1071 section 3: the one's complement sum of these bytes is 0xddf2.
        let bytes: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        #expect(InternetChecksum.of(bytes.span) == ~UInt16(0xddf2))
        // Odd length pads with a zero byte.
        #expect(InternetChecksum.of([0x01].span) == ~UInt16(0x0100))
    }

    @Test func dropReasonsFitTheTally() {
        #expect(DropReason.allCases.count <= BatchTally().drops.count)
        #expect(ControlMessage.allCases.count <= BatchTally().controlReceived.count)
        #expect(Set(ControlMessage.allCases.map(\.description)).count == ControlMessage.allCases.count)
        #expect(Set(DropReason.allCases.map(\.description)).count == DropReason.allCases.count)
        #expect(DropReason.allCases.filter(\.isMalformed).count == 9)
    }
}
