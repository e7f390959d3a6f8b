/// What the tunnel needs to know about a validated inner IP packet.
public struct IPPacketInfo: Sendable, Equatable {
    public var version: Int
    public var source: IPAddress
    public var destination: IPAddress
    /// IPv4 protocol or the IPv6 next header.
    public var transportProtocol: UInt8
    public var totalLength: Int
    public var headerLength: Int
    public var isFragment: Bool
}

public enum IPProtocolNumber {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let icmpv6: UInt8 = 58
    public static let ipv6Fragment: UInt8 = 44
    public static let ipv6HopByHop: UInt8 = 0
    public static let ipv6Routing: UInt8 = 43
    public static let ipv6Authentication: UInt8 = 51
    public static let ipv6DestinationOptions: UInt8 = 60
}

/// Validation of inner IP packets. A packet that passes is well-formed enough to hand to the kernel:
/// lengths agree with the bytes present, the IPv4 header checksum is right, TTL/hop limit is non-zero,
/// fragments are sane, the source is a unicast address and the first transport header is whole.
/// Source-routed packets (an IPv4 loose or strict source route, an IPv6 routing header) are refused:
/// where a host honours the route, the packet goes on to addresses the relay's policy never saw.
public enum IPPacket {
    public static let ipv4MinimumHeaderLength = 20
    static let looseSourceRoute: UInt8 = 131
    static let strictSourceRoute: UInt8 = 137
    public static let ipv6HeaderLength = 40
    public static let udpHeaderLength = 8
    public static let tcpMinimumHeaderLength = 20

    public static func validate(_ packet: Span<UInt8>) -> Result<IPPacketInfo, DropReason> {
        guard packet.count >= 1 else { return .failure(.truncated) }
        switch packet[0] >> 4 {
        case 4: return validateIPv4(packet)
        case 6: return validateIPv6(packet)
        default: return .failure(.badVersion)
        }
    }

    static func validateIPv4(_ packet: Span<UInt8>) -> Result<IPPacketInfo, DropReason> {
        guard packet.count >= ipv4MinimumHeaderLength else { return .failure(.truncated) }
        let headerLength = Int(packet[0] & 0x0f) * 4
        guard headerLength >= ipv4MinimumHeaderLength, headerLength <= packet.count else {
            return .failure(.badHeaderLength)
        }
        let totalLength = Int(packet.u16(at: 2))
        // TUN and raw UDP framing carry exactly one packet: any disagreement is corruption or truncation.
        guard totalLength >= headerLength, totalLength == packet.count else { return .failure(.lengthMismatch) }
        guard InternetChecksum.of(packet.extracting(0..<headerLength)) == 0 else { return .failure(.badChecksum) }
        guard packet[8] > 0 else { return .failure(.ttlExpired) }
        if headerLength > ipv4MinimumHeaderLength,
            let failure = checkOptions(packet.extracting(ipv4MinimumHeaderLength..<headerLength))
        {
            return .failure(failure)
        }

        let flagsAndOffset = packet.u16(at: 6)
        let moreFragments = flagsAndOffset & 0x2000 != 0
        let fragmentOffset = Int(flagsAndOffset & 0x1fff) * 8
        let proto = packet[9]
        let payloadLength = totalLength - headerLength
        if flagsAndOffset & 0x8000 != 0 { return .failure(.badFragment) }  // reserved bit
        if fragmentOffset + payloadLength > 65535 { return .failure(.badFragment) }
        // RFC 1858: an offset of 8 bytes for TCP can only be an attempt to overwrite the TCP flags.
        if fragmentOffset == 8, proto == IPProtocolNumber.tcp { return .failure(.badFragment) }
        if moreFragments, payloadLength % 8 != 0 { return .failure(.badFragment) }
        if moreFragments, payloadLength == 0 { return .failure(.badFragment) }

        let source = IPAddress.v4(packet.u32(at: 12))
        let destination = IPAddress.v4(packet.u32(at: 16))
        guard !source.isInvalidSource, destination != .v4(0) else { return .failure(.badAddress) }

        if fragmentOffset == 0 {
            let transport = packet.extracting(headerLength..<totalLength)
            if let failure = validateTransport(proto, transport, wholeDatagram: !moreFragments) {
                return .failure(failure)
            }
        }
        return .success(
            IPPacketInfo(
                version: 4, source: source, destination: destination, transportProtocol: proto,
                totalLength: totalLength, headerLength: headerLength, isFragment: moreFragments || fragmentOffset != 0))
    }

