import KernelIO
import WireFormat

/// The relay's return-path table: which UDP endpoint each client inner address last sent from, the
/// relay address it sent to (replies leave from there), and in which session (the key its datagrams
/// were sealed with: replies are sealed for the same one).
///
/// Every operation is O(1): entries live in one array, found through an open-addressing index
/// (linear probing, at most half full, keyed by the process's randomly seeded hasher so chosen
/// addresses cannot make probes long) and kept in least-recently-refreshed order on a doubly linked
/// list. A second such index, by endpoint, leads to a list of each endpoint's entries (in the same
/// order), so refreshing the paths through one endpoint costs that endpoint's entries only. The
/// array's storage is reserved for `capacity` entries at start and touched as entries arrive, so
/// memory grows by `bytesPerEntry` per client, never past the bound.
///
/// An address is bound to its endpoint while in use: a datagram from another endpoint claiming an
/// address refreshed within `idleAfter` is refused (`inUse`), so a sender cannot take an active
/// client's downlink with one packet; the address moves once its binding has been idle that long.
///
/// When the table is full, a new address replaces the entry refreshed longest ago, but only if
/// that one is idle (not refreshed for `idleAfter`): a flood of new addresses never evicts clients
/// that are sending. New addresses also spend a token from a rate budget, so one allowed sender
/// cycling through inner sources is counted and held back, not given the table.
///
/// Writers refresh an entry at most once per `InboundStage.refreshInterval` per address (they keep a
/// small cache of what they learned), readers look up a whole batch under one lock.
public final class ClientTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public var endpoint: SocketAddress
        public var session: PeerSession
        /// The relay's address the client sent to; nil when not known (a socket bound to one address).
        public var localAddress: IPAddress?
        public var refreshedAt: UInt64

        public init(
            endpoint: SocketAddress, session: PeerSession = PeerSession(), localAddress: IPAddress? = nil,
            refreshedAt: UInt64
        ) {
            self.endpoint = endpoint
            self.session = session
            self.localAddress = localAddress
            self.refreshedAt = refreshedAt
        }

        /// Same return path (refresh time aside).
        public func routesLike(_ other: Entry) -> Bool {
            endpoint == other.endpoint && session == other.session && localAddress == other.localAddress
        }
    }

    /// Packets and bytes one way.
    public struct Traffic: Sendable, Equatable {
        public var packets: UInt64 = 0
        public var bytes: UInt64 = 0

        public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
            self.packets = packets
            self.bytes = bytes
        }

        mutating func add(_ other: Traffic) {
            packets &+= other.packets
            bytes &+= other.bytes
        }
    }

    /// A client as the operator sees it: its return path, when it was last refreshed (by a packet or
    /// a keepalive, to the second), and what it carried each way since it was learned.
    public struct Client: Sendable, Equatable {
        public var address: IPAddress
        public var entry: Entry
        /// Inner packets from the client handed to the TUN device (counted up to a second late).
        public var received: Traffic
        /// Inner packets routed to the client.
        public var sent: Traffic

        /// Nanoseconds since its return path was last refreshed, at monotonic time `now`.
        public func idle(at now: UInt64) -> UInt64 { now > entry.refreshedAt ? now - entry.refreshedAt : 0 }
    }

    /// What `learn` did.
    public enum Learned: Equatable, Sendable {
        /// Known already, same return path: its refresh time is updated.
        case refreshed
        /// New, or its return path changed (a NAT rebinding after an idle spell, another key, another
        /// relay address).
        case changed
        /// Known at another endpoint that refreshed it within `idleAfter`, and refused: the address
        /// stays bound to the endpoint using it.
        case inUse
        /// New, and refused: the budget for new addresses is spent.
        case rateLimited
        /// New, and refused: every entry belongs to a client that sent within `idleAfter`.
        case full
    }

    public let capacity: Int
    /// The largest capacity (the indexes count slots in Int32 and are twice the capacity).
    public static var maximumCapacity: Int { 1 << 24 }
    /// Resident bytes each learned client adds: its slot and its share of the two indexes.
    public static var bytesPerEntry: Int { MemoryLayout<Slot>.stride + 4 * MemoryLayout<Int32>.stride }

    private struct Slot {
        var address: IPAddress
        var entry: Entry
        var received = Traffic()
        var sent = Traffic()
        /// Neighbours in refresh order (`none` at the ends); `newer` also links the free list.
        var newer: Int32
        var older: Int32
        /// Neighbours in refresh order among the entries of the same endpoint.
        var sameNewer: Int32 = ClientTable.none
        var sameOlder: Int32 = ClientTable.none
    }

    private struct Storage {
        var slots: [Slot] = []
        /// Open addressing over slot indices; `none` is empty. Its size is a power of two ≥ 2 × capacity.
        var index: [Int32]
        /// The same by endpoint: the newest slot of each endpoint's entries.
        var endpoints: [Int32]
        var newest: Int32 = none
        var oldest: Int32 = none
        var free: Int32 = none
        var count = 0
        var newAddresses: TokenBucket
        var evicted: UInt64 = 0
        /// Entries `refresh(endpoint:)` looked at, for tests of its cost.
        var visited: UInt64 = 0
    }

    private static var none: Int32 { -1 }
    private let idleAfter: UInt64
    private let mask: Int
    private let storage: Locked<Storage>

    /// `newPerSecond` new addresses are accepted per second, `newBurst` at once (default: as many as
    /// the rate). Entries refreshed within `idleAfter` nanoseconds are never evicted, nor moved to
    /// another endpoint.
    public init(capacity: Int, newPerSecond: Int = 10_000, newBurst: Int? = nil, idleAfter: UInt64 = 10_000_000_000) {
        precondition(capacity > 0 && capacity <= Self.maximumCapacity, "client table capacity out of range")
        self.capacity = capacity
        self.idleAfter = idleAfter
        var size = 2
        while size < 2 * capacity { size <<= 1 }
        mask = size - 1
        let burst = min(newBurst ?? newPerSecond, 1_000_000)
        var initial = Storage(
            index: [Int32](repeating: Self.none, count: size),
            endpoints: [Int32](repeating: Self.none, count: size),
            newAddresses: TokenBucket(rate: UInt64(max(newPerSecond, 0)), burst: UInt64(max(burst, 0))))
        initial.slots.reserveCapacity(capacity)
        storage = Locked(initial)
    }

    /// Records that `address` is reachable at `endpoint`, in `session`, through `localAddress`.
    @discardableResult
    public func learn(
        _ address: IPAddress, at endpoint: SocketAddress, session: PeerSession = PeerSession(),
        localAddress: IPAddress? = nil, now: UInt64
    ) -> Learned {
        learn(address, Entry(endpoint: endpoint, session: session, localAddress: localAddress, refreshedAt: now))
    }

    /// Records `entry` as `address`'s return path, refreshed at `entry.refreshedAt`.
    /// `credit` adds traffic a worker counted for an address (this one or another) since it last
    /// reported, in the same lock.
    @discardableResult
    public func learn(_ address: IPAddress, _ entry: Entry, credit: (address: IPAddress, traffic: Traffic)? = nil) -> Learned {
        let now = entry.refreshedAt, mask = mask, capacity = capacity, idleAfter = idleAfter
        return storage.withLock { table in
            if let credit { Self.credit(&table, credit.address, credit.traffic, mask: mask) }
            let (position, found) = Self.probe(table.index, mask: mask, for: address, in: table.slots)
            if found >= 0 {
                let known = table.slots[Int(found)].entry
                if known.endpoint != entry.endpoint, !Self.isIdle(known, at: now, after: idleAfter) { return .inUse }
                let same = known.routesLike(entry)
                if known.endpoint != entry.endpoint {
                    Self.leaveEndpoint(&table, found, mask: mask)
                    table.slots[Int(found)].entry = entry
                    Self.joinEndpoint(&table, found, mask: mask)
                } else {
                    table.slots[Int(found)].entry = entry
                    Self.newestOfEndpoint(&table, found, mask: mask)
                }
                Self.moveToNewest(&table, found)
                return same ? .refreshed : .changed
            }
            if table.count >= capacity {
                let oldest = table.oldest
                guard Self.isIdle(table.slots[Int(oldest)].entry, at: now, after: idleAfter) else { return .full }
                guard table.newAddresses.take(now: now) else { return .rateLimited }
                Self.remove(&table, oldest, mask: mask)
                table.evicted += 1
                // The removal may have shifted index entries: probe again for the insertion point.
                Self.insert(
                    &table, Slot(address: address, entry: entry, newer: Self.none, older: Self.none),
                    at: Self.probe(table.index, mask: mask, for: address, in: table.slots).position, mask: mask)
                return .changed
            }
            guard table.newAddresses.take(now: now) else { return .rateLimited }
            Self.insert(&table, Slot(address: address, entry: entry, newer: Self.none, older: Self.none), at: position, mask: mask)
            return .changed
        }
    }

    /// Looks up several destinations under one lock.
    public func withLookup<R>(_ body: (_ lookup: (IPAddress) -> Entry?) -> R) -> R {
        let mask = mask
        return storage.withLock { table in
            body { address in
                let found = Self.probe(table.index, mask: mask, for: address, in: table.slots).found
                return found >= 0 ? table.slots[Int(found)].entry : nil
            }
        }
    }

    public func endpoint(for address: IPAddress) -> SocketAddress? { withLookup { $0(address)?.endpoint } }

    /// Looks up several destinations under one lock, counting `traffic` as sent to each one found.
    public func withRoutes<R>(_ body: (_ route: (IPAddress, Traffic) -> Entry?) -> R) -> R {
        let mask = mask
        return storage.withLock { table in
            body { address, traffic in
                let found = Self.probe(table.index, mask: mask, for: address, in: table.slots).found
                guard found >= 0 else { return nil }
                table.slots[Int(found)].sent.add(traffic)
                return table.slots[Int(found)].entry
            }
        }
    }

    /// Adds traffic workers counted from clients (see `learn`'s `credit`); addresses no longer in the
    /// table are skipped.
    public func credit(_ traffic: [(address: IPAddress, traffic: Traffic)]) {
        guard !traffic.isEmpty else { return }
        let mask = mask
        storage.withLock { table in
            for (address, counts) in traffic { Self.credit(&table, address, counts, mask: mask) }
        }
    }

    /// Every client with its traffic, most recently refreshed first (O(entries), for reports).
    public func clients() -> [Client] {
        storage.withLock { table in
            var result: [Client] = []
            result.reserveCapacity(table.count)
            var cursor = table.newest
            while cursor != Self.none {
                let slot = table.slots[Int(cursor)]
                result.append(Client(address: slot.address, entry: slot.entry, received: slot.received, sent: slot.sent))
                cursor = slot.older
            }
            return result
        }
    }

    /// The clients in slots `start..<start + limit` (in no particular order) and the slot to go on
    /// from, nil after the last: a bounded copy per lock hold, for a scrape of a large table.
    /// Between calls clients may come, go or move, so one may be missed or met twice.
    public func clients(from start: Int, limit: Int) -> (clients: [Client], next: Int?) {
        let mask = mask
        return storage.withLock { table in
            let end = min(start + max(limit, 1), table.slots.count)
            var result: [Client] = []
            result.reserveCapacity(max(end - start, 0))
            for index in start..<max(end, start) {
                let slot = table.slots[index]
                // A slot on the free list keeps its old address; only the index knows it is free.
                guard Self.probe(table.index, mask: mask, for: slot.address, in: table.slots).found == Int32(index) else { continue }
                result.append(Client(address: slot.address, entry: slot.entry, received: slot.received, sent: slot.sent))
            }
            return (result, end < table.slots.count ? end : nil)
        }
    }

    public var count: Int { storage.withLock { $0.count } }

    /// Idle entries replaced by new addresses (refusals are counted by the caller, as drops).
    public var evicted: UInt64 { storage.withLock { $0.evicted } }

    /// Forgets every return path of `session` (its peer said it knows no such session); they are
    /// learned again when the client next sends. Returns how many were forgotten. O(entries), for
    /// housekeeping only.
    @discardableResult
    public func forget(session: PeerSession) -> Int {
        let mask = mask
        return storage.withLock { table in
            var forgotten = 0, cursor = table.newest
            while cursor != Self.none {
                let next = table.slots[Int(cursor)].older
                if table.slots[Int(cursor)].entry.session == session {
                    Self.remove(&table, cursor, mask: mask)
                    forgotten += 1
                }
                cursor = next
            }
            return forgotten
        }
    }

    /// Forgets the return paths of `session` through `endpoint` only (a GTP-U peer there said it
    /// knows no such session; one from elsewhere must not take the session's paths away). Returns
    /// how many. O(entries), for housekeeping only.
    @discardableResult
    public func forget(session: PeerSession, through endpoint: SocketAddress) -> Int {
        let mask = mask
        return storage.withLock { table in
            var forgotten = 0, cursor = table.newest
            while cursor != Self.none {
                let next = table.slots[Int(cursor)].older
                if table.slots[Int(cursor)].entry.session == session, table.slots[Int(cursor)].entry.endpoint == endpoint {
                    Self.remove(&table, cursor, mask: mask)
                    forgotten += 1
                }
                cursor = next
            }
            return forgotten
        }
    }

    /// Marks every return path through `endpoint` refreshed at `now` (a GTP-U peer's Echo Request:
    /// it names no inner address, but its sender is alive). Returns how many. O(entries of that
    /// endpoint), through the endpoint index: an unknown or spoofed sender costs one probe.
    @discardableResult
    public func refresh(endpoint: SocketAddress, now: UInt64) -> Int {
        let mask = mask
        return storage.withLock { table in
            var cursor = Self.probeEndpoint(table.endpoints, mask: mask, for: endpoint, in: table.slots).found
            guard cursor != Self.none else { return 0 }
            while table.slots[Int(cursor)].sameOlder != Self.none {
                table.visited += 1
                cursor = table.slots[Int(cursor)].sameOlder
            }
            // Oldest first, so they keep their order among themselves at the newest end (and the
            // endpoint's own list stays in refresh order as it is).
            var count = 0
            while cursor != Self.none {
                table.visited += 1
                table.slots[Int(cursor)].entry.refreshedAt = now
                Self.moveToNewest(&table, cursor)
                count += 1
                cursor = table.slots[Int(cursor)].sameNewer
            }
            return count
        }
    }

    /// Entries `refresh(endpoint:)` looked at so far (its work, for tests).
    var refreshVisits: UInt64 { storage.withLock { $0.visited } }

    /// Every entry, for reports and housekeeping (O(entries)).
    public func snapshot() -> [IPAddress: Entry] {
        storage.withLock { table in
            var result: [IPAddress: Entry] = [:]
            var cursor = table.newest
            while cursor != Self.none {
                result[table.slots[Int(cursor)].address] = table.slots[Int(cursor)].entry
                cursor = table.slots[Int(cursor)].older
            }
            return result
        }
    }

    /// The addresses from the one refreshed longest ago to the newest (for tests of the order).
    public func addressesOldestFirst() -> [IPAddress] {
        storage.withLock { table in
            var result: [IPAddress] = [], cursor = table.oldest
            while cursor != Self.none {
                result.append(table.slots[Int(cursor)].address)
                cursor = table.slots[Int(cursor)].newer
            }
            return result
        }
    }

    /// Not refreshed for `idleAfter` at `now`. Workers stamp batches with their own clock reads, so
    /// an entry may be newer than `now`: that one is fresh.
    private static func isIdle(_ entry: Entry, at now: UInt64, after idleAfter: UInt64) -> Bool {
        entry.refreshedAt <= now && now - entry.refreshedAt >= idleAfter
    }

    // MARK: Index and list

    private static func credit(_ table: inout Storage, _ address: IPAddress, _ traffic: Traffic, mask: Int) {
        let found = probe(table.index, mask: mask, for: address, in: table.slots).found
        if found >= 0 { table.slots[Int(found)].received.add(traffic) }
    }

    private static func home(of key: some Hashable, mask: Int) -> Int {
        var hasher = Hasher()
        hasher.combine(key)
        return hasher.finalize() & mask
    }

    /// Where `address` is in the index (`found` its slot), or the empty position where it would go
    /// (`found` = none).
    private static func probe(_ index: [Int32], mask: Int, for address: IPAddress, in slots: [Slot]) -> (position: Int, found: Int32) {
        var position = home(of: address, mask: mask)
        while true {
            let slot = index[position]
            if slot == none { return (position, none) }
            if slots[Int(slot)].address == address { return (position, slot) }
            position = (position + 1) & mask
        }
    }

    /// Where the entries of `endpoint` are in the endpoint index (`found` the newest of them), or the
    /// empty position where they would go (`found` = none).
    private static func probeEndpoint(
        _ endpoints: [Int32], mask: Int, for endpoint: SocketAddress,
        in slots: [Slot]
    ) -> (position: Int, found: Int32) {
        var position = home(of: endpoint, mask: mask)
        while true {
            let slot = endpoints[position]
            if slot == none { return (position, none) }
            if slots[Int(slot)].entry.endpoint == endpoint { return (position, slot) }
            position = (position + 1) & mask
        }
    }

    private static func insert(_ table: inout Storage, _ slot: Slot, at position: Int, mask: Int) {
        let taken: Int32
        if table.free != none {
            taken = table.free
            table.free = table.slots[Int(taken)].newer
            table.slots[Int(taken)] = slot
        } else {
            taken = Int32(table.slots.count)
            table.slots.append(slot)
        }
        table.index[position] = taken
        table.count += 1
        linkAsNewest(&table, taken)
        joinEndpoint(&table, taken, mask: mask)
    }

    /// Unlinks `slot`, clears its index position (shifting back the entries probed past it, so no
    /// tombstones accumulate) and puts it on the free list.
    private static func remove(_ table: inout Storage, _ slot: Int32, mask: Int) {
        unlink(&table, slot)
        leaveEndpoint(&table, slot, mask: mask)
        let hole = probe(table.index, mask: mask, for: table.slots[Int(slot)].address, in: table.slots).position
        vacate(&table.index, hole, mask: mask, slots: table.slots, byEndpoint: false)
        table.slots[Int(slot)].newer = table.free
        table.free = slot
        table.count -= 1
    }

    /// Empties `hole` in an index (by address, or by endpoint), shifting back the slots probed past
    /// it so no tombstones accumulate.
    private static func vacate(_ index: inout [Int32], _ hole: Int, mask: Int, slots: [Slot], byEndpoint: Bool) {
        var hole = hole, position = (hole + 1) & mask
        while index[position] != none {
            let moving = index[position]
            let home =
                byEndpoint ? home(of: slots[Int(moving)].entry.endpoint, mask: mask) : home(of: slots[Int(moving)].address, mask: mask)
            // `moving` may fill the hole only if its home is not cyclically within (hole, position].
            let distanceToHole = (hole - home) & mask, distanceToHere = (position - home) & mask
            if distanceToHole < distanceToHere {
                index[hole] = moving
                hole = position
            }
            position = (position + 1) & mask
        }
        index[hole] = none
    }

    /// Adds `slot` as the newest entry of its endpoint (`entry.endpoint`, already set).
    private static func joinEndpoint(_ table: inout Storage, _ slot: Int32, mask: Int) {
        let (position, newest) = probeEndpoint(table.endpoints, mask: mask, for: table.slots[Int(slot)].entry.endpoint, in: table.slots)
        table.slots[Int(slot)].sameNewer = none
        table.slots[Int(slot)].sameOlder = newest
        if newest != none { table.slots[Int(newest)].sameNewer = slot }
        table.endpoints[position] = slot
    }

    /// Takes `slot` off its endpoint's entries (by `entry.endpoint`, still its old one); an endpoint
    /// left with none leaves the endpoint index.
    private static func leaveEndpoint(_ table: inout Storage, _ slot: Int32, mask: Int) {
        let newer = table.slots[Int(slot)].sameNewer, older = table.slots[Int(slot)].sameOlder
        if older != none { table.slots[Int(older)].sameNewer = newer }
        if newer != none {
            table.slots[Int(newer)].sameOlder = older
            return
        }
        // The endpoint's newest: the index names it.
        let position = probeEndpoint(table.endpoints, mask: mask, for: table.slots[Int(slot)].entry.endpoint, in: table.slots).position
        if older != none {
            table.endpoints[position] = older
        } else {
            vacate(&table.endpoints, position, mask: mask, slots: table.slots, byEndpoint: true)
        }
    }

    /// Makes `slot` the newest of its endpoint's entries (it was just refreshed).
    private static func newestOfEndpoint(_ table: inout Storage, _ slot: Int32, mask: Int) {
        guard table.slots[Int(slot)].sameNewer != none else { return }
        leaveEndpoint(&table, slot, mask: mask)
        joinEndpoint(&table, slot, mask: mask)
    }

    private static func unlink(_ table: inout Storage, _ slot: Int32) {
        let newer = table.slots[Int(slot)].newer, older = table.slots[Int(slot)].older
        if newer != none { table.slots[Int(newer)].older = older } else { table.newest = older }
        if older != none { table.slots[Int(older)].newer = newer } else { table.oldest = newer }
    }

    private static func linkAsNewest(_ table: inout Storage, _ slot: Int32) {
        table.slots[Int(slot)].newer = none
        table.slots[Int(slot)].older = table.newest
        if table.newest != none { table.slots[Int(table.newest)].newer = slot }
        table.newest = slot
        if table.oldest == none { table.oldest = slot }
    }

    private static func moveToNewest(_ table: inout Storage, _ slot: Int32) {
        guard table.newest != slot else { return }
        unlink(&table, slot)
        linkAsNewest(&table, slot)
    }
}
