/// Writing the IP header of a packet udptun makes itself (an ICMP error, a keepalive).
public enum IPHeader {
    /// The header's length for `source`'s family.
    public static func length(like source: IPAddress) -> Int {
        source.isIPv4 ? IPPacket.ipv4MinimumHeaderLength : IPPacket.ipv6HeaderLength
    }

    /// Writes an IPv4 (with its checksum) or IPv6 header at the start of `bytes`: `total` bytes in
    /// all, carrying `transportProtocol`, TTL/hop limit 64, not fragmented. Both addresses must be of
    /// one family; `bytes` must hold the header.
    public static func write(
        into bytes: inout MutableSpan<UInt8>, total: Int, transportProtocol: UInt8,
        from source: IPAddress, to destination: IPAddress
    ) {
        if source.isIPv4 {
            bytes.setU32(0x4500_0000 | UInt32(total), at: 0)
            bytes.setU32(0, at: 4)  // id 0, not fragmented
            bytes.setU32(0x4000_0000 | UInt32(transportProtocol) << 16, at: 8)  // TTL 64, checksum 0 for now
            write(source, into: &bytes, at: 12)
            write(destination, into: &bytes, at: 16)
            bytes.setU16(InternetChecksum.of(bytes.span.extracting(0..<IPPacket.ipv4MinimumHeaderLength)), at: 10)
        } else {
            bytes.setU32(0x6000_0000, at: 0)
            bytes.setU32(UInt32(total - IPPacket.ipv6HeaderLength) << 16 | UInt32(transportProtocol) << 8 | 64, at: 4)
            write(source, into: &bytes, at: 8)
            write(destination, into: &bytes, at: 24)
        }
    }

    static func write(_ address: IPAddress, into bytes: inout MutableSpan<UInt8>, at offset: Int) {
        switch address {
        case let .v4(a): bytes.setU32(a, at: offset)
        case let .v6(high, low): bytes.setU64(high, at: offset); bytes.setU64(low, at: offset + 8)
        }
    }
}
