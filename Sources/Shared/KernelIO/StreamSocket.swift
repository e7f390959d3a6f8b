import CLinux
import Glibc
import WireFormat

/// A listening TCP socket (the metrics endpoint): non-blocking, close-on-exec, closed when released.
/// It is opened and bound as `UDPSocket`s are, and fails the same ways (`UDPSocket.Failure`).
public final class StreamListener {
    private let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.rawValue }

    /// Binds and listens on `address` (port 0: the kernel picks one). A `::` address takes IPv4 too.
    public init(_ address: SocketAddress, backlog: Int32 = 64) throws(UDPSocket.Failure) {
        let family = address.ip.isIPv4 ? AF_INET : AF_INET6
        let descriptor = try UDPSocket.open(family: family, type: SOCK_STREAM)
        let fd = descriptor.rawValue
        do throws(SystemError) {
            try Syscall.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
            if family == AF_INET6 { try Syscall.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0, "IPV6_V6ONLY=0") }
        } catch {
            throw .system(error)
        }
        try UDPSocket.bind(fd, to: address, family: family)
        do throws(SystemError) {
            _ = try Syscall.call("listen") { listen(fd, backlog) }
        } catch {
            throw .system(error)
        }
        self.descriptor = descriptor
    }

    public var localAddress: SocketAddress? { SocketAddress.bound(to: fd) }

    /// The next pending connection, nil when none is waiting.
    public func accept() throws(SystemError) -> StreamConnection? {
        while true {
            let accepted = clinux_accept_stream(fd)
            if accepted >= 0 { return StreamConnection(FileDescriptor(owning: accepted)) }
            switch -accepted {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default: throw SystemError("accept", code: -accepted)
            }
        }
    }
}

/// One accepted TCP connection, non-blocking; closed when released.
public final class StreamConnection {
    private let descriptor: FileDescriptor
    public var fd: Int32 { descriptor.rawValue }

    init(_ descriptor: consuming FileDescriptor) { self.descriptor = descriptor }

    /// Appends what has arrived to `buffer`, at most `limit` bytes. Returns the count (0: the peer
    /// closed), or nil when nothing is there yet.
    public func read(appendingTo buffer: inout [UInt8], limit: Int) throws(SystemError) -> Int? {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: limit))
        let fd = fd
        let outcome = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) -> Int? in try Syscall.nonBlocking("read") { Glibc.read(fd, raw.baseAddress! + start, limit) } }
        }
        switch outcome {
        case let .success(count):
            buffer.removeLast(limit - (count ?? 0))
            return count
        case let .failure(error):
            buffer.removeLast(limit)
            throw error
        }
    }

    /// Writes as much of `bytes` as the socket takes now; returns how much (0 when it is full).
    public func write(_ bytes: ArraySlice<UInt8>) throws(SystemError) -> Int {
        let fd = fd
        return try bytes.withUnsafeBytes { raw in
            Result { () throws(SystemError) -> Int in
                try Syscall.nonBlocking("send") { send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL)) } ?? 0
            }
        }.get()
    }
}

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

extension StreamConnection {
    /// The address the connection comes from (getpeername), or nil.
    public var peer: SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard status == 0 else { return nil }
        return withUnsafePointer(to: &storage) { SocketAddress($0) }
    }

    /// Sends FIN after what was written; reading still works.
    public func shutdownWrites() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }
}
