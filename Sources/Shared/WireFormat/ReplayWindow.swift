/// Anti-replay for one sender's counters, as WireGuard and IPsec keep it: remembers the last
/// `size` counters and refuses any counter already seen or older than the window. `check` does not
/// change state; the caller `accept`s only after the packet authenticated.
public struct ReplayWindow: Sendable {
    public static var size: UInt64 { SlidingBitmap<64>.size }
    private var seen = SlidingBitmap<64>()

    public init() {}

    public func check(_ counter: UInt64) -> Bool {
        switch seen.position(of: counter) {
        case .ahead, .unmarked: true
        case .marked, .tooOld: false
        }
    }

    /// Records `counter`; call only after `check` passed and the packet authenticated.
    public mutating func accept(_ counter: UInt64) { seen.mark(counter) }
}
