import Testing

@testable import KernelIO
@testable import TestSupport
@testable import WireFormat

@Suite("TCP segmentation and coalescing (TUN offloads)")
struct OffloadTests {
    static let mss = 1400
    static let timestampOption = PacketBuilder.timestampOption

    func superPacket(
        version: Int = 4, payload: [UInt8], flags: UInt8 = TCPFlag.ack | TCPFlag.psh,
        options: [UInt8] = timestampOption
    ) -> ([UInt8], VirtioNetHeader) {
        PacketBuilder.tcpSuperPacket(version: version, payload: payload, flags: flags, options: options, segmentSize: Self.mss)
    }

    func asHandedOver(
        _ packet: inout [UInt8], version: Int, proto: UInt8, type: VirtioNetHeader.GSOType,
        transportHeaderLength: Int, segmentSize: Int
    ) -> VirtioNetHeader {
        PacketBuilder.asHandedOver(
            &packet, version: version, proto: proto, type: type,
            transportHeaderLength: transportHeaderLength, segmentSize: segmentSize)
    }

    func segment(_ packet: [UInt8], _ header: VirtioNetHeader, capacity: Int = 131_072) throws -> [[UInt8]] {
        var output = [UInt8](repeating: 0, count: capacity)
        var span = output.mutableSpan
        let layout = try GSOSegmenter.segment(packet.span, header: header, into: &span).get()
        return (0..<layout.count).map { index in
            Array(output[(index * layout.stride)..<(index * layout.stride + layout.length(of: index))])
        }
    }

