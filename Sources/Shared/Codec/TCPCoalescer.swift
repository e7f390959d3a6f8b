/// Merges consecutive segments of one TCP flow into a super-packet the kernel accepts on an
/// IFF_VNET_HDR TUN device with a GSO header (userspace GRO), so a burst of N segments costs one
/// write instead of N. Only exact continuations join: same addresses, ports, IP TOS/TTL, ACK number,
/// window and TCP options, the next sequence number, ACK (and PSH on the last) as the only flags, and
/// no segment larger than the first. A shorter segment or PSH closes the group.
public struct TCPCoalescer: Sendable {
    public static let maximumLength = 65535

    public private(set) var count = 0
    public private(set) var length = 0
    private var version = 4
    private var tcpStart = 0
    private var headersLength = 0
    private var segmentSize = 0
    private var nextSequence: UInt32 = 0
    private var closed = false

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Whether `packet` may start or join a group.
    public static func isCandidate(_ packet: Span<UInt8>, info: IPPacketInfo) -> Bool {
        guard info.transportProtocol == IPProtocolNumber.tcp, !info.isFragment else { return false }
        guard (info.version == 4 && info.headerLength == IPPacket.ipv4MinimumHeaderLength) || info.version == 6 else { return false }
        let tcpStart = info.headerLength
        let flags = packet[tcpStart + 13]
        let allowed = TCPSegmenter.ackFlag | TCPSegmenter.pshFlag
        guard flags & TCPSegmenter.ackFlag != 0, flags & ~allowed == 0 else { return false }
        return packet.count > tcpStart + Int(packet[tcpStart + 12] >> 4) * 4
    }

    /// Starts a group with `packet`, copied to the start of `buffer`.
    public mutating func start(_ packet: Span<UInt8>, info: IPPacketInfo, buffer: inout MutableSpan<UInt8>) {
        precondition(isEmpty && packet.count <= buffer.count)
        buffer.copy(from: packet, to: 0)
        version = info.version
        tcpStart = info.headerLength
        headersLength = tcpStart + Int(packet[tcpStart + 12] >> 4) * 4
        segmentSize = packet.count - headersLength
        nextSequence = packet.u32(at: tcpStart + 4) &+ UInt32(segmentSize)
        length = packet.count
        count = 1
        closed = packet[tcpStart + 13] & TCPSegmenter.pshFlag != 0
    }

    /// Appends `packet` if it continues the group; false means flush the group first.
    public mutating func append(_ packet: Span<UInt8>, info: IPPacketInfo, buffer: inout MutableSpan<UInt8>) -> Bool {
        guard !closed, count > 0, info.transportProtocol == IPProtocolNumber.tcp, !info.isFragment,
              info.version == version, info.headerLength == tcpStart else { return false }
        let packetHeaders = tcpStart + Int(packet[tcpStart + 12] >> 4) * 4
        let payload = packet.count - packetHeaders
        guard packetHeaders == headersLength, payload > 0, payload <= segmentSize,
              length + payload <= Self.maximumLength + (version == 6 ? IPPacket.ipv6HeaderLength : 0),
              length + payload <= buffer.count,
              packet.u32(at: tcpStart + 4) == nextSequence,
              sameFlow(packet, buffer.span) else { return false }
        buffer.copy(from: packet.extracting(headersLength..<packet.count), to: length)
        length += payload
        nextSequence &+= UInt32(payload)
        count += 1
        if packet[tcpStart + 13] & TCPSegmenter.pshFlag != 0 {
            buffer[tcpStart + 13] |= TCPSegmenter.pshFlag
            closed = true
        }
        if payload < segmentSize { closed = true }
        return true
    }

    /// Headers that must match between the group's first packet and a continuation.
    private func sameFlow(_ packet: Span<UInt8>, _ first: Span<UInt8>) -> Bool {
        func equal(_ range: Range<Int>) -> Bool {
            for index in range where packet[index] != first[index] { return false }
            return true
        }
        let ipSame = version == 4
            ? packet[1] == first[1] && packet[6] == first[6] && packet[8] == first[8] && packet[9] == first[9] && equal(12..<20)
            : equal(0..<4) && packet[6] == first[6] && packet[7] == first[7] && equal(8..<40)
        // Ports, then ACK number, data offset, flags (ACK only besides PSH), window, and options.
        return ipSame && equal(tcpStart..<(tcpStart + 4)) && equal((tcpStart + 8)..<(tcpStart + 13))
            && (packet[tcpStart + 13] & ~TCPSegmenter.pshFlag) == (first[tcpStart + 13] & ~TCPSegmenter.pshFlag)
            && equal((tcpStart + 14)..<(tcpStart + 16)) && equal((tcpStart + 20)..<headersLength)
    }

    /// Finishes the group in `buffer` (lengths, IPv4 checksum, partial TCP checksum) and returns its
    /// length and the header to write it with. A group of one is left exactly as it arrived.
    public mutating func finish(buffer: inout MutableSpan<UInt8>) -> (length: Int, header: VirtioNetHeader) {
        defer { count = 0; length = 0; closed = false }
        guard count > 1 else { return (length, .plain) }
        if version == 4 {
            buffer.setU16(UInt16(length), at: 2)
            buffer.setU16(0, at: 10)
            buffer.setU16(InternetChecksum.of(buffer.span.extracting(0..<tcpStart)), at: 10)
        } else {
            buffer.setU16(UInt16(length - IPPacket.ipv6HeaderLength), at: 4)
        }
        let pseudo = TransportChecksum.pseudoHeader(version: version, packet: buffer.span, proto: IPProtocolNumber.tcp,
                                                    length: length - tcpStart).folded
        buffer.setU16(pseudo, at: tcpStart + 16)
        var header = VirtioNetHeader()
        header.flags = VirtioNetHeader.needsChecksum
        header.gsoTypeRaw = version == 4 ? VirtioNetHeader.GSOType.tcpv4.rawValue : VirtioNetHeader.GSOType.tcpv6.rawValue
        header.headerLength = UInt16(headersLength)
        header.gsoSize = UInt16(segmentSize)
        header.checksumStart = UInt16(tcpStart)
        header.checksumOffset = 16
        return (length, header)
    }
}
