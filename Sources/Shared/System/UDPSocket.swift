import CLinux
import Glibc
import Synchronization

/// A non-blocking UDP socket with batch IO (recvmmsg/sendmmsg) over a `PacketBatch`.
public final class UDPSocket: Sendable {
    let fd: Int32
    /// AF_INET or AF_INET6 (dual-stack when bound to `::`).
    public let family: Int32
    private let segmentation = Atomic<Bool>(false)

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case addressInUse(SocketAddress)
        case addressNotAvailable(SocketAddress)
        case permissionDenied(SocketAddress)
        case system(SystemError)

        public var description: String {
            switch self {
            case let .addressInUse(address):
                "address \(address) is already in use (another udptun or socat running? check: ss -ulpn 'sport = :\(address.port)')"
            case let .addressNotAvailable(address):
                "cannot bind \(address): the address is not assigned to any interface here"
            case let .permissionDenied(address):
                "no permission to bind \(address) (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            case let .system(error):
                error.description
            }
        }
    }

    /// Opens a socket for `address`'s family; binds it when `bind` is true (a listener), otherwise the
    /// kernel picks a source port on first send.
    /// With `reusePort`, several sockets share the address (SO_REUSEPORT) and the kernel hands each
    /// flow (source and destination address and port) to one of them; see `bindGroup`.
    public init(for address: SocketAddress, bind shouldBind: Bool, receiveBufferBytes: Int32 = 4 << 20,
                reusePort: Bool = false) throws(Failure) {
        let family = address.ip.isIPv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(SystemError("socket")) }
        self.fd = fd
        self.family = family
        if family == AF_INET6 {
            var off: Int32 = 0  // `::` accepts IPv4 peers too
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &off, 4)
        }
        // Kernel drops at a full receive buffer are reported with each message (see `kernelDrops`).
        _ = clinux_socket_enable_drop_count(fd)
        var bufferBytes = receiveBufferBytes
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufferBytes, 4)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufferBytes, 4)
        if reusePort {
            var on: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, 4)
        }
        if shouldBind {
            let status = address.withSockaddr(family: family) { Glibc.bind(fd, $0, $1) } ?? -1
            if status != 0 {
                let code = clinux_errno()
                close(fd)
                switch code {
                case EADDRINUSE: throw .addressInUse(address)
                case EADDRNOTAVAIL: throw .addressNotAvailable(address)
                case EACCES, EPERM: throw .permissionDenied(address)
                default: throw .system(SystemError("bind \(address)", code: code))
                }
            }
        }
    }

    deinit { close(fd) }

    /// Binds `count` sockets to one address (one plain socket when `count` is 1). A port of 0 gets one
    /// free port for all of them. A plain bind first proves nobody holds the address: SO_REUSEPORT
    /// alone would let this group join another process's (same user) and split its traffic silently.
    public static func bindGroup(_ address: SocketAddress, count: Int) throws(Failure) -> [UDPSocket] {
        precondition(count >= 1, "a group needs at least one socket")
        guard count > 1 else { return [try UDPSocket(for: address, bind: true)] }
        var shared = address
        do {
            let probe = try UDPSocket(for: address, bind: true)
            if let port = probe.localAddress?.port { shared.port = port }
        }  // the probe closes here, freeing the port for the group
        var sockets: [UDPSocket] = []
        for _ in 0..<count { sockets.append(try UDPSocket(for: shared, bind: true, reusePort: true)) }
        return sockets
    }

    /// Turns on UDP GSO for sends if the kernel supports it. Returns whether it is on.
    @discardableResult
    public func enableSegmentation() -> Bool {
        let supported = clinux_udp_probe_gso(fd) == 0
        segmentation.store(supported, ordering: .relaxed)
        return supported
    }

    /// Turns on UDP GRO: the kernel may hand over several datagrams of one flow in one receive.
    @discardableResult
    public func enableCoalescing() -> Bool {
        clinux_udp_enable_gro(fd) == 0
    }

    /// Whether sends may carry a UDP_SEGMENT size (it is switched off if the kernel refuses one).
    public var segmentationEnabled: Bool { segmentation.load(ordering: .relaxed) }

    public var localAddress: SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard status == 0 else { return nil }
        return withUnsafePointer(to: &storage) { SocketAddress($0) }
    }

    /// Waits until a datagram is readable, the timeout passes, or `waker` fires.
    func waitReadable(waker: Waker?, timeoutMilliseconds: Int32) -> Readiness {
        waitFor(fd, events: Int16(POLLIN), waker: waker, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Receives up to `batch.slotCount` datagrams, waiting up to `timeoutMilliseconds` for the first.
    /// Returns the number received (also `batch.count`); 0 on timeout or wake.
    public func receive(into batch: PacketBatch, waker: Waker?, timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        batch.prepareForReceive()
        while true {
            let received = clinux_recvmmsg(fd, batch.messages, UInt32(batch.slotCount), Int32(MSG_DONTWAIT))
            if received >= 0 {
                batch.finishReceive(count: Int(received))
                return Int(received)
            }
            let code = clinux_errno()
            switch code {
            case EINTR:
                continue
            case EAGAIN:
                batch.finishReceive(count: 0)
                guard timeoutMilliseconds != 0,
                      waitReadable(waker: waker, timeoutMilliseconds: timeoutMilliseconds) == .ready else { return 0 }
            case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH:
                // An ICMP error from an earlier send surfaced here; it says nothing about what is queued.
                continue
            default:
                batch.finishReceive(count: 0)
                throw SystemError("recvmmsg", code: code)
            }
        }
    }

    /// Outcome of sending a queue: datagrams that left, and datagrams the kernel refused.
    public struct SendResult: Sendable {
        public var sent = 0
        public var sentBytes = 0
        public var failed = 0
        public var lastError: SystemError?
    }

    /// Sends the queue and clears it. Waits (bounded) for buffer space rather than dropping under
    /// momentary pressure; a message the kernel rejects (ICMP-refused peer, no route) is counted as
    /// failed and the rest still go. EIO on a segmented send means the route cannot do UDP GSO:
    /// segmentation is switched off for later sends.
    public func send(_ queue: SendQueue, waker: Waker?) -> SendResult {
        var result = SendResult()
        var next = 0
        let total = queue.count
        var stalls = 0
        while next < total {
            let sent = clinux_sendmmsg(fd, queue.messages + next, UInt32(total - next), 0)
            if sent > 0 {
                for index in next..<(next + Int(sent)) {
                    result.sentBytes += Int(queue.messages[index].msg_len)
                    result.sent += queue.datagramCount(of: index)
                }
                next += Int(sent)
                stalls = 0
                continue
            }
            let code = clinux_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == ENOBUFS, stalls < 100 {
                stalls += 1
                if waitFor(fd, events: Int16(POLLOUT), waker: waker, timeoutMilliseconds: 10) == .woken { break }
                continue
            }
            if code == EIO, queue.datagramCount(of: next) > 1 { segmentation.store(false, ordering: .relaxed) }
            result.failed += queue.datagramCount(of: next)
            result.lastError = SystemError("sendmmsg", code: code)
            next += 1
        }
        for index in next..<total { result.failed += queue.datagramCount(of: index) }
        queue.clear()
        return result
    }

    /// Sends one datagram (control paths and the probe generator's slow mode).
    public func send(_ bytes: Span<UInt8>, to destination: SocketAddress) throws(SystemError) {
        let status: Int? = bytes.withUnsafeBytes { raw in
            destination.withSockaddr(family: family) { address, length in
                sendto(fd, raw.baseAddress, raw.count, 0, address, length)
            }
        }
        guard let status else { throw SystemError("sendto \(destination)", code: EAFNOSUPPORT) }
        if status < 0 { throw SystemError("sendto \(destination)") }
    }

    /// The path MTU the kernel would use toward `destination` (from the route, via a connected probe
    /// socket), or nil if it cannot tell.
    public static func pathMTU(toward destination: SocketAddress) -> Int? {
        let family = destination.ip.isIPv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let connected = destination.withSockaddr(family: family) { connect(fd, $0, $1) } ?? -1
        guard connected == 0 else { return nil }
        var mtu: Int32 = 0
        var length = socklen_t(4)
        let status = family == AF_INET
            ? getsockopt(fd, Int32(IPPROTO_IP), CLINUX_IP_MTU, &mtu, &length)
            : getsockopt(fd, Int32(IPPROTO_IPV6), CLINUX_IPV6_MTU, &mtu, &length)
        return status == 0 && mtu > 0 ? Int(mtu) : nil
    }
}
