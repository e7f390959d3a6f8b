import WireFormat

/// Builds well-formed IPv4/IPv6 packets with correct checksums: test traffic, crafted injections in the
/// end-to-end tests, fuzz seeds. Tests then break one field at a time.
public enum PacketBuilder {
    public static func ipv4(
        source: UInt32 = 0xC613_0001, destination: UInt32 = 0xC612_0202, proto: UInt8 = IPProtocolNumber.udp,
        ttl: UInt8 = 64, flagsAndOffset: UInt16 = 0x4000, options: [UInt8] = [], transport: [UInt8]
    ) -> [UInt8] {
        precondition(options.count % 4 == 0)
        let headerLength = 20 + options.count
        var packet = [UInt8](repeating: 0, count: headerLength)
        packet[0] = 0x40 | UInt8(headerLength / 4)
        put16(&packet, 2, UInt16(headerLength + transport.count))
        put16(&packet, 4, 0x1234)
        put16(&packet, 6, flagsAndOffset)
        packet[8] = ttl
        packet[9] = proto
        put32(&packet, 12, source)
        put32(&packet, 16, destination)
        packet.replaceSubrange(20..<headerLength, with: options)
        put16(&packet, 10, packet.span.extracting(0..<headerLength).internetChecksum)
        return packet + transport
    }

    public static func udp(sourcePort: UInt16 = 40000, destinationPort: UInt16 = 8080, payload: [UInt8]) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 8)
        put16(&header, 0, sourcePort)
        put16(&header, 2, destinationPort)
        put16(&header, 4, UInt16(8 + payload.count))
        return header + payload  // checksum 0: allowed for IPv4
    }

    public static func tcp(dataOffsetWords: UInt8 = 5, payload: [UInt8] = []) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: max(20, Int(dataOffsetWords) * 4))
        put16(&header, 0, 5001)
        put16(&header, 2, 443)
        header[12] = dataOffsetWords << 4
        header[13] = 0x18  // PSH, ACK
        return header + payload
    }

    public static func ipv6(
        source: (UInt64, UInt64) = (0x2001_0db8_0000_0000, 1), destination: (UInt64, UInt64) = (0x2001_0db8_0000_0002, 2),
        nextHeader: UInt8 = IPProtocolNumber.udp, hopLimit: UInt8 = 64, transport: [UInt8]
    ) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: 40)
        packet[0] = 0x60
        put16(&packet, 4, UInt16(transport.count))
        packet[6] = nextHeader
        packet[7] = hopLimit
        put64(&packet, 8, source.0); put64(&packet, 16, source.1)
        put64(&packet, 24, destination.0); put64(&packet, 32, destination.1)
        return packet + transport
    }

    public static func put16(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(value >> 8)
        bytes[offset + 1] = UInt8(value & 0xff)
    }

    public static func put32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
        put16(&bytes, offset, UInt16(value >> 16))
        put16(&bytes, offset + 2, UInt16(value & 0xffff))
    }

    public static func put64(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt64) {
        put32(&bytes, offset, UInt32(value >> 32))
        put32(&bytes, offset + 4, UInt32(value & 0xffff_ffff))
    }

    /// Rewrites the IPv4 header checksum after a test changed a header field on purpose.
    public static func refreshIPv4Checksum(_ packet: inout [UInt8]) {
        let headerLength = Int(packet[0] & 0x0f) * 4
        put16(&packet, 10, 0)
        put16(&packet, 10, packet.span.extracting(0..<headerLength).internetChecksum)
    }

    /// Rewrites the TCP checksum of an IPv4 packet after a test changed a field on purpose.
    public static func refreshTCPChecksum(_ packet: inout [UInt8]) {
        let start = Int(packet[0] & 0x0f) * 4
        let length = packet.count
        var span = packet.mutableSpan
        TransportChecksum.complete(&span, packet: 0..<length, version: 4, proto: IPProtocolNumber.tcp, start: start, offset: 16)
    }

    public static func validate(_ packet: [UInt8]) -> Result<IPPacketInfo, DropReason> {
        IPPacket.validate(packet.span)
    }
}

extension Span where Element == UInt8 {
    var internetChecksum: UInt16 { InternetChecksum.of(self) }
}

extension PacketBuilder {
    /// A generator payload in a UDP/IPv4 packet, as the client's kernel would route it into tun1.
    public static func probePacket(
        source: UInt32, destination: UInt32, destinationPort: UInt16, sequence: UInt64,
        streamID: UInt32, length: Int = 64
    ) -> [UInt8] {
        var payload = [UInt8](repeating: 0, count: length)
        var span = payload.mutableSpan
        ProbePayload(streamID: streamID, sequence: sequence, sendTimeNanoseconds: Clock.wallNanoseconds(), length: length)
            .encode(into: &span)
        return ipv4(source: source, destination: destination, transport: udp(destinationPort: destinationPort, payload: payload))
    }

    /// A TCP timestamp option (with its padding NOPs), as Linux sends on every segment.
    public static let timestampOption: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]

    /// A TCP super-packet as the kernel hands it over with TSO: one IP header, one TCP header, a
    /// payload many segments long, and the TCP checksum field holding the pseudo-header sum.
    public static func tcpSuperPacket(
        version: Int = 4, payload: [UInt8], flags: UInt8 = TCPFlag.ack | TCPFlag.psh,
        options: [UInt8] = timestampOption, segmentSize: Int = 1400
    ) -> ([UInt8], VirtioNetHeader) {
        var tcp = [UInt8](repeating: 0, count: 20) + options
        PacketBuilder.put16(&tcp, 0, 40000)
        PacketBuilder.put16(&tcp, 2, 5001)
        PacketBuilder.put32(&tcp, 4, 0xffff_f000)  // wraps during segmentation
        PacketBuilder.put32(&tcp, 8, 0x1234_5678)
        tcp[12] = UInt8(tcp.count / 4) << 4
        tcp[13] = flags
        PacketBuilder.put16(&tcp, 14, 501)
        var packet =
            version == 4
            ? PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: tcp + payload)
            : PacketBuilder.ipv6(nextHeader: IPProtocolNumber.tcp, transport: tcp + payload)
        let header = asHandedOver(
            &packet, version: version, proto: IPProtocolNumber.tcp, type: version == 4 ? .tcpv4 : .tcpv6,
            transportHeaderLength: tcp.count, segmentSize: segmentSize)
        return (packet, header)
    }

    /// What the kernel does to a super-packet before handing it over: leaves the pseudo-header sum in the
    /// transport checksum field (CHECKSUM_PARTIAL) and describes the packet in a virtio-net GSO header.
    public static func asHandedOver(
        _ packet: inout [UInt8], version: Int, proto: UInt8, type: VirtioNetHeader.GSOType,
        transportHeaderLength: Int, segmentSize: Int
    ) -> VirtioNetHeader {
        let start = version == 4 ? 20 : 40
        let checksumOffset = proto == IPProtocolNumber.tcp ? 16 : 6
        let pseudo = TransportChecksum.pseudoHeader(
            version: version, packet: packet.span, proto: proto,
            length: packet.count - start
        ).folded
        PacketBuilder.put16(&packet, start + checksumOffset, pseudo)
        var header = VirtioNetHeader()
        header.flags = VirtioNetHeader.needsChecksum
        header.gsoTypeRaw = type.rawValue
        header.headerLength = UInt16(start + transportHeaderLength)
        header.gsoSize = UInt16(segmentSize)
        header.checksumStart = UInt16(start)
        header.checksumOffset = UInt16(checksumOffset)
        return header
    }
}
