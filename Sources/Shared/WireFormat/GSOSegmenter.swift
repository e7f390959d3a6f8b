/// TCP header flag bits.
public enum TCPFlag {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let psh: UInt8 = 0x08
    public static let ack: UInt8 = 0x10
    public static let urg: UInt8 = 0x20
    public static let ece: UInt8 = 0x40
    public static let cwr: UInt8 = 0x80
}

/// Splits a super-packet the kernel handed over with GSO (TUN TSO for TCP, USO for UDP) into
/// packets of at most `gsoSize` payload bytes with their own correct headers, as a NIC would: IPv4
/// total length, ID and header checksum, IPv6 payload length, then for TCP the sequence number and
/// flags (CWR on the first segment only, FIN and PSH on the last only), for UDP the length, and a
/// full transport checksum on every segment.
public enum GSOSegmenter {
    /// Where the segments went: segment k occupies `stride * k + headroom ..< + length(k)`.
    public struct Layout: Equatable, Sendable {
        public var count: Int
        public var segmentLength: Int
        public var lastLength: Int
        /// Distance between segments: a full segment plus the framing overhead.
        public var stride: Int

        public func length(of index: Int) -> Int { index == count - 1 ? lastLength : segmentLength }
    }

    /// Segments `packet` (IP header first) according to `header` into `output`, leaving `overhead`
    /// bytes per segment (`headroom` of them in front) for the framing, so that encapsulated
    /// segments lie back to back as UDP GSO needs.
    public static func segment(
        _ packet: Span<UInt8>, header: VirtioNetHeader, into output: inout MutableSpan<UInt8>,
        headroom: Int = 0, overhead: Int = 0
    ) -> Result<Layout, DropReason> {
        let isTCP: Bool
        switch header.gsoType {
        case .tcpv4?, .tcpv6?: isTCP = true
        case .udpL4?: isTCP = false
        default: return .failure(.unsupportedOffload)
        }
        guard header.gsoSize > 0, packet.count >= 1 else { return .failure(.truncated) }
        let version = Int(packet[0] >> 4)
        let expectedVersion = header.gsoType == .tcpv4 ? 4 : header.gsoType == .tcpv6 ? 6 : version
        guard version == expectedVersion, version == 4 || version == 6 else { return .failure(.badVersion) }
        let start = Int(header.checksumStart)
        let minimumIP = version == 4 ? Int(packet[0] & 0x0f) * 4 : IPPacket.ipv6HeaderLength
        // The pipeline validates packets before cutting them, but the segmenter does not rely on it.
        guard minimumIP >= IPPacket.ipv4MinimumHeaderLength, minimumIP <= packet.count else { return .failure(.badHeaderLength) }
        let minimumTransport = isTCP ? IPPacket.tcpMinimumHeaderLength : IPPacket.udpHeaderLength
        guard start >= minimumIP, start + minimumTransport <= packet.count else { return .failure(.badTransportHeader) }
        let transportHeaderLength = isTCP ? Int(packet[start + 12] >> 4) * 4 : IPPacket.udpHeaderLength
        let headersLength = start + transportHeaderLength
        guard transportHeaderLength >= minimumTransport, headersLength <= packet.count else {
            return .failure(.badTransportHeader)
        }
        let size = Int(header.gsoSize)
        let payloadLength = packet.count - headersLength
        let count = max(1, (payloadLength + size - 1) / size)
        let segmentLength = headersLength + size
        let lastLength = headersLength + (payloadLength - (count - 1) * size)
        let stride = segmentLength + overhead
        guard stride * (count - 1) + headroom + lastLength <= output.count else { return .failure(.oversize) }

        let firstSequence = isTCP ? packet.u32(at: start + 4) : 0
        let flags = isTCP ? packet[start + 13] : 0
        let firstID = version == 4 ? packet.u16(at: 4) : 0
        let headers = packet.extracting(0..<headersLength)
        for index in 0..<count {
            let base = stride * index + headroom
            let length = index == count - 1 ? lastLength : segmentLength
            let payloadStart = headersLength + index * size
            output.copy(from: headers, to: base)
            output.copy(from: packet.extracting(payloadStart..<(payloadStart + length - headersLength)), to: base + headersLength)
            if version == 4 {
                output.setU16(UInt16(length), at: base + 2)
                output.setU16(firstID &+ UInt16(truncatingIfNeeded: index), at: base + 4)
                output.setU16(0, at: base + 10)
                output.setU16(InternetChecksum.of(output.span.extracting(base..<(base + minimumIP))), at: base + 10)
            } else {
                output.setU16(UInt16(length - IPPacket.ipv6HeaderLength), at: base + 4)
            }
            if isTCP {
                output.setU32(firstSequence &+ UInt32(truncatingIfNeeded: index * size), at: base + start + 4)
                var segmentFlags = flags
                if index != count - 1 { segmentFlags &= ~(TCPFlag.fin | TCPFlag.psh) }
                if index != 0 { segmentFlags &= ~TCPFlag.cwr }
                output[base + start + 13] = segmentFlags
            } else {
                output.setU16(UInt16(length - start), at: base + start + 4)
            }
            TransportChecksum.complete(
                &output, packet: base..<(base + length), version: version,
                proto: isTCP ? IPProtocolNumber.tcp : IPProtocolNumber.udp,
                start: start, offset: isTCP ? 16 : 6)
        }
        return .success(Layout(count: count, segmentLength: segmentLength, lastLength: lastLength, stride: stride))
    }
}
