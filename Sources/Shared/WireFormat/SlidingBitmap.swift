/// The last `words * 64` numbers of a mostly increasing sequence, as a bitmap that slides forward
/// with the highest number marked. Stored inline, so it never allocates. Shared by the sink's loss and
/// duplicate accounting (`SequenceWindow`) and the anti-replay check (`ReplayWindow`); they differ only
/// in what they make of a number that is too old to tell.
public struct SlidingBitmap<let words: Int>: Sendable {
    public static var size: UInt64 { UInt64(words) * 64 }
    public private(set) var highest: UInt64?
    private var bits = InlineArray<words, UInt64>(repeating: 0)

    public init() {}

    public enum Position: Equatable, Sendable {
        /// Above the highest marked (or nothing marked yet).
        case ahead
        /// Inside the window and already marked.
        case marked
        /// Inside the window, not marked.
        case unmarked
        /// Below the window: no longer known.
        case tooOld
    }

    public func position(of number: UInt64) -> Position {
        guard let highest, number <= highest else { return .ahead }
        if highest - number >= Self.size { return .tooOld }
        return isSet(number) ? .marked : .unmarked
    }

    /// Marks `number`, sliding the window forward (and forgetting what it passes) when it is ahead.
    public mutating func mark(_ number: UInt64) {
        if let previous = highest, number > previous {
            if number - previous >= Self.size {
                for index in bits.indices { bits[index] = 0 }
            } else {
                clear(from: previous + 1, count: number - previous - 1)
            }
        }
        if highest.map({ number > $0 }) ?? true { highest = number }
        set(number)
    }

    private func slot(_ number: UInt64) -> (word: Int, mask: UInt64) {
        let bit = number % Self.size
        return (Int(bit / 64), 1 << (bit % 64))
    }
    private mutating func set(_ number: UInt64) { let (word, mask) = slot(number); bits[word] |= mask }

    /// Clears `count` numbers from `start` on (fewer than `size`), a whole word at a time where it can:
    /// at most `words + 1` word writes, whatever the jump. Returns how many it made.
    @discardableResult
    mutating func clear(from start: UInt64, count: UInt64) -> Int {
        var bit = Int(start % Self.size), remaining = count, writes = 0
        while remaining > 0 {
            let offset = bit % 64
            let run = min(UInt64(64 - offset), remaining)
            let mask: UInt64 = run == 64 ? ~0 : ((1 << run) - 1) << offset
            bits[bit / 64] &= ~mask
            writes += 1
            remaining -= run
            bit = (bit + Int(run)) % (words * 64)
        }
        return writes
    }
    private func isSet(_ number: UInt64) -> Bool { let (word, mask) = slot(number); return bits[word] & mask != 0 }
}
