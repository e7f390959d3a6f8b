import WireFormat

/// A worker's direct-mapped cache of the return paths it last gave the shared `ClientTable`: fixed
/// size, allocated once, O(1). A miss only costs a table lock; it never loses a route.
struct LearnedClients {
    static var defaultLines: Int { 4096 }
    private var addresses: [IPAddress?]
    private var entries: [ClientTable.Entry]
    private let mask: Int

    /// `lines` is rounded up to a power of two.
    init(lines: Int) {
        var size = 1
        while size < lines { size <<= 1 }
        mask = size - 1
        addresses = [IPAddress?](repeating: nil, count: size)
        entries = [ClientTable.Entry](repeating: ClientTable.Entry(endpoint: SocketAddress(ip: .v4(0), port: 0), refreshedAt: 0),
                                      count: size)
    }

    private func line(of address: IPAddress) -> Int {
        let bits: UInt64
        switch address {
        case let .v4(a): bits = UInt64(a)
        case let .v6(high, low): bits = high ^ (low &* 0x9E37_79B9_7F4A_7C15)
        }
        return Int(truncatingIfNeeded: (bits &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
    }

    /// True when `address` was learned with the same return path less than `interval` ago.
    func isFresh(_ address: IPAddress, _ entry: ClientTable.Entry, within interval: UInt64) -> Bool {
        let line = line(of: address)
        guard addresses[line] == address else { return false }
        let known = entries[line]
        return known.routesLike(entry) && entry.refreshedAt &- known.refreshedAt <= interval
    }

    mutating func remember(_ address: IPAddress, _ entry: ClientTable.Entry) {
        let line = line(of: address)
        addresses[line] = address
        entries[line] = entry
    }
}
