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

/// A fixed number of counts in one allocation, indexed: what a worker adds once per batch for a
/// whole table of counts, without a reference to retain per count.
public final class CounterBlock: @unchecked Sendable {
    public let count: Int
    // Inlinable: the engine adds a batch's few touched counts without a call each.
    @usableFromInline let values: UnsafeMutablePointer<Atomic<UInt64>>

    public init(count: Int) {
        self.count = count
        values = .allocate(capacity: count)
        for index in 0..<count { (values + index).initialize(to: Atomic(0)) }
    }

    deinit {
        values.deinitialize(count: count)
        values.deallocate()
    }

    /// Adds `amount` to count `index` (nothing when it is 0).
    @inlinable @inline(__always) public func add(_ amount: Int, at index: Int) {
        precondition(index >= 0 && index < count)
        if amount != 0 { values[index].wrappingAdd(UInt64(amount), ordering: .relaxed) }
    }

    /// Takes a total someone else keeps (the kernel's drop count of a socket).
    public func store(_ total: UInt64, at index: Int) {
        precondition(index >= 0 && index < count)
        values[index].store(total, ordering: .relaxed)
    }

    public func load(at index: Int) -> UInt64 {
        precondition(index >= 0 && index < count)
        return values[index].load(ordering: .relaxed)
    }
}
