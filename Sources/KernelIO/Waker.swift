import CLinux
import Glibc
import WireFormat

/// Wakes threads blocked in `poll` so they notice shutdown at once (an eventfd that stays readable).
public final class Waker: Sendable {
    private let descriptor: FileDescriptor
    var fd: Int32 { descriptor.rawValue }

    public init() throws(SystemError) {
        let fd = clinux_eventfd()
        descriptor = FileDescriptor(owning: try Syscall.shim("eventfd") { fd })
    }

    public func wake() {
        var one: UInt64 = 1
        // An eventfd counter can only fail to add when it would overflow: it stays readable then too.
        _ = try? Syscall.nonBlocking("write eventfd") { write(fd, &one, 8) }
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

/// A fixed set of descriptors (plus a waker) waited on together; allocated once per worker so the
/// wait itself allocates nothing.
package final class ReadinessSet {
    private let fds: UnsafeMutableBufferPointer<pollfd>

    package init(descriptors: [Int32], waker: Waker?) {
        fds = .allocate(capacity: descriptors.count + 1)
        for (index, fd) in descriptors.enumerated() {
            fds[index] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        }
        fds[descriptors.count] = pollfd(fd: waker?.fd ?? -1, events: Int16(POLLIN), revents: 0)
    }

    deinit { fds.deallocate() }

    /// Returns when any descriptor is readable or the waker fires (true), or the timeout passes (false).
    @discardableResult
    package func wait(timeoutMilliseconds: Int32) -> Bool {
        poll(fds.baseAddress, nfds_t(fds.count), timeoutMilliseconds) != 0
    }
}
