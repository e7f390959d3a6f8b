import CLinux
import Glibc

/// Wakes threads blocked in `poll`: the lifecycle's waker makes them notice shutdown at once (an
/// eventfd that stays readable); a waker one thread uses as a doorbell for another is `reset` by the
/// thread it woke.
public final class Waker: Sendable {
    private let descriptor: OwnedDescriptor
    var fd: Int32 { descriptor.rawValue }

    public init() throws(SystemError) {
        let fd = clinux_eventfd()
        descriptor = OwnedDescriptor(owning: try Syscall.shim("eventfd") { fd })
    }

    public func wake() {
        var one: UInt64 = 1
        // An eventfd counter can only fail to add when it would overflow: it stays readable then too.
        _ = try? Syscall.nonBlocking("write eventfd") { write(fd, &one, 8) }
    }

    /// Makes the waker unreadable again (the rings so far are taken).
    package func reset() {
        var count: UInt64 = 0
        // Non-blocking: an eventfd nobody rang answers EAGAIN, which means the same.
        _ = try? Syscall.nonBlocking("read eventfd") { read(fd, &count, 8) }
    }
}
