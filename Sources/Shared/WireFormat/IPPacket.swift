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
}

/// Validation of inner IP packets. A packet that passes is well-formed enough to hand to the kernel:
/// lengths agree with the bytes present, the IPv4 header checksum is right, TTL/hop limit is non-zero,
/// fragments are sane, the source is a unicast address and the first transport header is whole.
public enum IPPacket {
    public static let ipv4MinimumHeaderLength = 20
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
        return .success(IPPacketInfo(
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
        if let failure = validateTransport(
            nextHeader, packet.extracting(ipv6HeaderLength..<packet.count), wholeDatagram: true)
        {
            return .failure(failure)
        }
        return .success(IPPacketInfo(
            version: 6, source: source, destination: destination, transportProtocol: nextHeader,
            totalLength: packet.count, headerLength: ipv6HeaderLength,
            isFragment: nextHeader == IPProtocolNumber.ipv6Fragment))
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
