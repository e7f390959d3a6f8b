/// The keepalive a client sends when it has sent nothing for a while (`--keepalive`), in the raw
/// and authenticated framings: an IP header alone, from the client's inner address to the
/// unspecified address, protocol 253 (RFC 3692, for experiments). A relay refreshes that inner
/// address's return path on it and forwards nothing; any other receiver's kernel drops it (no host
/// accepts or forwards a packet to 0.0.0.0 or ::), so a raw peer such as socat on a TUN device is
/// unharmed. It crosses the NAT the data does, so the mapping stays.
public enum KeepalivePacket {
    public static let transportProtocol: UInt8 = 253

    /// Writes the keepalive from `source` at `offset`; returns its range, nil if it does not fit.
    public static func write(into buffer: inout MutableSpan<UInt8>, at offset: Int, from source: IPAddress) -> Range<Int>? {
        let length = IPHeader.length(like: source)
        guard offset >= 0, offset + length <= buffer.count else { return nil }
        var bytes = buffer.extracting(offset..<(offset + length))
        IPHeader.write(
            into: &bytes, total: length, transportProtocol: transportProtocol, from: source,
            to: .unspecified(like: source))
        return offset..<(offset + length)
    }

    /// The keepalive's source, nil when `packet` is not a keepalive. The source may be unspecified
    /// or otherwise unusable (a client that knows no inner address of its own): the caller checks.
    public static func source(of packet: Span<UInt8>) -> IPAddress? {
        if packet.count == IPPacket.ipv4MinimumHeaderLength, packet[0] == 0x45, packet.u16(at: 2) == packet.count,
            packet[9] == transportProtocol, packet.u32(at: 16) == 0, InternetChecksum.of(packet) == 0
        {
            return .v4(packet.u32(at: 12))
        }
        if packet.count == IPPacket.ipv6HeaderLength, packet[0] >> 4 == 6, packet.u16(at: 4) == 0, packet[6] == transportProtocol,
            packet.u64(at: 24) == 0, packet.u64(at: 32) == 0
        {
            return .v6(packet.u64(at: 8), packet.u64(at: 16))
        }
        return nil
    }
}
