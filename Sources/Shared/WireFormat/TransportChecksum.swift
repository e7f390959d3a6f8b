/// TCP/UDP checksums over the IPv4 or IPv6 pseudo-header.
public enum TransportChecksum {
    /// Sum of the pseudo-header for a transport segment of `length` bytes.
    public static func pseudoHeader(version: Int, packet: Span<UInt8>, proto: UInt8, length: Int) -> InternetChecksum {
        var checksum = InternetChecksum()
        if version == 4 {
            checksum.add(packet.extracting(12..<20))
        } else {
            checksum.add(packet.extracting(8..<40))
        }
        checksum.add(UInt16(proto))
        checksum.add(UInt32(length))
        return checksum
    }

    /// Computes and stores the checksum of the packet occupying `packet` in `buffer`, whose transport
    /// segment starts `start` bytes in, with the checksum field `offset` bytes into the segment.
    public static func complete(
        _ buffer: inout MutableSpan<UInt8>, packet: Range<Int>, version: Int, proto: UInt8,
        start: Int, offset: Int
    ) {
        let field = packet.lowerBound + start + offset
        buffer.setU16(0, at: field)
        var value = compute(buffer.span.extracting(packet), version: version, proto: proto, start: start)
        if proto == IPProtocolNumber.udp, value == 0 { value = 0xffff }  // 0 means "no checksum" for UDP
        buffer.setU16(value, at: field)
    }

    /// The checksum of the transport segment at `start` in `packet` (the field included as it is).
    public static func compute(_ packet: Span<UInt8>, version: Int, proto: UInt8, start: Int) -> UInt16 {
        var checksum = pseudoHeader(version: version, packet: packet, proto: proto, length: packet.count - start)
        checksum.add(packet.extracting(start..<packet.count))
        return checksum.value
    }

    /// Finishes a CHECKSUM_PARTIAL packet from the kernel: the field at `start + offset` holds the
    /// pseudo-header sum, so summing from `start` to the end and complementing gives the checksum.
    public static func finishPartial(_ buffer: inout MutableSpan<UInt8>, packet: Range<Int>, start: Int, offset: Int) -> Bool {
        guard start >= 0, offset >= 0, start + offset + 2 <= packet.count else { return false }
        let value = InternetChecksum.of(buffer.span.extracting((packet.lowerBound + start)..<packet.upperBound))
        buffer.setU16(value, at: packet.lowerBound + start + offset)
        return true
    }
}
