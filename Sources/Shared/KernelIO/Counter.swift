import Synchronization

/// A monotonically increasing count, written by workers once per batch and read by the reporter.
public final class Counter: Sendable {
    private let value = Atomic<UInt64>(0)

    public init() {}

    @inlinable public func add(_ amount: Int) {
        if amount != 0 { addUnchecked(UInt64(amount)) }
    }

    @usableFromInline func addUnchecked(_ amount: UInt64) { value.wrappingAdd(amount, ordering: .relaxed) }

    /// Takes a total someone else keeps (the kernel's drop count of a socket).
    public func store(_ total: UInt64) { value.store(total, ordering: .relaxed) }

    public var load: UInt64 { value.load(ordering: .relaxed) }
}
