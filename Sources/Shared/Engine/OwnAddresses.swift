import KernelIO
import Synchronization
import WireFormat

/// The relay's own addresses, which injected packets may never reach, and with `localRoutes` every
/// prefix the kernel delivers locally (the local table's local, broadcast and anycast routes: a
/// subnet's broadcast address, a prefix routed `local`), which they may not reach either. Read once
/// before the relay starts (a failure there refuses the start: the guard fails closed) and
/// refreshed by housekeeping while it runs, so an address or route added later is protected too. A
/// refresh that fails keeps the last lists and counts the failure: they are never emptied for want
/// of an answer.
public final class OwnAddresses: Sendable {
    public typealias Reader = @Sendable () throws(SystemError) -> [IPAddress]
    public typealias RouteReader = @Sendable () throws(SystemError) -> [IPPrefix]
    /// Whether the addresses may have changed since last asked (`AddressWatch.changed`).
    public typealias ChangeProbe = @Sendable () -> Bool

    private let reader: Reader
    private let changes: ChangeProbe?
    private let localRoutes: RouteReader?
    private let state: Locked<(version: UInt64, addresses: [IPAddress], localPrefixes: [IPPrefix])>
    private let published = Atomic<UInt64>(1)
    private let failures = Atomic<UInt64>(0)

    /// Reads the addresses now; throws when they cannot be read. With `changes` (set up before this
    /// read, so no change can fall between the two), `refreshIfChanged` reads them again only when it
    /// says they may have changed.
    /// `localRoutes` (`LocalRoutes.read`) is read with the addresses, and failing like them.
    public init(
        reader: @escaping Reader = { () throws(SystemError) in try InterfaceAddresses.all() },
        changes: ChangeProbe? = nil, localRoutes: RouteReader? = nil
    ) throws(SystemError) {
        self.reader = reader
        self.changes = changes
        self.localRoutes = localRoutes
        state = Locked((1, try reader(), try localRoutes?() ?? []))
    }

    /// `refresh`, when the change probe says the addresses may have changed (always without one).
    /// A host whose addresses stay put then costs no read and no allocation.
    @discardableResult
    public func refreshIfChanged() -> Refresh {
        if let changes, !changes() { return .unchanged }
        return refresh()
    }

    /// Changes whenever the list does: workers compare it once per batch (one relaxed load) and copy
    /// the list only when it moved.
    public var version: UInt64 { published.load(ordering: .acquiring) }

    public var current: (version: UInt64, addresses: [IPAddress]) { state.withLock { ($0.version, $0.addresses) } }

    /// The addresses and the locally delivered prefixes, of one version.
    public var snapshot: (version: UInt64, addresses: [IPAddress], localPrefixes: [IPPrefix]) { state.withLock { $0 } }

    /// Refreshes that failed (the last good list stayed in force).
    public var failedRefreshes: UInt64 { failures.load(ordering: .relaxed) }

    public enum Refresh: Equatable, Sendable {
        case unchanged
        case changed(added: [IPAddress], removed: [IPAddress], addedRoutes: [IPPrefix] = [], removedRoutes: [IPPrefix] = [])
        case failed(String)
    }

    /// Reads the addresses again and publishes them if they changed.
    @discardableResult
    public func refresh() -> Refresh {
        let fresh: [IPAddress], freshRoutes: [IPPrefix]
        do throws(SystemError) {
            fresh = try reader()
            freshRoutes = try localRoutes?() ?? []
        } catch {
            failures.add(1, ordering: .relaxed)
            return .failed(error.description)
        }
        return state.withLock { state in
            let old = state.addresses, oldRoutes = state.localPrefixes
            let added = fresh.filter { !old.contains($0) }, removed = old.filter { !fresh.contains($0) }
            let addedRoutes = freshRoutes.filter { !oldRoutes.contains($0) }, removedRoutes = oldRoutes.filter { !freshRoutes.contains($0) }
            guard !added.isEmpty || !removed.isEmpty || !addedRoutes.isEmpty || !removedRoutes.isEmpty else { return .unchanged }
            state = (state.version &+ 1, fresh, freshRoutes)
            published.store(state.version, ordering: .releasing)
            return .changed(added: added, removed: removed, addedRoutes: addedRoutes, removedRoutes: removedRoutes)
        }
    }

    /// Re-reads the relay's own addresses within a second of the kernel announcing a change, so one
    /// added while it runs is protected too; a failed read keeps the last list (logged once per kind
    /// of failure, counted in the report).
    public func refreshTask(log: EngineLog) -> Housekeeping.Task {
        let lastFailure = Locked<String?>(nil)
        return Housekeeping.Task("own-address refresh", every: 1) {
            switch self.refreshIfChanged() {
            case .unchanged:
                lastFailure.withLock { $0 = nil }
            case let .changed(added, removed, addedRoutes, removedRoutes):
                lastFailure.withLock { $0 = nil }
                if !added.isEmpty || !removed.isEmpty {
                    log.info(
                        "own addresses changed: added \(added.map(\.description).joined(separator: ",")), removed \(removed.map(\.description).joined(separator: ","))"
                    )
                }
                if !addedRoutes.isEmpty || !removedRoutes.isEmpty {
                    log.info(
                        "locally delivered prefixes changed: added \(addedRoutes.map(\.description).joined(separator: ",")), removed \(removedRoutes.map(\.description).joined(separator: ","))"
                    )
                }
            case let .failed(reason):
                let isNew = lastFailure.withLock { last in
                    defer { last = reason }
                    return last != reason
                }
                if isNew { log.warning("cannot re-read own addresses, keeping the last list: \(reason)") }
            }
        }
    }
}