    static func validateIPv6(_ packet: Span<UInt8>) -> Result<IPPacketInfo, DropReason> {
        guard packet.count >= ipv6HeaderLength else { return .failure(.truncated) }
        let payloadLength = Int(packet.u16(at: 4))
        // Jumbograms (payload length 0) cannot cross a 64 KiB UDP datagram, so 0 with a payload is bogus.
        guard ipv6HeaderLength + payloadLength == packet.count else { return .failure(.lengthMismatch) }
        guard packet[7] > 0 else { return .failure(.ttlExpired) }
        let nextHeader = packet[6]
        let source = IPAddress.v6(packet.u64(at: 8), packet.u64(at: 16))
        let destination = IPAddress.v6(packet.u64(at: 24), packet.u64(at: 32))
        guard !source.isInvalidSource, destination != .v6(0, 0) else { return .failure(.badAddress) }
        if let failure = checkExtensionHeaders(nextHeader, packet) { return .failure(failure) }
        if let failure = validateTransport(
            nextHeader, packet.extracting(ipv6HeaderLength..<packet.count), wholeDatagram: true)
        {
            return .failure(failure)
        }
        return .success(
            IPPacketInfo(
                version: 6, source: source, destination: destination, transportProtocol: nextHeader,
                totalLength: packet.count, headerLength: ipv6HeaderLength,
                isFragment: nextHeader == IPProtocolNumber.ipv6Fragment))
    }

    /// Walks the IPv4 options: a source route is refused, and so is an option that runs past the
    /// header (it cannot be read). The walk ends at the end-of-options option.
    static func checkOptions(_ options: Span<UInt8>) -> DropReason? {
        var index = 0
        while index < options.count {
            let type = options[index]
            if type == 0 { break }  // end of options
            if type == 1 { index += 1; continue }  // no operation
            guard index + 1 < options.count else { return .badHeaderLength }
            let length = Int(options[index + 1])
            guard length >= 2, index + length <= options.count else { return .badHeaderLength }
            if type == looseSourceRoute || type == strictSourceRoute { return .sourceRouted }
            index += length
        }
        return nil
    }

    /// Walks the IPv6 extension headers in front of the transport header (hop-by-hop, destination
    /// options, fragment, authentication): a routing header is refused, and so is a header that runs
    /// past the packet (it cannot be walked). Behind the fragment header of a fragment other than the
    /// first, the bytes are data: the walk ends there.
    static func checkExtensionHeaders(_ first: UInt8, _ packet: Span<UInt8>) -> DropReason? {
        var next = first, offset = ipv6HeaderLength
        while true {
            let length: Int
            switch next {
            case IPProtocolNumber.ipv6Routing:
                return .sourceRouted
            case IPProtocolNumber.ipv6HopByHop, IPProtocolNumber.ipv6DestinationOptions:
                guard offset + 8 <= packet.count else { return .badHeaderLength }
                length = (Int(packet[offset + 1]) + 1) * 8
            case IPProtocolNumber.ipv6Fragment:
                guard offset + 8 <= packet.count else { return .badHeaderLength }
                guard packet.u16(at: offset + 2) >> 3 == 0 else { return nil }
                length = 8
            case IPProtocolNumber.ipv6Authentication:
                guard offset + 8 <= packet.count else { return .badHeaderLength }
                length = (Int(packet[offset + 1]) + 2) * 4
            default:
                return nil
            }
            guard offset + length <= packet.count else { return .badHeaderLength }
            next = packet[offset]
            offset += length
        }
    }

    /// Checks the first transport header when it is present in this packet.
    static func validateTransport(_ proto: UInt8, _ transport: Span<UInt8>, wholeDatagram: Bool) -> DropReason? {
        switch proto {
        case IPProtocolNumber.udp:
            guard transport.count >= udpHeaderLength else { return .badTransportHeader }
            let udpLength = Int(transport.u16(at: 4))
            if wholeDatagram {
                guard udpLength == transport.count else { return .badTransportHeader }
            } else {
                guard udpLength >= udpHeaderLength else { return .badTransportHeader }
            }
        case IPProtocolNumber.tcp:
            guard transport.count >= tcpMinimumHeaderLength else { return .badTransportHeader }
            let dataOffset = Int(transport[12] >> 4) * 4
            guard dataOffset >= tcpMinimumHeaderLength, dataOffset <= transport.count else {
                return .badTransportHeader
            }
        default:
            break
        }
        return nil
    }
}
