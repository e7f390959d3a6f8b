/// Anti-replay for one sender's counters, as WireGuard and IPsec keep it: remembers the last
/// `size` counters in a bitmap and refuses anything at or below the window's bottom. `check` does not
/// change state; the caller `accept`s only after the packet authenticated.
public struct ReplayWindow: Sendable {
    public static let size: UInt64 = 4096
    private var highest: UInt64?
    private var bits = InlineArray<64, UInt64>(repeating: 0)

    public init() {}

    public func check(_ counter: UInt64) -> Bool {
        guard let highest else { return true }
        if counter > highest { return true }
        if highest - counter >= Self.size { return false }
        return !isSet(counter)
    }

    /// Records `counter`; call only after `check` passed and the packet authenticated.
    public mutating func accept(_ counter: UInt64) {
        guard let highest, counter <= highest else {
            let previous = self.highest
            self.highest = counter
            if let previous {
                let advance = counter - previous
                if advance >= Self.size {
                    for index in bits.indices { bits[index] = 0 }
                } else {
                    var value = previous + 1
                    while value < counter { clear(value); value += 1 }
                }
            }
            set(counter)
            return
        }
        set(counter)
    }

    private func position(_ counter: UInt64) -> (Int, UInt64) {
        let bit = counter % Self.size
        return (Int(bit / 64), 1 << (bit % 64))
    }
    private mutating func set(_ counter: UInt64) { let (word, mask) = position(counter); bits[word] |= mask }
    private mutating func clear(_ counter: UInt64) { let (word, mask) = position(counter); bits[word] &= ~mask }
    private func isSet(_ counter: UInt64) -> Bool { let (word, mask) = position(counter); return bits[word] & mask != 0 }
}