    static func payload(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) } }

    @Test(arguments: [4, 6])
    func segmentsAreValidPacketsCarryingThePayloadInOrder(version: Int) throws {
        let data = Self.payload(10_000)
        let (packet, header) = superPacket(version: version, payload: data)
        let segments = try segment(packet, header)
        #expect(segments.count == 8)
        let tcpStart = version == 4 ? 20 : 40
        let headers = tcpStart + 32
        var reassembled: [UInt8] = []
        for (index, segment) in segments.enumerated() {
            let info = try IPPacket.validate(segment.span).get()
            #expect(info.totalLength == segment.count)
            #expect(segment.count == headers + (index == 7 ? 10_000 - 7 * Self.mss : Self.mss))
            #expect(
                TransportChecksum.compute(segment.span, version: version, proto: IPProtocolNumber.tcp, start: tcpStart) == 0,
                "TCP checksum of segment \(index)")
            let sequence = segment.span.u32(at: tcpStart + 4)
            #expect(sequence == 0xffff_f000 &+ UInt32(index * Self.mss))
            let flags = segment[tcpStart + 13]
            #expect((flags & TCPFlag.psh != 0) == (index == 7), "PSH only on the last segment")
            #expect(flags & TCPFlag.ack != 0)
            #expect(Array(segment[(tcpStart + 20)..<headers]) == Self.timestampOption, "options copied")
            if version == 4 {
                #expect(segment.span.u16(at: 4) == 0x1234 &+ UInt16(index), "IPv4 ID increments")
            }
            reassembled += segment[headers...]
        }
        #expect(reassembled == data)
    }

    @Test func flagsSplitAsANicWould() throws {
        let all = TCPFlag.ack | TCPFlag.psh | TCPFlag.fin | TCPFlag.cwr
        let (packet, header) = superPacket(payload: Self.payload(3 * Self.mss), flags: all)
        let segments = try segment(packet, header)
        #expect(segments.count == 3)  // an exact multiple: the last segment is full
        #expect(
            segments.map { $0[33] } == [
                TCPFlag.ack | TCPFlag.cwr,
                TCPFlag.ack,
                TCPFlag.ack | TCPFlag.psh | TCPFlag.fin
            ])
        #expect(segments.allSatisfy { $0.count == 20 + 32 + Self.mss })
    }

    @Test func aSuperPacketOfOneSegmentStillGetsItsChecksum() throws {
        let (packet, header) = superPacket(payload: Self.payload(100), options: [])
        let segments = try segment(packet, header)
        #expect(segments.count == 1)
        let only = segments[0]
        #expect(TransportChecksum.compute(only.span, version: 4, proto: IPProtocolNumber.tcp, start: 20) == 0)
    }

    @Test func refusesWhatItCannotSegment() throws {
        let (packet, header) = superPacket(payload: Self.payload(5000))
        var output = [UInt8](repeating: 0, count: 131_072)
        var span = output.mutableSpan
        var zeroSize = header
        zeroSize.gsoSize = 0
        #expect(throws: DropReason.self) { try GSOSegmenter.segment(packet.span, header: zeroSize, into: &span).get() }
        var wrongType = header
        wrongType.gsoTypeRaw = VirtioNetHeader.GSOType.tcpv6.rawValue
        #expect(throws: DropReason.badVersion) { try GSOSegmenter.segment(packet.span, header: wrongType, into: &span).get() }
        var unknownType = header
        unknownType.gsoTypeRaw = VirtioNetHeader.GSOType.udp.rawValue  // UFO: never negotiated, not cut here
        #expect(throws: DropReason.unsupportedOffload) { try GSOSegmenter.segment(packet.span, header: unknownType, into: &span).get() }
        var badStart = header
        badStart.checksumStart = UInt16(packet.count)
        #expect(throws: DropReason.badTransportHeader) { try GSOSegmenter.segment(packet.span, header: badStart, into: &span).get() }
        var small = [UInt8](repeating: 0, count: 3000)
        var smallSpan = small.mutableSpan
        #expect(throws: DropReason.oversize) { try GSOSegmenter.segment(packet.span, header: header, into: &smallSpan).get() }
        var tiny = header
        tiny.gsoSize = 1  // 5000 one-byte segments cannot fit
        #expect(throws: DropReason.oversize) { try GSOSegmenter.segment(packet.span, header: tiny, into: &span).get() }
    }

    /// Feeds `packets` through the data plane's `TunWriter` and returns what it would write: each
    /// packet or coalesced group, its virtio-net header, and how many packets it carries.
    func coalesce(_ packets: [[UInt8]], udp: Bool = false) throws -> (groups: [([UInt8], VirtioNetHeader, Int)], Void) {
        let device = FakeTunQueue(virtioHeaders: true, udpSegmentation: udp)
        var writer = TunWriter(queues: [device])
        for packet in packets {
            let info = try IPPacket.validate(packet.span).get()
            try writer.write(packet.span, info: info)
        }
        try writer.flush()
        #expect(writer.takeCounts().written == packets.count, "every packet written once")
        let written = device.written.map { ($0.packet, $0.header) }
        // Packets per group: a plain packet is one; a GSO group is as many as it segments into.
        let groups = try written.map { bytes, header -> ([UInt8], VirtioNetHeader, Int) in
            (bytes, header, header.isGSO ? try segment(bytes, header).count : 1)
        }
        return (groups, ())
    }

    @Test(arguments: [4, 6])
    func coalescingThenSegmentingGivesBackTheSameSegments(version: Int) throws {
        let (packet, header) = superPacket(version: version, payload: Self.payload(20_000))
        let segments = try segment(packet, header)
        let (groups, _) = try coalesce(segments)
        #expect(groups.count == 1)
        let (merged, mergedHeader, count) = groups[0]
        #expect(count == segments.count)
        #expect(mergedHeader.gsoSize == UInt16(Self.mss))
        #expect(mergedHeader.needsChecksumCompletion)
        #expect(try IPPacket.validate(merged.span).get().totalLength == merged.count)
        #expect(try segment(merged, mergedHeader) == segments)
    }

    @Test("a coalesced group is written gathered: its headers, then every packet's payload where it lay")
    func groupsAreWrittenGathered() throws {
        let (packet, header) = superPacket(payload: Self.payload(20_000), flags: TCPFlag.ack)
        let segments = try segment(packet, header)
        let device = FakeTunQueue(virtioHeaders: true)
        var writer = TunWriter(queues: [device])
        // The segments lie back to back in one buffer, as a UDP GRO receive leaves them.
        let stride = segments[0].count
        var buffer = [UInt8](repeating: 0, count: stride * segments.count)
        for (index, bytes) in segments.enumerated() { buffer.replaceSubrange(index * stride..<(index * stride + bytes.count), with: bytes) }
        let span = buffer.span
        for (index, bytes) in segments.enumerated() {
            let member = span.extracting((index * stride)..<(index * stride + bytes.count))
            try writer.write(member, info: try IPPacket.validate(member).get())
        }
        #expect(device.written.isEmpty, "nothing is written before the flush")
        try writer.flush()
        let frames = device.written
        #expect(frames.count == 1 && frames[0].gatheredPayloads == segments.count)
        #expect(try segment(frames[0].packet, frames[0].header) == segments)
        // A group of one is written the same way, exactly as it arrived.
        let first = segments[0]
        try writer.write(first.span, info: try IPPacket.validate(first.span).get())
        try writer.flush()
        #expect(device.written.last == FakeTunQueue.Frame(header: .plain, packet: first, gatheredPayloads: 1))
    }

    @Test("a TCP group holds at most maximumSegments packets, however small they are")
    func tinySegmentsAreCappedPerGroup() throws {
        let count = SegmentCoalescer.maximumSegments + 10
        var (packet, sizeOne) = superPacket(payload: Self.payload(count), flags: TCPFlag.ack)
        sizeOne.gsoSize = 1
        let segments = try segment(packet, sizeOne)
        #expect(segments.count == count)
        let groups = try coalesce(segments).groups
        #expect(groups.map(\.2) == [SegmentCoalescer.maximumSegments, 10])
    }

    @Test func onlyExactContinuationsJoin() throws {
        let (packet, header) = superPacket(payload: Self.payload(4 * Self.mss), flags: TCPFlag.ack)
        let segments = try segment(packet, header)
        // A gap in sequence numbers splits the group.
        #expect(try coalesce([segments[0], segments[2]]).groups.count == 2)
        // A different ACK number splits it.
        var otherAck = segments[1]
        otherAck[20 + 11] ^= 1
        PacketBuilder.refreshTCPChecksum(&otherAck)
        #expect(try coalesce([segments[0], otherAck]).groups.count == 2)
        // SYN/FIN/RST packets are never coalesced.
        var fin = segments[1]
        fin[33] |= TCPFlag.fin
        #expect(try coalesce([segments[0], fin]).groups.map(\.2) == [1, 1])
        // In order, all four join; a single packet comes back untouched with a plain header.
        let joined = try coalesce(segments).groups
        #expect(joined.count == 1 && joined[0].2 == 4)
        let single = try coalesce([segments[0]]).groups
        #expect(single[0].0 == segments[0] && single[0].1 == .plain)
        // A shorter segment closes the group: nothing may follow it.
        let (shortPacket, shortHeader) = superPacket(payload: Self.payload(Self.mss + 10), flags: TCPFlag.ack)
        let shortSegments = try segment(shortPacket, shortHeader)
        var after = segments[0]
        let shortLast = shortSegments[1]
        let nextSequence = shortLast.span.u32(at: 24) &+ 10
        PacketBuilder.put32(&after, 24, nextSequence)
        PacketBuilder.refreshTCPChecksum(&after)
        #expect(try coalesce(shortSegments + [after]).groups.map(\.2) == [2, 1])
        // Non-TCP packets pass straight through.
        let udp = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: [1, 2, 3]))
        #expect(try coalesce([segments[0], udp, segments[1]]).groups.map(\.2) == [1, 1, 1])
    }

    @Test func anyMixOfPacketsIsCoalescedWithoutLosingOne() throws {
        let (packet, header) = superPacket(payload: Self.payload(30_000), flags: TCPFlag.ack)
        let segments = try segment(packet, header)
        let (v6Packet, v6Header) = superPacket(version: 6, payload: Self.payload(9_000), flags: TCPFlag.ack)
        let v6Segments = try segment(v6Packet, v6Header)
        let others: [[UInt8]] = [
            PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: [])),
            PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: [UInt8](repeating: 9, count: 1000))),
            PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: PacketBuilder.tcp()),  // a bare ACK
            PacketBuilder.ipv4(proto: IPProtocolNumber.icmp, transport: [8, 0, 0, 0, 0, 0, 0, 0]),
            PacketBuilder.ipv6(transport: PacketBuilder.udp(payload: [1]))
        ]
        var random = SeededGenerator()
        for round in 0..<300 {
            var mix = segments + v6Segments + others
            if round > 0 { mix.shuffle(using: &random) }
            mix = Array(mix.prefix(Int.random(in: 1...mix.count, using: &random)))
            let groups = try coalesce(mix, udp: round % 2 == 0).groups
            #expect(groups.reduce(0) { $0 + $1.2 } == mix.count, "seed \(TestSeed.value), round \(round)")
            for (bytes, groupHeader, count) in groups where count > 1 {
                #expect(groupHeader.isGSO)
                #expect(try segment(bytes, groupHeader).count == count)
            }
        }
    }

    /// `packets` with a payload byte of the one at `index` flipped, its transport checksum left as it was.
    static func corrupting(_ packets: [[UInt8]], at index: Int) -> [[UInt8]] {
        var corrupted = packets
        corrupted[index][corrupted[index].count - 1] ^= 0x40
        return corrupted
    }

    @Test(
        "a packet whose TCP checksum fails is written as it came, never merged; the good ones still are",
        arguments: [4, 6], [0, 1, 3])
    func corruptTCPSegmentsAreNotMerged(version: Int, index: Int) throws {
        let (packet, header) = superPacket(version: version, payload: Self.payload(4 * Self.mss), flags: TCPFlag.ack)
        let segments = try segment(packet, header)
        #expect(try coalesce(segments).groups.map(\.2) == [4])
        let mixed = Self.corrupting(segments, at: index)
        let groups = try coalesce(mixed).groups
        let expected = [[1, 3], [1, 1, 2], [], [3, 1]][index]
        #expect(groups.map(\.2) == expected, "packets per write, segment \(index) corrupt")
        let corrupt = try #require(groups.first { $0.0 == mixed[index] }, "the corrupt segment written unchanged")
        #expect(corrupt.1 == .plain, "with no checksum offload: the receiver checks it")
        #expect(
            TransportChecksum.compute(
                corrupt.0.span, version: version, proto: IPProtocolNumber.tcp,
                start: version == 4 ? 20 : 40) != 0, "its original checksum, which fails")
    }

    @Test(
        "a UDP datagram whose checksum fails, or that has none, is written as it came, never merged",
        arguments: [4, 6])
    func corruptUDPDatagramsAreNotMerged(version: Int) throws {
        let (packet, header) = udpSuperPacket(version: version, payload: Self.payload(4 * 1200))
        let datagrams = try segment(packet, header)
        let mixed = Self.corrupting(datagrams, at: 1)
        let groups = try coalesce(mixed, udp: true).groups
        #expect(groups.map(\.2) == [1, 1, 2])
        #expect(groups[1].0 == mixed[1] && groups[1].1 == .plain)
        guard version == 4 else { return }
        // IPv4 UDP without a checksum (0): merging would give it one, so it is left alone.
        var unchecked = datagrams
        PacketBuilder.put16(&unchecked[2], 26, 0)
        #expect(try coalesce(unchecked, udp: true).groups.map(\.2) == [2, 1, 1])
    }

    /// A UDP super-packet as a local sender using UDP_SEGMENT hands it to a TUN device with USO.
    func udpSuperPacket(version: Int = 4, payload: [UInt8], segmentSize: Int = 1200) -> ([UInt8], VirtioNetHeader) {
        var packet =
            version == 4
            ? PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: payload))
            : PacketBuilder.ipv6(transport: PacketBuilder.udp(payload: payload))
        let header = asHandedOver(
            &packet, version: version, proto: IPProtocolNumber.udp, type: .udpL4,
            transportHeaderLength: IPPacket.udpHeaderLength, segmentSize: segmentSize)
        return (packet, header)
    }

    @Test(arguments: [4, 6])
    func udpSegmentsAreValidDatagramsWithChecksums(version: Int) throws {
        let data = Self.payload(5000)
        let (packet, header) = udpSuperPacket(version: version, payload: data)
        let segments = try segment(packet, header)
        #expect(segments.count == 5)  // 4 × 1200 + 200
        let start = version == 4 ? 20 : 40
        var reassembled: [UInt8] = []
        for (index, segment) in segments.enumerated() {
            #expect(try IPPacket.validate(segment.span).get().totalLength == segment.count)  // checks UDP length too
            #expect(segment.span.u16(at: start + 4) == UInt16(8 + (index == 4 ? 200 : 1200)))
            #expect(TransportChecksum.compute(segment.span, version: version, proto: IPProtocolNumber.udp, start: start) == 0)
            reassembled += segment[(start + 8)...]
        }
        #expect(reassembled == data)
    }

    @Test(arguments: [4, 6])
    func udpCoalescingThenSegmentingGivesBackTheSameDatagrams(version: Int) throws {
        let (packet, header) = udpSuperPacket(version: version, payload: Self.payload(20 * 1200 + 77))
        let datagrams = try segment(packet, header)
        // Without USO on the device, UDP passes through one by one.
        #expect(try coalesce(datagrams).groups.count == datagrams.count)
        let groups = try coalesce(datagrams, udp: true).groups
        #expect(groups.count == 1)
        let (merged, mergedHeader, count) = groups[0]
        #expect(count == 21)
        #expect(mergedHeader.gsoType == .udpL4 && mergedHeader.gsoSize == 1200 && mergedHeader.checksumOffset == 6)
        #expect(try segment(merged, mergedHeader) == datagrams)
    }

    @Test func udpGroupsStopAtTheSegmentLimitAndAtAFlowChange() throws {
        let (packet, header) = udpSuperPacket(payload: Self.payload(100 * 100), segmentSize: 100)
        let datagrams = try segment(packet, header)
        #expect(try coalesce(datagrams, udp: true).groups.map(\.2) == [64, 36])
        var otherPort = datagrams[1]
        otherPort[21] ^= 1  // source port
        #expect(try coalesce([datagrams[0], otherPort], udp: true).groups.map(\.2) == [1, 1])
    }

    @Test func segmenterRefusesABrokenIPHeader() throws {
        // Found by the fuzzer: a UDP super-packet whose IPv4 header length is 0.
        let input: [UInt8] =
            [
                0x01, 0x05, 0x1c, 0xe8, 0x14, 0x00, 0x03, 0x00, 0x40, 0x00, 0x40, 0x11, 0x8a, 0xd4, 0x3a, 0x90,
                0x61, 0x61, 0x61, 0x61, 0x00, 0x00, 0x25
            ] + [UInt8](repeating: 0x61, count: 9)
            + [UInt8](repeating: 0xff, count: 8) + [0x61, 0x61, 0xc7]
        let parsed = VirtioNetHeader(input.span)
        let header = try #require(parsed)
        let packet = Array(input[10...])
        var output = [UInt8](repeating: 0, count: 65536)
        var span = output.mutableSpan
        #expect(throws: DropReason.badHeaderLength) { try GSOSegmenter.segment(packet.span, header: header, into: &span).get() }
    }

    @Test func partialChecksumsAreCompleted() throws {
        var packet = PacketBuilder.ipv4(transport: PacketBuilder.udp(payload: Self.payload(333)))
        let pseudo = TransportChecksum.pseudoHeader(version: 4, packet: packet.span, proto: IPProtocolNumber.udp, length: packet.count - 20)
            .folded
        PacketBuilder.put16(&packet, 26, pseudo)
        let length = packet.count
        var span = packet.mutableSpan
        let finished = TransportChecksum.finishPartial(&span, packet: 0..<length, start: 20, offset: 6)
        #expect(finished)
        #expect(TransportChecksum.compute(packet.span, version: 4, proto: IPProtocolNumber.udp, start: 20) == 0)
        var tooShort = [UInt8](repeating: 0, count: 10)
        var shortSpan = tooShort.mutableSpan
        let refused = !TransportChecksum.finishPartial(&shortSpan, packet: 0..<10, start: 8, offset: 6)
        #expect(refused)
    }

    @Test func fastChecksumMatchesTheTextbookOne() {
        func reference(_ bytes: [UInt8]) -> UInt16 {
            var sum: UInt32 = 0
            var index = 0
            while index + 1 < bytes.count { sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1]); index += 2 }
            if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
            while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
            return ~UInt16(sum)
        }
        var random = SeededGenerator()
        for length in 0..<300 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(InternetChecksum.of(bytes.span) == reference(bytes), "seed \(TestSeed.value), length \(length)")
        }
        // Worst case for carries, up to the largest IP packet, at lengths around the 32-byte steps.
        for length in [4096, 65_535, 65_534, 65_533, 65_532] {
            let ones = [UInt8](repeating: 0xff, count: length)
            #expect(InternetChecksum.of(ones.span) == reference(ones), "length \(length)")
        }
    }

    @Test func virtioHeaderRoundTrips() throws {
        var header = VirtioNetHeader()
        header.flags = 1
        header.gsoTypeRaw = 0x81
        header.headerLength = 66
        header.gsoSize = 1448
        header.checksumStart = 34
        header.checksumOffset = 16
        var bytes = [UInt8](repeating: 0, count: 10)
        var span = bytes.mutableSpan
        header.encode(into: &span)
        #expect(bytes == [1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0])
        #expect(VirtioNetHeader(bytes.span) == header)
        #expect(header.gsoType == .tcpv4)
        let nine = [UInt8](repeating: 0, count: 9)
        #expect(VirtioNetHeader(nine.span) == nil)
    }
}
