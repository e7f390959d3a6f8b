/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), slicing-by-8: eight bytes per step through
/// eight tables, about a quarter of the instructions of a byte at a time (the generator and the sink
/// checksum every probe, so it bounds how many probes a core can make or check).
public struct CRC32: Sendable {
    /// `tables[k * 256 + b]`: the CRC register after byte `b` followed by `k` zero bytes.
    /// Fixed-size, so that the compiler can see every index below is in range and check none.
    private static let tables: InlineArray<2048, UInt32> = {
        var tables = InlineArray<2048, UInt32>(repeating: 0)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
            tables[byte] = crc
        }
        for k in 1..<8 {
            for byte in 0..<256 {
                let previous = tables[(k - 1) * 256 + byte]
                tables[k * 256 + byte] = (previous >> 8) ^ tables[Int(previous & 0xff)]
            }
        }
        return tables
    }()

    private var state: UInt32 = 0xFFFF_FFFF

    public init() {}

    public mutating func update(_ bytes: Span<UInt8>) {
        var crc = state
        var index = 0
        let count = bytes.count
        let raw = bytes.bytes
        while index + 8 <= count {
            // One bounds check per 8 bytes; CRC-32 is reflected, so the bytes are read little-endian.
            let word = UInt64(littleEndian: raw.unsafeLoadUnaligned(fromByteOffset: index, as: UInt64.self))
            let low = crc ^ UInt32(truncatingIfNeeded: word)
            let high = UInt32(truncatingIfNeeded: word >> 32)
            crc =
                Self.tables[7 * 256 + Int(low & 0xff)] ^ Self.tables[6 * 256 + Int((low >> 8) & 0xff)]
                ^ Self.tables[5 * 256 + Int((low >> 16) & 0xff)] ^ Self.tables[4 * 256 + Int(low >> 24)]
                ^ Self.tables[3 * 256 + Int(high & 0xff)] ^ Self.tables[2 * 256 + Int((high >> 8) & 0xff)]
                ^ Self.tables[256 + Int((high >> 16) & 0xff)] ^ Self.tables[Int(high >> 24)]
            index += 8
        }
        while index < count {
            crc = Self.tables[Int((crc ^ UInt32(bytes[index])) & 0xff)] ^ (crc >> 8)
            index += 1
        }
        state = crc
    }

    public var value: UInt32 { state ^ 0xFFFF_FFFF }
}
