/// The ICMP error a router sends when a packet is larger than the next hop's MTU and may not be
/// fragmented: ICMP "fragmentation needed and DF set" with the next-hop MTU (RFC 792, RFC 1191) for
/// IPv4, ICMPv6 "packet too big" (RFC 4443, RFC 8201) for IPv6, quoting as much of the packet as
/// the minimum MTU allows (576 and 1280 bytes in all), so the sender can match it to its socket.
public enum PacketTooBig {
    static let ipv4ErrorLimit = 576
    static let ipv6ErrorLimit = 1280
    /// IPv6 links never have a smaller MTU (RFC 8200); a smaller figure would be ignored.
    public static let ipv6MinimumMTU = 1280

    /// Whether the sender of `packet`, too big for the next hop, must be told: IPv6 packets and IPv4
    /// packets with DF set, except ICMP errors themselves (RFC 1812 4.3.2.7, RFC 4443 2.4) and IPv4
    /// non-first fragments, which are only dropped.
    public static func warrantsReport(_ packet: Span<UInt8>, info: IPPacketInfo) -> Bool {
        guard packet.count >= info.headerLength + 1, !info.source.isInvalidSource else { return false }
        if info.version == 4 {
            let flagsAndOffset = packet.u16(at: 6)
            guard flagsAndOffset & 0x4000 != 0, flagsAndOffset & 0x1fff == 0 else { return false }
            if info.transportProtocol == IPProtocolNumber.icmp {
                return [0, 8, 13, 15, 17].contains(packet[info.headerLength])  // queries, not errors
            }
            return true
        }
        if info.transportProtocol == IPProtocolNumber.icmpv6 { return packet[info.headerLength] >= 128 }
        return true
    }

    /// Writes the error about `packet` (validated as `info`) for a next hop of `mtu` bytes, sent
    /// from `source` to the packet's source, at `offset` of `buffer`. Returns its range, or nil when
    /// `source` is not of the packet's family or the buffer is too short.
    public static func write(
        into buffer: inout MutableSpan<UInt8>, at offset: Int, about packet: Span<UInt8>,
        info: IPPacketInfo, mtu: Int, from source: IPAddress
    ) -> Range<Int>? {
        guard source.isIPv4 == (info.version == 4), info.source.isIPv4 == source.isIPv4 else { return nil }
        let headerLength = info.version == 4 ? IPPacket.ipv4MinimumHeaderLength : IPPacket.ipv6HeaderLength
        let limit = info.version == 4 ? ipv4ErrorLimit : ipv6ErrorLimit
        let quoted = min(packet.count, limit - headerLength - 8)
        let total = headerLength + 8 + quoted
        guard offset >= 0, offset + total <= buffer.count else { return nil }
        var bytes = buffer.extracting(offset..<(offset + total))
        let icmp = headerLength
        bytes.copy(from: packet.extracting(0..<quoted), to: icmp + 8)
        IPHeader.write(
            into: &bytes, total: total, transportProtocol: info.version == 4 ? IPProtocolNumber.icmp : IPProtocolNumber.icmpv6,
            from: source, to: info.source)
        if info.version == 4 {
            bytes.setU32(0x0304_0000, at: icmp)  // type 3, code 4, checksum 0 for now
            bytes.setU32(UInt32(min(mtu, 0xffff)), at: icmp + 4)  // unused (16 bits), next-hop MTU
            bytes.setU16(InternetChecksum.of(bytes.span.extracting(icmp..<total)), at: icmp + 2)
        } else {
            bytes.setU32(0x0200_0000, at: icmp)  // type 2, code 0, checksum 0 for now
            bytes.setU32(UInt32(max(mtu, ipv6MinimumMTU)), at: icmp + 4)
            var checksum = InternetChecksum()
            checksum.add(source)
            checksum.add(info.source)
            checksum.add(UInt32(total - headerLength))
            checksum.add(UInt32(IPProtocolNumber.icmpv6))
            checksum.add(bytes.span.extracting(icmp..<total))
            bytes.setU16(checksum.value, at: icmp + 2)
        }
        return offset..<(offset + total)
    }
}
