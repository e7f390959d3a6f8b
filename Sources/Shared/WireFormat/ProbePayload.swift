/// The generator's measurable payload, carried as ordinary UDP through the tunnel:
///
///     0  magic "UTP1"        4  stream id (u32)     8  sequence (u64)
///     16 send time, ns since the Unix epoch (u64)   24 total length (u16)  26 clock id (u16)
///     28 CRC-32 of every other byte (u32)           32 filler: byte i = (sequence + i) & 0xff
///
/// All fields are big-endian. The CRC covers the header and the filler, so any flipped bit, cut or
/// padding is seen as corruption. The clock id names the sender's wall clock (a hash of the host's
/// boot id, see `ClockIdentity`), so the sink can tell whether a one-way latency means anything;
/// 0 means unknown (older generators wrote 0 there, as a reserved field).
public struct ProbePayload: Sendable, Equatable {
    public static let magic: UInt32 = 0x5554_5031  // "UTP1"
    public static let headerLength = 32
    public static let maximumLength = 65507

    public var streamID: UInt32
    public var sequence: UInt64
    public var sendTimeNanoseconds: UInt64
    public var length: Int
    /// The sender's clock, `unknownClock` when it did not say.
    public var clockID: UInt16

    public static let unknownClock: UInt16 = 0

    public init(streamID: UInt32, sequence: UInt64, sendTimeNanoseconds: UInt64, length: Int, clockID: UInt16 = unknownClock) {
        self.streamID = streamID
        self.sequence = sequence
        self.sendTimeNanoseconds = sendTimeNanoseconds
        self.length = length
        self.clockID = clockID
    }

    public enum Decoded: Equatable, Sendable {
        case probe(ProbePayload)
        /// Starts with the magic but fails the integrity check.
        case corrupt
        /// Not a generator payload at all.
        case unsequenced
    }

    /// Writes the payload into the first `length` bytes of `buffer`.
    public func encode(into buffer: inout MutableSpan<UInt8>) {
        precondition(length >= Self.headerLength && length <= buffer.count && length <= Self.maximumLength)
        buffer.setU32(Self.magic, at: 0)
        buffer.setU32(streamID, at: 4)
        buffer.setU64(sequence, at: 8)
        buffer.setU64(sendTimeNanoseconds, at: 16)
        buffer.setU16(UInt16(length), at: 24)
        buffer.setU16(clockID, at: 26)
        Self.fillAndSeal(&buffer, from: Self.headerLength, length: length, sequence: sequence)
    }

    /// The filler from `start` (byte i = (sequence + i) & 0xff) and the CRC over the first `length`
    /// bytes: the tail of a payload's encoding, which `ProbeAnswer` shares.
    static func fillAndSeal(_ buffer: inout MutableSpan<UInt8>, from start: Int, length: Int, sequence: UInt64) {
        let first = UInt8(truncatingIfNeeded: sequence)
        for index in start..<length {
            buffer[index] = first &+ UInt8(truncatingIfNeeded: index)
        }
        buffer.setU32(checksum(buffer.span.extracting(0..<length)), at: 28)
    }

    /// Whether `bytes` starts with `magic` (nil: not this kind at all) and, if so, is whole: at
    /// least `headerLength`, its length field equal to its size, its CRC right.
    static func isIntact(_ bytes: Span<UInt8>, magic: UInt32, headerLength: Int) -> Bool? {
        guard bytes.count >= 4, bytes.u32(at: 0) == magic else { return nil }
        return bytes.count >= headerLength && Int(bytes.u16(at: 24)) == bytes.count && bytes.u32(at: 28) == checksum(bytes)
    }

    public static func decode(_ bytes: Span<UInt8>) -> Decoded {
        guard let intact = isIntact(bytes, magic: magic, headerLength: headerLength) else { return .unsequenced }
        guard intact else { return .corrupt }
        return .probe(
            ProbePayload(
                streamID: bytes.u32(at: 4), sequence: bytes.u64(at: 8),
                sendTimeNanoseconds: bytes.u64(at: 16), length: bytes.count, clockID: bytes.u16(at: 26)))
    }

    /// CRC-32 of everything except the CRC field itself (bytes 28..<32).
    static func checksum(_ bytes: Span<UInt8>) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes.extracting(0..<28))
        crc.update(bytes.extracting(32..<bytes.count))
        return crc.value
    }
}
