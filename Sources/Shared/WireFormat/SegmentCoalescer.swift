/// Merges consecutive packets of one TCP or UDP flow into a super-packet the kernel accepts on an
/// IFF_VNET_HDR TUN device with a GSO header (userspace GRO), so a run of N packets costs one write
/// and one trip through the forwarding path instead of N.
///
/// It keeps only the group's headers (the first packet's, rewritten by `finish`); each member's
/// payload stays where it lies and the writer gathers them (`packet[headersLength...]` of every
/// packet started or appended), so no payload byte is copied.
///
/// Only exact continuations join: same addresses, IP TOS/TTL (traffic class, flow label and hop
/// limit for IPv6) and ports; no packet larger than the first; a shorter packet closes the group.
/// TCP also needs the next sequence number and the same ACK number, window and options, with ACK (and
/// PSH, which closes the group) as the only flags. UDP groups are limited to `maximumUDPSegments`.
///
/// A group is written for the kernel to checksum afresh, so every member's own transport checksum
/// is verified first (with the pseudo-header): a packet whose checksum fails, damaged after its
/// sender summed it, would otherwise leave with a valid one, and the receiver's end-to-end check
/// would never see the damage. Such a packet joins no group; it is written as it came, for the
/// receiver to drop. So is an IPv4 UDP datagram without a checksum (0). The first packet is verified
/// only when a second would join it: a group of one is written as it came anyway, so packets that
/// coalesce with nothing (interleaved flows, one per batch) are not summed at all.
public struct SegmentCoalescer: Sendable {
    public static let maximumLength = 65535
    /// The kernel's UDP GSO limit (UDP_MAX_SEGMENTS in older kernels).
    public static let maximumUDPSegments = 64
    /// Most packets in a TCP group: 64 KiB of 256-byte segments (a gathered write takes one iovec
    /// per packet, and the kernel takes at most 1,024).
    public static let maximumSegments = 256
    /// The longest headers a group may have: IPv6 and TCP with the most options.
    public static let maximumHeadersLength = IPPacket.ipv6HeaderLength + 60

    public private(set) var count = 0
    public private(set) var length = 0
    /// Where every member packet's payload starts (the group's headers are this long).
    public private(set) var headersLength = 0
    private var isTCP = true
    private var version = 4
    private var transportStart = 0
    private var segmentSize = 0
    private var nextSequence: UInt32 = 0
    private var closed = false
    /// Whether the first packet's checksum has been verified (when a second packet joined it).
    private var firstVerified = false
    /// Whether UDP flows may be coalesced (the device must accept UDP_L4 GSO: TUN_F_USO).
    public let coalescesUDP: Bool

    public init(coalescesUDP: Bool = false) { self.coalescesUDP = coalescesUDP }

    public var isEmpty: Bool { count == 0 }

    /// Whether `packet` may start or join a group.
    public func isCandidate(_ packet: Span<UInt8>, info: IPPacketInfo) -> Bool {
        guard !info.isFragment, (info.version == 4 && info.headerLength == IPPacket.ipv4MinimumHeaderLength) || info.version == 6
        else { return false }
        let start = info.headerLength
        switch info.transportProtocol {
        case IPProtocolNumber.tcp:
            let flags = packet[start + 13]
            guard flags & TCPFlag.ack != 0, flags & ~(TCPFlag.ack | TCPFlag.psh) == 0 else { return false }
            let headers = start + Int(packet[start + 12] >> 4) * 4
            return packet.count > headers && headers <= Self.maximumHeadersLength
        case IPProtocolNumber.udp:
            return coalescesUDP && packet.count > start + IPPacket.udpHeaderLength
                && start + IPPacket.udpHeaderLength <= Self.maximumHeadersLength
        default:
            return false
        }
    }

    /// Whether the TCP or UDP checksum of the packet whose headers are `headers[0..<headersLength]`
    /// and whose payload is `payload` (the rest, even for the first member where it lies apart) is
    /// right. A UDP checksum of 0 (none, IPv4 only) is not.
    static func checksumIsValid(
        headers: Span<UInt8>, headersLength: Int, payload: Span<UInt8>, version: Int, isTCP: Bool,
        start: Int
    ) -> Bool {
        if !isTCP, headers.u16(at: start + 6) == 0 { return false }
        var checksum = TransportChecksum.pseudoHeader(
            version: version, packet: headers,
            proto: isTCP ? IPProtocolNumber.tcp : IPProtocolNumber.udp,
            length: headersLength - start + payload.count)
        checksum.add(headers.extracting(start..<headersLength))
        checksum.add(payload)  // at an even offset: transport headers are 8 bytes or a multiple of 4
        return checksum.value == 0
    }

