/// The RFC 1071 ones'-complement checksum used by IPv4, UDP and TCP.
public struct InternetChecksum: Sendable {
    private var sum: UInt64 = 0

    public init() {}

    /// Adds bytes that start at an even offset of the checksummed data (all callers sum whole headers).
    public mutating func add(_ bytes: Span<UInt8>) {
        var index = 0
        let count = bytes.count
        while index + 1 < count {
            sum &+= UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
            index += 2
        }
        if index < count { sum &+= UInt64(bytes[index]) << 8 }
    }

    public mutating func add(_ word: UInt16) { sum &+= UInt64(word) }
    public mutating func add(_ word: UInt32) { sum &+= UInt64(word >> 16) &+ UInt64(word & 0xffff) }

    public mutating func add(_ address: IPAddress) {
        switch address {
        case let .v4(a):
            add(a)
        case let .v6(high, low):
            add(UInt32(truncatingIfNeeded: high >> 32)); add(UInt32(truncatingIfNeeded: high))
            add(UInt32(truncatingIfNeeded: low >> 32)); add(UInt32(truncatingIfNeeded: low))
        }
    }

    /// The folded, complemented 16-bit value to store in a header. Summing data that already holds a
    /// correct checksum gives 0.
    public var value: UInt16 {
        var folded = sum
        while folded >> 16 != 0 { folded = (folded & 0xffff) &+ (folded >> 16) }
        return ~UInt16(folded)
    }

    public static func of(_ bytes: Span<UInt8>) -> UInt16 {
        var checksum = InternetChecksum()
        checksum.add(bytes)
        return checksum.value
    }
}
