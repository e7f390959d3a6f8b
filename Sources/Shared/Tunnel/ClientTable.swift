import Synchronization

/// The relay's return-path table: which UDP endpoint each client inner address last sent from, and
/// with which of the relay's keys (replies are sealed with the same one).
/// Bounded: when full, the entry refreshed longest ago is replaced. Writers refresh an entry at most
/// once per `refreshInterval` per address (see `InboundPipeline`), readers look up a whole batch
/// under one lock, so the lock is taken per batch, not per packet.
public final class ClientTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public var endpoint: SocketAddress
        /// Index of the key the client's datagrams were sealed with (0 with raw framing or one key).
        public var keyIndex: Int
        public var refreshedAt: UInt64

        public init(endpoint: SocketAddress, keyIndex: Int = 0, refreshedAt: UInt64) {
            self.endpoint = endpoint
            self.keyIndex = keyIndex
            self.refreshedAt = refreshedAt
        }
    }

    public let capacity: Int
    private let entries: Mutex<[IPAddress: Entry]>

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        var initial: [IPAddress: Entry] = [:]
        initial.reserveCapacity(capacity)
        entries = Mutex(initial)
    }

    /// Records that `address` is reachable at `endpoint`, with the key at `keyIndex`. Returns true
    /// when this changed where or how its replies go.
    @discardableResult
    public func learn(_ address: IPAddress, at endpoint: SocketAddress, keyIndex: Int = 0, now: UInt64) -> Bool {
        entries.withLock { table in
            let previous = table[address]
            if previous == nil, table.count >= capacity,
               let oldest = table.min(by: { $0.value.refreshedAt < $1.value.refreshedAt })?.key {
                table.removeValue(forKey: oldest)
            }
            table[address] = Entry(endpoint: endpoint, keyIndex: keyIndex, refreshedAt: now)
            return previous?.endpoint != endpoint || previous?.keyIndex != keyIndex
        }
    }

    /// Looks up several destinations under one lock.
    public func withLookup<R>(_ body: (_ lookup: (IPAddress) -> Entry?) -> R) -> R {
        entries.withLock { table in body { table[$0] } }
    }

    public func endpoint(for address: IPAddress) -> SocketAddress? { withLookup { $0(address)?.endpoint } }

    public var count: Int { entries.withLock { $0.count } }

    public func snapshot() -> [IPAddress: Entry] { entries.withLock { $0 } }
}