    /// Starts a group with `packet` (a candidate), its headers copied to the start of `headers`.
    public mutating func start(_ packet: Span<UInt8>, info: IPPacketInfo, headers: inout MutableSpan<UInt8>) {
        precondition(isEmpty)
        isTCP = info.transportProtocol == IPProtocolNumber.tcp
        version = info.version
        transportStart = info.headerLength
        headersLength = transportStart + transportHeaderLength(packet)
        precondition(headersLength <= headers.count)
        headers.copy(from: packet.extracting(0..<headersLength), to: 0)
        segmentSize = packet.count - headersLength
        nextSequence = isTCP ? packet.u32(at: transportStart + 4) &+ UInt32(segmentSize) : 0
        length = packet.count
        count = 1
        closed = isTCP && packet[transportStart + 13] & TCPFlag.psh != 0
        firstVerified = false
    }

    private func transportHeaderLength(_ packet: Span<UInt8>) -> Int {
        isTCP ? Int(packet[transportStart + 12] >> 4) * 4 : IPPacket.udpHeaderLength
    }

    /// Takes `packet` into the group if it continues it (its payload, `packet[headersLength...]`,
    /// is then the group's next); false means flush the group first. `headers` are the group's;
    /// `firstPayload` is its first packet's payload (whose checksum is verified with the second's).
    public mutating func append(
        _ packet: Span<UInt8>, info: IPPacketInfo, headers: inout MutableSpan<UInt8>,
        firstPayload: Span<UInt8>
    ) -> Bool {
        guard !closed, count > 0, !info.isFragment, info.version == version, info.headerLength == transportStart,
            info.transportProtocol == (isTCP ? IPProtocolNumber.tcp : IPProtocolNumber.udp),
            count < (isTCP ? Self.maximumSegments : Self.maximumUDPSegments)
        else { return false }
        let packetHeaders = transportStart + transportHeaderLength(packet)
        let payload = packet.count - packetHeaders
        guard packetHeaders == headersLength, payload > 0, payload <= segmentSize,
            length + payload <= Self.maximumLength + (version == 6 ? IPPacket.ipv6HeaderLength : 0),
            !isTCP || packet.u32(at: transportStart + 4) == nextSequence,
            sameFlow(packet, headers.span),
            Self.checksumIsValid(
                headers: packet, headersLength: headersLength, payload: packet.extracting(headersLength..<packet.count),
                version: version, isTCP: isTCP, start: transportStart)
        else { return false }
        if !firstVerified {
            guard
                Self.checksumIsValid(
                    headers: headers.span, headersLength: headersLength, payload: firstPayload,
                    version: version, isTCP: isTCP, start: transportStart)
            else { return false }
            firstVerified = true
        }
        length += payload
        count += 1
        if isTCP {
            nextSequence &+= UInt32(payload)
            if packet[transportStart + 13] & TCPFlag.psh != 0 {
                headers[transportStart + 13] |= TCPFlag.psh
                closed = true
            }
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
        let ipSame =
            version == 4
            ? packet[1] == first[1] && packet[6] == first[6] && packet[8] == first[8] && equal(12..<20)
            : equal(0..<4) && packet[7] == first[7] && equal(8..<40)
        let start = transportStart
        guard ipSame, equal(start..<(start + 4)) else { return false }  // ports
        guard isTCP else { return true }
        // ACK number, data offset, flags (besides PSH), window and options.
        return equal((start + 8)..<(start + 13))
            && (packet[start + 13] & ~TCPFlag.psh) == (first[start + 13] & ~TCPFlag.psh)
            && equal((start + 14)..<(start + 16)) && equal((start + 20)..<headersLength)
    }

    /// Finishes the group's `headers` (lengths, IPv4 checksum, partial transport checksum) and returns
    /// the group's length and the virtio-net header to write it with. A group of one is left exactly
    /// as it arrived.
    public mutating func finish(headers buffer: inout MutableSpan<UInt8>) -> (length: Int, header: VirtioNetHeader) {
        defer { count = 0; length = 0; closed = false }
        guard count > 1 else { return (length, .plain) }
        if version == 4 {
            buffer.setU16(UInt16(length), at: 2)
            buffer.setU16(0, at: 10)
            buffer.setU16(InternetChecksum.of(buffer.span.extracting(0..<transportStart)), at: 10)
        } else {
            buffer.setU16(UInt16(length - IPPacket.ipv6HeaderLength), at: 4)
        }
        let proto = isTCP ? IPProtocolNumber.tcp : IPProtocolNumber.udp
        let checksumOffset = isTCP ? 16 : 6
        if !isTCP { buffer.setU16(UInt16(length - transportStart), at: transportStart + 4) }
        let pseudo = TransportChecksum.pseudoHeader(
            version: version, packet: buffer.span, proto: proto,
            length: length - transportStart
        ).folded
        buffer.setU16(pseudo, at: transportStart + checksumOffset)
        var header = VirtioNetHeader()
        header.flags = VirtioNetHeader.needsChecksum
        let type: VirtioNetHeader.GSOType = isTCP ? (version == 4 ? .tcpv4 : .tcpv6) : .udpL4
        header.gsoTypeRaw = type.rawValue
        header.headerLength = UInt16(headersLength)
        header.gsoSize = UInt16(segmentSize)
        header.checksumStart = UInt16(transportStart)
        header.checksumOffset = UInt16(checksumOffset)
        return (length, header)
    }
}
