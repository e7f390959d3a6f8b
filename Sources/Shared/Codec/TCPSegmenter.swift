/// Splits a TCP super-packet that the kernel handed over with GSO (TUN TSO) into MSS-sized packets
/// with their own correct headers, as a NIC would: IPv4 total length, ID and header checksum, IPv6
/// payload length, TCP sequence number, flags (CWR on the first segment only, FIN and PSH on the last
/// only) and a full TCP checksum on every segment.
public enum TCPSegmenter {
    public static let finFlag: UInt8 = 0x01
    public static let synFlag: UInt8 = 0x02
    public static let rstFlag: UInt8 = 0x04
    public static let pshFlag: UInt8 = 0x08
    public static let ackFlag: UInt8 = 0x10
    public static let urgFlag: UInt8 = 0x20
    public static let eceFlag: UInt8 = 0x40
    public static let cwrFlag: UInt8 = 0x80

    /// Where the segments went: segment k occupies `stride * k + headroom ..< + length(k)`.
    public struct Layout: Equatable, Sendable {
        public var count: Int
        public var segmentLength: Int
        public var lastLength: Int
        /// Distance between segments: a full segment plus the encapsulation overhead.
        public var stride: Int

        public func length(of index: Int) -> Int { index == count - 1 ? lastLength : segmentLength }
    }

    /// Segments `packet` (IP header first) according to `header` into `output`, leaving `overhead`
    /// bytes per segment (`headroom` of them in front) for the encapsulation, so that encapsulated
    /// segments lie back to back as UDP GSO needs.
    public static func segment(
        _ packet: Span<UInt8>, header: VirtioNetHeader, into output: inout MutableSpan<UInt8>,
        headroom: Int = 0, overhead: Int = 0
    ) -> Result<Layout, DropReason> {
        guard header.gsoType == .tcpv4 || header.gsoType == .tcpv6, header.gsoSize > 0 else { return .failure(.badFragment) }
        guard packet.count >= 1 else { return .failure(.truncated) }
        let version = Int(packet[0] >> 4)
        guard (version == 4 && header.gsoType == .tcpv4) || (version == 6 && header.gsoType == .tcpv6) else {
            return .failure(.badVersion)
        }
        let tcpStart = Int(header.checksumStart)
        let minimumIP = version == 4 ? Int(packet[0] & 0x0f) * 4 : IPPacket.ipv6HeaderLength
        guard tcpStart >= minimumIP, tcpStart + IPPacket.tcpMinimumHeaderLength <= packet.count else {
            return .failure(.badTransportHeader)
        }
        let tcpHeaderLength = Int(packet[tcpStart + 12] >> 4) * 4
        let headersLength = tcpStart + tcpHeaderLength
        guard tcpHeaderLength >= IPPacket.tcpMinimumHeaderLength, headersLength <= packet.count else {
            return .failure(.badTransportHeader)
        }
        let mss = Int(header.gsoSize)
        let payloadLength = packet.count - headersLength
        let count = max(1, (payloadLength + mss - 1) / mss)
        let segmentLength = headersLength + mss
        let lastLength = headersLength + (payloadLength - (count - 1) * mss)
        let stride = segmentLength + overhead
        guard stride * (count - 1) + headroom + lastLength <= output.count else { return .failure(.oversize) }

        let firstSequence = packet.u32(at: tcpStart + 4)
        let flags = packet[tcpStart + 13]
        let firstID = version == 4 ? packet.u16(at: 4) : 0
        let ipHeaders = packet.extracting(0..<headersLength)
        for index in 0..<count {
            let base = stride * index + headroom
            let length = index == count - 1 ? lastLength : segmentLength
            let payloadStart = headersLength + index * mss
            output.copy(from: ipHeaders, to: base)
            output.copy(from: packet.extracting(payloadStart..<(payloadStart + length - headersLength)), to: base + headersLength)
            if version == 4 {
                output.setU16(UInt16(length), at: base + 2)
                output.setU16(firstID &+ UInt16(truncatingIfNeeded: index), at: base + 4)
                output.setU16(0, at: base + 10)
                output.setU16(InternetChecksum.of(output.span.extracting(base..<(base + minimumIP))), at: base + 10)
            } else {
                output.setU16(UInt16(length - IPPacket.ipv6HeaderLength), at: base + 4)
            }
            output.setU32(firstSequence &+ UInt32(truncatingIfNeeded: index * mss), at: base + tcpStart + 4)
            var segmentFlags = flags
            if index != count - 1 { segmentFlags &= ~(finFlag | pshFlag) }
            if index != 0 { segmentFlags &= ~cwrFlag }
            output[base + tcpStart + 13] = segmentFlags
            TransportChecksum.complete(&output, packet: base..<(base + length), version: version,
                                       proto: IPProtocolNumber.tcp, start: tcpStart, offset: 16)
        }
        return .success(Layout(count: count, segmentLength: segmentLength, lastLength: lastLength, stride: stride))
    }
}
