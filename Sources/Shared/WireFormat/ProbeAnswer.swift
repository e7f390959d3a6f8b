/// A reflector's answer to one `ProbePayload` (udptun-sink --reflect), TWAMP-light style: it echoes
/// the probe's stream, sequence and send time, so the sender measures the round trip on its own clock,
/// and carries the reflector's counts for that sender and stream, so the sender can tell loss on the
/// way out (probes sent but not received) from answers refused by the reflector's rate limit and loss
/// on the way back (answers sent but not received):
///
///     0  magic "UTR1"        4  stream id (u32)     8  probe's sequence (u64)
///     16 probe's send time, ns since the Unix epoch (u64)   24 total length (u16)  26 reserved, 0 (u16)
///     28 CRC-32 of every other byte (u32)           32 probes the reflector received (u64)
///     40 answer sequence: answers sent before this one (u64)   48 filler: byte i = (sequence + i) & 0xff
///
/// All fields are big-endian, the CRC as in `ProbePayload`. The magic differs from the probe's, so an
/// answer is never taken for a probe (a reflector never answers an answer: no loops between two).
public struct ProbeAnswer: Sendable, Equatable {
    public static let magic: UInt32 = 0x5554_5231  // "UTR1"
    public static let headerLength = 48

    public var streamID: UInt32
    public var sequence: UInt64
    public var sendTimeNanoseconds: UInt64
    /// Probes of this stream from this sender the reflector received, this one included.
    public var reflectorReceived: UInt64
    /// 0 for the reflector's first answer to this sender and stream, then one more per answer.
    public var answerSequence: UInt64
    public var length: Int

    public init(
        streamID: UInt32, sequence: UInt64, sendTimeNanoseconds: UInt64, reflectorReceived: UInt64, answerSequence: UInt64,
        length: Int
    ) {
        self.streamID = streamID
        self.sequence = sequence
        self.sendTimeNanoseconds = sendTimeNanoseconds
        self.reflectorReceived = reflectorReceived
        self.answerSequence = answerSequence
        self.length = length
    }

    /// An answer is as long as its probe (the path sees the same sizes both ways), and never shorter
    /// than its header: at most 16 bytes more than a probe of the shortest kind.
    public static func length(answering probeLength: Int) -> Int { max(probeLength, headerLength) }

    public enum Decoded: Equatable, Sendable {
        case answer(ProbeAnswer)
        /// Starts with the magic but fails the integrity check.
        case corrupt
        /// Not an answer at all.
        case other
    }

    /// Writes the answer into the first `length` bytes of `buffer`.
    public func encode(into buffer: inout MutableSpan<UInt8>) {
        precondition(length >= Self.headerLength && length <= buffer.count && length <= ProbePayload.maximumLength)
        buffer.setU32(Self.magic, at: 0)
        buffer.setU32(streamID, at: 4)
        buffer.setU64(sequence, at: 8)
        buffer.setU64(sendTimeNanoseconds, at: 16)
        buffer.setU16(UInt16(length), at: 24)
        buffer.setU16(0, at: 26)
        buffer.setU64(reflectorReceived, at: 32)
        buffer.setU64(answerSequence, at: 40)
        ProbePayload.fillAndSeal(&buffer, from: Self.headerLength, length: length, sequence: sequence)
    }

    public static func decode(_ bytes: Span<UInt8>) -> Decoded {
        guard let intact = ProbePayload.isIntact(bytes, magic: magic, headerLength: headerLength) else { return .other }
        guard intact else { return .corrupt }
        return .answer(
            ProbeAnswer(
                streamID: bytes.u32(at: 4), sequence: bytes.u64(at: 8), sendTimeNanoseconds: bytes.u64(at: 16),
                reflectorReceived: bytes.u64(at: 32), answerSequence: bytes.u64(at: 40), length: bytes.count))
    }
}
