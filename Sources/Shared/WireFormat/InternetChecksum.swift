/// The RFC 1071 ones'-complement checksum used by IPv4, UDP and TCP.
public struct InternetChecksum: Sendable {
    private var sum: UInt64 = 0

    public init() {}

    /// Adds bytes that start at an even offset of the checksummed data (all callers sum whole headers).
    public mutating func add(_ bytes: Span<UInt8>) { sum &+= UInt64(FastChecksum.sum(bytes)) }

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
    public var value: UInt16 { ~folded }

    /// The folded sum without the final complement: what a CHECKSUM_PARTIAL header field holds
    /// (the pseudo-header sum the kernel completes).
    public var folded: UInt16 {
        var value = sum
        while value >> 16 != 0 { value = (value & 0xffff) &+ (value >> 16) }
        return UInt16(value)
    }

    public static func of(_ bytes: Span<UInt8>) -> UInt16 {
        var checksum = InternetChecksum()
        checksum.add(bytes)
        return checksum.value
    }
}
