/// The 10-byte header that precedes every packet on a TUN device opened with IFF_VNET_HDR
/// (struct virtio_net_hdr, little-endian). It is how the kernel hands over, and accepts, TCP
/// super-packets of up to 64 KiB (GSO) and packets whose checksum is left to complete (NEEDS_CSUM).
public struct VirtioNetHeader: Equatable, Sendable {
    public static let length = 10
    public static let needsChecksum: UInt8 = 1

    public enum GSOType: UInt8, Sendable {
        case none = 0
        case tcpv4 = 1
        case udp = 3
        case tcpv6 = 4
        case udpL4 = 5
    }

    public var flags: UInt8 = 0
    /// Raw gso_type including the ECN bit (0x80).
    public var gsoTypeRaw: UInt8 = 0
    /// Bytes of IP + TCP headers in a GSO packet.
    public var headerLength: UInt16 = 0
    /// Payload bytes per segment (the MSS) in a GSO packet.
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0

    public init() {}

    public static let plain = VirtioNetHeader()

    public var gsoType: GSOType? { GSOType(rawValue: gsoTypeRaw & 0x7f) }
    public var isGSO: Bool { gsoTypeRaw & 0x7f != 0 }
    public var needsChecksumCompletion: Bool { flags & Self.needsChecksum != 0 }

    public init?(_ bytes: Span<UInt8>) {
        guard bytes.count >= Self.length else { return nil }
        func le16(_ offset: Int) -> UInt16 { UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8 }
        flags = bytes[0]
        gsoTypeRaw = bytes[1]
        headerLength = le16(2)
        gsoSize = le16(4)
        checksumStart = le16(6)
        checksumOffset = le16(8)
    }

    public func encode(into bytes: inout MutableSpan<UInt8>) {
        precondition(bytes.count >= Self.length)
        func le16(_ value: UInt16, _ offset: Int) {
            bytes[offset] = UInt8(truncatingIfNeeded: value)
            bytes[offset + 1] = UInt8(value >> 8)
        }
        bytes[0] = flags
        bytes[1] = gsoTypeRaw
        le16(headerLength, 2)
        le16(gsoSize, 4)
        le16(checksumStart, 6)
        le16(checksumOffset, 8)
    }
}
