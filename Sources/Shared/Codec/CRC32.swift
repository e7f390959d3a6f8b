/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven.
public struct CRC32: Sendable {
    private static let table: [UInt32] = (0..<256).map { byte in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        return crc
    }

    private var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    public mutating func update(_ bytes: Span<UInt8>) {
        let table = Self.table
        var crc = state
        for index in bytes.indices {
            crc = table[Int((crc ^ UInt32(bytes[index])) & 0xff)] ^ (crc >> 8)
        }
        state = crc
    }

    public var value: UInt32 { state ^ 0xFFFF_FFFF }
}
