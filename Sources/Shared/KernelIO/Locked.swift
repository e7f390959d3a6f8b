import Glibc

/// A value behind a pthread mutex, for state that data-plane threads share (the relay's return-path
/// table). Synchronization's `Mutex` is as correct, but on Linux ThreadSanitizer cannot see its
/// futex-based lock: two threads taking it in turn are reported as racing on every access, which
/// would make the sanitizer run useless exactly where threads meet. pthread mutexes it intercepts.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
