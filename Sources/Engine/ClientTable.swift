import Synchronization
import KernelIO
import WireFormat

/// The relay's return-path table: which UDP endpoint each client inner address last sent from, and
/// in which session (the key its datagrams were sealed with: replies are sealed for the same one).
/// Bounded: when full, the entry refreshed longest ago is replaced. Writers refresh an entry at most
/// once per `refreshInterval` per address (see `InboundStage`), readers look up a whole batch
/// under one lock, so the lock is taken per batch, not per packet.
public final class ClientTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public var endpoint: SocketAddress
        public var session: PeerSession
        public var refreshedAt: UInt64

        public init(endpoint: SocketAddress, session: PeerSession = PeerSession(), refreshedAt: UInt64) {
            self.endpoint = endpoint
            self.session = session
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

    /// Records that `address` is reachable at `endpoint`, in `session`. Returns true when this
    /// changed where or how its replies go.
    @discardableResult
    public func learn(_ address: IPAddress, at endpoint: SocketAddress, session: PeerSession = PeerSession(), now: UInt64) -> Bool {
        entries.withLock { table in
            let previous = table[address]
            if previous == nil, table.count >= capacity,
               let oldest = table.min(by: { $0.value.refreshedAt < $1.value.refreshedAt })?.key {
                table.removeValue(forKey: oldest)
            }
            table[address] = Entry(endpoint: endpoint, session: session, refreshedAt: now)
            return previous?.endpoint != endpoint || previous?.session != session
        }
    }

    /// Looks up several destinations under one lock.
    public func withLookup<R>(_ body: (_ lookup: (IPAddress) -> Entry?) -> R) -> R {
        entries.withLock { table in body { table[$0] } }
    }

    public func endpoint(for address: IPAddress) -> SocketAddress? { withLookup { $0(address)?.endpoint } }

    public var count: Int { entries.withLock { $0.count } }

    /// Forgets every return path of `session` (its peer said it knows no such session); they are
    /// learned again when the client next sends. Returns how many were forgotten.
    @discardableResult
    public func forget(session: PeerSession) -> Int {
        entries.withLock { table in
            let before = table.count
            table = table.filter { $0.value.session != session }
            return before - table.count
        }
    }

    public func snapshot() -> [IPAddress: Entry] { entries.withLock { $0 } }
}
