/// Per-stream bookkeeping of sequence numbers: unique, duplicate and reordered arrivals, and losses
/// (gaps below the highest sequence seen). Remembers the last `windowSize` sequence numbers in a bitmap,
/// so memory is fixed per stream however long it runs.
public struct SequenceWindow: Sendable {
    public static let windowSize: UInt64 = 1 << 17

    public private(set) var unique: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0
    public private(set) var reordered: UInt64 = 0
    /// Arrivals older than the window: counted as unique, since they can no longer be checked.
    public private(set) var tooOld: UInt64 = 0
    public private(set) var highest: UInt64?
    private var bits: [UInt64]

    public init() { bits = Array(repeating: 0, count: Int(Self.windowSize / 64)) }

    /// Sequence numbers start at 0, so everything up to the highest seen and not received is lost.
    public var lost: UInt64 {
        guard let highest else { return 0 }
        let expected = highest &+ 1
        return expected > unique ? expected - unique : 0
    }

    public enum Arrival: Equatable, Sendable { case inOrder, reordered, duplicate, tooOld }

    @discardableResult
    public mutating func record(_ sequence: UInt64) -> Arrival {
        guard let highest else {
            self.highest = sequence
            set(sequence)
            unique += 1
            return .inOrder
        }
        if sequence > highest {
            // Clear the bits of sequence numbers the window slides past (they are gaps so far).
            let advance = sequence - highest
            if advance >= Self.windowSize {
                for index in bits.indices { bits[index] = 0 }
            } else {
                var value = highest + 1
                while value < sequence { clear(value); value += 1 }
            }
            self.highest = sequence
            set(sequence)
            unique += 1
            return .inOrder
        }
        if highest - sequence >= Self.windowSize {
            tooOld += 1
            unique += 1
            reordered += 1
            return .tooOld
        }
        if isSet(sequence) {
            duplicates += 1
            return .duplicate
        }
        set(sequence)
        unique += 1
        reordered += 1
        return .reordered
    }

    private func position(_ sequence: UInt64) -> (Int, UInt64) {
        let bit = sequence % Self.windowSize
        return (Int(bit / 64), 1 << (bit % 64))
    }

    private mutating func set(_ sequence: UInt64) {
        let (word, mask) = position(sequence)
        bits[word] |= mask
    }

    private mutating func clear(_ sequence: UInt64) {
        let (word, mask) = position(sequence)
        bits[word] &= ~mask
    }

    private func isSet(_ sequence: UInt64) -> Bool {
        let (word, mask) = position(sequence)
        return bits[word] & mask != 0
    }
}
