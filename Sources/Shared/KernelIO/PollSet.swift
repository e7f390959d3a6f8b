import Glibc

/// A set of descriptors that changes from wait to wait (a listener and its connections), waited on
/// with a waker. Allocated once at its largest size.
public final class PollSet {
    public enum Interest: Sendable { case read, write }

    private let fds: UnsafeMutableBufferPointer<pollfd>
    private var count = 0
    private let waker: Waker

    public init(capacity: Int, waker: Waker) {
        fds = .allocate(capacity: capacity + 1)
        self.waker = waker
    }

    deinit { fds.deallocate() }

    /// Starts a new wait's set: the waker first.
    public func reset() {
        fds[0] = pollfd(fd: waker.fd, events: Int16(POLLIN), revents: 0)
        count = 1
    }

    /// Adds `fd`; returns its position for `isReady` (nil when the set is full).
    public func add(_ fd: Int32, _ interest: Interest) -> Int? {
        guard count < fds.count else { return nil }
        fds[count] = pollfd(fd: fd, events: Int16(interest == .read ? POLLIN : POLLOUT), revents: 0)
        count += 1
        return count - 1
    }

    /// Waits until something is ready, the waker fires or `timeoutMilliseconds` pass.
    public func wait(timeoutMilliseconds: Int32) {
        _ = poll(fds.baseAddress, nfds_t(count), timeoutMilliseconds)
    }

    /// Ready for its interest, or in error or hung up (the next read or write tells which).
    public func isReady(_ position: Int) -> Bool { position < count && fds[position].revents != 0 }
}
