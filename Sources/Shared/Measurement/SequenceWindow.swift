import WireFormat

/// Per-stream bookkeeping of sequence numbers: unique, duplicate and reordered arrivals, and losses
/// (gaps below the highest sequence seen). Remembers the last `windowSize` sequence numbers in a bitmap,
/// so memory is fixed per stream however long it runs.
public struct SequenceWindow: Sendable {
    public static var windowSize: UInt64 { SlidingBitmap<2048>.size }

    public private(set) var unique: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0
    public private(set) var reordered: UInt64 = 0
    /// Arrivals older than the window: counted as unique, since they can no longer be checked.
    public private(set) var tooOld: UInt64 = 0
    private var seen = SlidingBitmap<2048>()

    public init() {}

    public var highest: UInt64? { seen.highest }

    /// Sequence numbers start at 0, so everything up to the highest seen and not received is lost.
    public var lost: UInt64 {
        guard let highest else { return 0 }
        let expected = highest &+ 1
        return expected > unique ? expected - unique : 0
    }

    public enum Arrival: Equatable, Sendable { case inOrder, reordered, duplicate, tooOld }

    @discardableResult
    public mutating func record(_ sequence: UInt64) -> Arrival {
        switch seen.position(of: sequence) {
        case .ahead:
            seen.mark(sequence)  // numbers the window slides past stay unmarked: gaps so far
            unique += 1
            return .inOrder
        case .marked:
            duplicates += 1
            return .duplicate
        case .unmarked:
            seen.mark(sequence)
            unique += 1
            reordered += 1
            return .reordered
        case .tooOld:
            tooOld += 1
            unique += 1
            reordered += 1
            return .tooOld
        }
    }
}
