import Synchronization

/// Shared run state of one process: the stop flag workers poll, the waker that interrupts their waits,
/// and the first fatal error any worker hit.
public final class Lifecycle: Sendable {
    private let stopping = Atomic<Bool>(false)
    // Behind a lock: both workers of a queue may fail at once (a deleted device).
    private let fatal = Locked<String?>(nil)
    public let waker: Waker

    public init() throws(SystemError) { waker = try Waker() }

    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    public func stop() {
        stopping.store(true, ordering: .releasing)
        waker.wake()
    }

    /// Records a fault that ends the process, then stops it (the waker also ends the main thread's wait).
    public func fail(_ message: String) {
        fatal.withLock { if $0 == nil { $0 = message } }
        stop()
    }

    public var fatalError: String? { fatal.withLock { $0 } }
}
