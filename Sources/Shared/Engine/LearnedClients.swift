import WireFormat

/// A worker's direct-mapped cache of the return paths it last gave the shared `ClientTable`: fixed
/// size, allocated once, O(1). A miss only costs a table lock; it never loses a route.
///
/// Each line also counts the traffic its address sent since the worker last handed it to the table
/// (with the next refresh, or in one batch at least once a second), so counting a packet costs two
/// additions and no lock.
struct LearnedClients {
    private var addresses: [IPAddress?]
    private var entries: [ClientTable.Entry]
    private var pending: [Pending]
    /// Lines with traffic counted since the last `takeAllPending`, each listed once.
    private var dirty: [Int]

    private struct Pending {
        var traffic = ClientTable.Traffic()
        var listed = false
    }
    private let mask: Int

    /// `lines` is rounded up to a power of two.
    init(lines: Int) {
        var size = 1
        while size < lines { size <<= 1 }
        mask = size - 1
        addresses = [IPAddress?](repeating: nil, count: size)
        entries = [ClientTable.Entry](
            repeating: ClientTable.Entry(endpoint: SocketAddress(ip: .v4(0), port: 0), refreshedAt: 0),
            count: size)
        pending = [Pending](repeating: Pending(), count: size)
        dirty = []
        dirty.reserveCapacity(size)
    }

    var hasPending: Bool { !dirty.isEmpty }

    func line(of address: IPAddress) -> Int {
        let bits: UInt64
        switch address {
        case let .v4(a): bits = UInt64(a)
        case let .v6(high, low): bits = high ^ (low &* 0x9E37_79B9_7F4A_7C15)
        }
        return Int(truncatingIfNeeded: (bits &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
    }

    /// True when `address` (whose line is `line`) was learned with the same return path less than
    /// `interval` ago.
    func isFresh(line: Int, _ address: IPAddress, _ entry: ClientTable.Entry, within interval: UInt64) -> Bool {
        guard addresses[line] == address else { return false }
        let known = entries[line]
        return known.routesLike(entry) && entry.refreshedAt &- known.refreshedAt <= interval
    }

    /// Caches `address`'s return path on its line; take the line's pending traffic first (`takePending`).
    mutating func remember(line: Int, _ address: IPAddress, _ entry: ClientTable.Entry) {
        addresses[line] = address
        entries[line] = entry
    }

    /// Counts a packet from the address `line` holds (fresh, or just remembered).
    mutating func count(line: Int, bytes: Int) {
        pending[line].traffic.packets &+= 1
        pending[line].traffic.bytes &+= UInt64(bytes)
        if !pending[line].listed {
            pending[line].listed = true
            dirty.append(line)
        }
    }

    /// The traffic counted on `line` (for whichever address holds it), now handed over.
    mutating func takePending(line: Int) -> (address: IPAddress, traffic: ClientTable.Traffic)? {
        guard let holder = addresses[line], pending[line].traffic.packets > 0 else { return nil }
        defer { pending[line].traffic = ClientTable.Traffic() }
        return (holder, pending[line].traffic)
    }

    /// Every line's pending traffic, appended to `list` (whose capacity the caller keeps).
    mutating func takeAllPending(into list: inout [(address: IPAddress, traffic: ClientTable.Traffic)]) {
        for line in dirty {
            if let holder = addresses[line], pending[line].traffic.packets > 0 { list.append((holder, pending[line].traffic)) }
            pending[line] = Pending()
        }
        dirty.removeAll(keepingCapacity: true)
    }
}
