import Synchronization
import KernelIO
import WireFormat

/// The relay's own addresses, which injected packets may never reach. Read once before the relay
/// starts (a failure there refuses the start: the guard fails closed) and refreshed by housekeeping
/// while it runs, so an address added later is protected too. A refresh that fails keeps the last
/// list and counts the failure: the list is never emptied for want of an answer.
public final class OwnAddresses: Sendable {
    public typealias Reader = @Sendable () throws(SystemError) -> [IPAddress]

    private let reader: Reader
    private let state: Mutex<(version: UInt64, addresses: [IPAddress])>
    private let published = Atomic<UInt64>(1)
    private let failures = Atomic<UInt64>(0)

    /// Reads the addresses now; throws when they cannot be read.
    public init(reader: @escaping Reader = { () throws(SystemError) in try InterfaceAddresses.all() }) throws(SystemError) {
        self.reader = reader
        state = Mutex((1, try reader()))
    }

    /// Changes whenever the list does: workers compare it once per batch (one relaxed load) and copy
    /// the list only when it moved.
    public var version: UInt64 { published.load(ordering: .acquiring) }

    public var current: (version: UInt64, addresses: [IPAddress]) { state.withLock { $0 } }

    /// Refreshes that failed (the last good list stayed in force).
    public var failedRefreshes: UInt64 { failures.load(ordering: .relaxed) }

    public enum Refresh: Equatable, Sendable {
        case unchanged
        case changed(added: [IPAddress], removed: [IPAddress])
        case failed(String)
    }

    /// Reads the addresses again and publishes them if they changed.
    @discardableResult
    public func refresh() -> Refresh {
        let fresh: [IPAddress]
        do throws(SystemError) {
            fresh = try reader()
        } catch {
            failures.add(1, ordering: .relaxed)
            return .failed(error.description)
        }
        return state.withLock { state in
            let old = Set(state.addresses), new = Set(fresh)
            guard old != new else { return .unchanged }
            state = (state.version &+ 1, fresh)
            published.store(state.version, ordering: .releasing)
            return .changed(added: fresh.filter { !old.contains($0) }, removed: Array(old.subtracting(new)))
        }
    }
}
