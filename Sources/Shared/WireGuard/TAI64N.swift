import WireFormat

/// The handshake's timestamp (TAI64N, 12 bytes big-endian: 2^62 + 10 + Unix seconds, then
/// nanoseconds). A responder accepts an initiation only if its timestamp is newer than the last,
/// which is what makes a replayed initiation worthless.
public struct TAI64N: Comparable, Sendable {
    public let bytes: [UInt8]

    /// From Unix time in nanoseconds. The nanoseconds are rounded down to 2^24 ns (about 17 ms), as
    /// wireguard-go does, so the timestamp does not disclose the sender's fine clock.
    public init(unixNanoseconds: UInt64) {
        let seconds = 0x4000_0000_0000_000A + unixNanoseconds / 1_000_000_000
        let nanoseconds = UInt32(unixNanoseconds % 1_000_000_000) & ~UInt32(0xFF_FFFF)
        var out: [UInt8] = []
        out.reserveCapacity(12)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: seconds >> UInt64(shift))) }
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: nanoseconds >> UInt32(shift))) }
        bytes = out
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 12 else { return nil }
        self.bytes = bytes
    }

    /// Now, by the wall clock.
    public static func now() -> TAI64N { TAI64N(unixNanoseconds: Clock.wallNanoseconds()) }

    public static func < (lhs: TAI64N, rhs: TAI64N) -> Bool { lhs.bytes.lexicographicallyPrecedes(rhs.bytes) }
}
