import Glibc

/// This layer's one wrapper of poll(2), and the descriptor sets waited on with it: a set of
/// descriptors plus the waker that interrupts every wait. Allocated once at its largest size, so a
/// wait allocates nothing. A set can be rebuilt from wait to wait (`reset`, `add`: a listener and its
/// connections) or built once and a descriptor left out of some waits and taken back in (`watch`).
public final class PollSet {
    public enum Interest: Sendable { case read, write }

    private let fds: UnsafeMutableBufferPointer<pollfd>
    /// The descriptor added at each position, for `watch` to put back.
    private let added: UnsafeMutableBufferPointer<Int32>
    private var count = 0
    private let waker: Waker?

    /// Room for `capacity` descriptors besides `waker`, which every wait includes (at position 0).
    public init(capacity: Int, waker: Waker?) {
        fds = .allocate(capacity: capacity + 1)
        added = .allocate(capacity: capacity + 1)
        self.waker = waker
        reset()
    }

    deinit {
        fds.deallocate()
        added.deallocate()
    }

    /// Starts a new wait's set: the waker alone.
    public func reset() {
        count = 0
        add(waker?.fd ?? -1, .read)  // poll skips a negative descriptor
    }

    /// Adds `fd`; returns its position for `isReady` and `watch` (nil when the set is full).
    @discardableResult
    public func add(_ fd: Int32, _ interest: Interest = .read) -> Int? {
        guard count < fds.count else { return nil }
        fds[count] = pollfd(fd: fd, events: Int16(interest == .read ? POLLIN : POLLOUT), revents: 0)
        added[count] = fd
        count += 1
        return count - 1
    }

    /// Adds a second waker (a doorbell one thread rings for another); `isReady` says whether it rang.
    @discardableResult
    package func add(_ doorbell: Waker) -> Int? { add(doorbell.fd, .read) }

    /// Whether the next waits include the descriptor at `position`.
    package func watch(_ position: Int, _ watched: Bool) {
        fds[position].fd = watched ? added[position] : -1
    }

    /// Waits until something is ready, the waker fires or `timeoutMilliseconds` pass. Returns false
    /// when the time passed with nothing ready.
    @discardableResult
    public func wait(timeoutMilliseconds: Int32) -> Bool {
        Self.poll(UnsafeMutableBufferPointer(rebasing: fds[0..<count]), timeoutMilliseconds: timeoutMilliseconds) > 0
    }

    /// Ready for its interest in the last wait, or in error or hung up (the next read or write tells
    /// which). False for a position the set did not have room for.
    public func isReady(_ position: Int) -> Bool { position >= 0 && position < count && fds[position].revents != 0 }

    /// Whether the waker fired in the last wait.
    public var wasWoken: Bool { isReady(0) }

    /// The one call of poll(2) in this layer: waits for `fds`, retrying when a signal interrupts it.
    /// Returns how many are ready, 0 when the time passed (or poll failed: it can only lack memory).
    static func poll(_ fds: UnsafeMutableBufferPointer<pollfd>, timeoutMilliseconds: Int32) -> Int {
        let ready = try? Syscall.call("poll") { Glibc.poll(fds.baseAddress, nfds_t(fds.count), timeoutMilliseconds) }
        return Int(ready ?? 0)
    }
}

/// What a wait on one descriptor and a waker saw.
struct Readiness {
    /// The descriptor is ready for the interest waited for (or in error).
    var isReady: Bool
    /// The waker fired.
    var isWoken: Bool
}

/// Waits on one descriptor and a waker, with the two entries on the stack: for the waits inside a
/// send or receive, which must not allocate.
func waitFor(_ fd: Int32, _ interest: PollSet.Interest, waker: Waker?, timeoutMilliseconds: Int32) -> Readiness {
    withUnsafeTemporaryAllocation(of: pollfd.self, capacity: 2) { fds in
        fds[0] = pollfd(fd: fd, events: Int16(interest == .read ? POLLIN : POLLOUT), revents: 0)
        fds[1] = pollfd(fd: waker?.fd ?? -1, events: Int16(POLLIN), revents: 0)
        let ready = PollSet.poll(fds, timeoutMilliseconds: timeoutMilliseconds)
        return Readiness(isReady: ready > 0 && fds[0].revents != 0, isWoken: ready > 0 && fds[1].revents != 0)
    }
}
