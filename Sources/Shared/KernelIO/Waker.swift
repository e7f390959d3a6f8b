import CLinux
import Glibc
import WireFormat

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

/// Readiness of one descriptor, interrupted by a waker.
enum Readiness {
    case ready
    case timedOut
    case woken
}

func waitFor(_ fd: Int32, events: Int16, waker: Waker?, timeoutMilliseconds: Int32) -> Readiness {
    var fds = (pollfd(fd: fd, events: events, revents: 0), pollfd(fd: waker?.fd ?? -1, events: Int16(POLLIN), revents: 0))
    let result = withUnsafeMutablePointer(to: &fds) { pointer in
        pointer.withMemoryRebound(to: pollfd.self, capacity: 2) { poll($0, 2, timeoutMilliseconds) }
    }
    if result <= 0 { return .timedOut }
    if fds.1.revents != 0 { return .woken }
    return .ready
}

/// A fixed set of descriptors (plus a waker, and optionally a doorbell) waited on together; allocated
/// once per worker so the wait itself allocates nothing. A descriptor can be left out of a wait and
/// taken back in (`watch`) without rebuilding the set.
package final class ReadinessSet {
    private let fds: UnsafeMutableBufferPointer<pollfd>
    private let descriptors: [Int32]
    private let doorbellIndex: Int?

    package init(descriptors: [Int32], waker: Waker?, doorbell: Waker? = nil) {
        self.descriptors = descriptors
        fds = .allocate(capacity: descriptors.count + (doorbell == nil ? 1 : 2))
        for (index, fd) in descriptors.enumerated() {
            fds[index] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        }
        fds[descriptors.count] = pollfd(fd: waker?.fd ?? -1, events: Int16(POLLIN), revents: 0)
        doorbellIndex = doorbell.map { _ in descriptors.count + 1 }
        if let doorbell, let doorbellIndex {
            fds[doorbellIndex] = pollfd(fd: doorbell.fd, events: Int16(POLLIN), revents: 0)
        }
    }

    deinit { fds.deallocate() }

    /// Whether the next waits include `descriptors[index]` (poll skips a negative descriptor).
    package func watch(_ index: Int, _ watched: Bool) {
        fds[index].fd = watched ? descriptors[index] : -1
    }

    /// Returns when any descriptor is readable or the waker fires (true), or the timeout passes (false).
    @discardableResult
    package func wait(timeoutMilliseconds: Int32) -> Bool {
        poll(fds.baseAddress, nfds_t(fds.count), timeoutMilliseconds) != 0
    }

    /// Whether the doorbell rang in the last wait.
    package var doorbellRang: Bool {
        guard let doorbellIndex else { return false }
        return fds[doorbellIndex].revents != 0
    }
}
