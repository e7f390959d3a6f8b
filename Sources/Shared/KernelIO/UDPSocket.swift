import CLinux
import Glibc
import Synchronization
import WireFormat

/// What the engine needs of a datagram socket: batch receive and send, and a descriptor to wait on.
/// `UDPSocket` is the real one; TestSupport has an in-memory fake.
public protocol DatagramSocket: AnyObject, Sendable {
    /// Readable when `receive` has datagrams.
    var readinessDescriptor: Int32 { get }
    /// AF_INET or AF_INET6 (dual-stack when bound to `::`).
    var family: Int32 { get }
    /// Whether sends may carry a UDP_SEGMENT size (equal-length datagrams gathered into one message).
    var udpGSOEnabled: Bool { get }
    /// Receives up to `batch.slotCount` datagrams without waiting; 0 when none is ready.
    func receive(into batch: PacketBatch) throws(SystemError) -> Int
    /// Sends the queue and clears it (see `UDPSocket.send`).
    func send(_ queue: SendQueue, waker: Waker?) -> SendResult
    /// Sends one datagram (control replies, keepalives), from `source` when given (one of this
    /// host's addresses: the one the peer sent to, on a wildcard listener).
    func send(_ bytes: Span<UInt8>, to destination: SocketAddress, from source: IPAddress?) throws(SystemError)
}

extension DatagramSocket {
    /// Sends one datagram from the address the kernel chooses.
    public func send(_ bytes: Span<UInt8>, to destination: SocketAddress) throws(SystemError) {
        try send(bytes, to: destination, from: nil)
    }
}

/// Outcome of sending a queue: datagrams that left, and datagrams the kernel refused.
public struct SendResult: Sendable {
    public var sent = 0
    public var sentBytes = 0
    public var failed = 0
    public var lastError: SystemError?

    public init() {}
}

/// A non-blocking UDP socket with batch IO (recvmmsg/sendmmsg) over a `PacketBatch`.
public final class UDPSocket: DatagramSocket {
    private let descriptor: OwnedDescriptor
    var fd: Int32 { descriptor.rawValue }
    public var readinessDescriptor: Int32 { descriptor.rawValue }
    public let family: Int32
    private let udpGSO = Atomic<Bool>(false)
    /// What the kernel granted at set-up, for the feature line in the log.
    public let features: Features

    /// Socket options the kernel may grant in part or refuse without the socket being unusable.
    public struct Features: Sendable, CustomStringConvertible {
        /// Receive and send buffer sizes actually obtained (as the kernel reports them: twice what it
        /// accounts as payload room), and what was asked for.
        public var receiveBufferBytes: Int
        public var sendBufferBytes: Int
        public var requestedBufferBytes: Int
        /// SO_RXQ_OVFL: kernel drops at a full receive buffer are reported with each message.
        public var reportsDrops: Bool

        /// Whether the kernel granted less receive buffer than was asked for (it caps at net.core.rmem_max
        /// without CAP_NET_ADMIN).
        public var isReceiveBufferShort: Bool { receiveBufferBytes / 2 < requestedBufferBytes }

        public var description: String {
            let granted = isReceiveBufferShort ? " (asked \(requestedBufferBytes))" : ""
            return "rcvbuf=\(receiveBufferBytes) sndbuf=\(sendBufferBytes)\(granted) drop_count=\(reportsDrops ? "on" : "off")"
        }
    }

    /// Opens a socket for `address`'s family; binds it when `bind` is true (a listener), otherwise the
    /// kernel picks a source port on first send.
    /// With `reusePort`, several sockets share the address (SO_REUSEPORT) and the kernel hands each
    /// flow (source and destination address and port) to one of them; see `bindGroup`.
    /// Required options (dual-stack on `::`, SO_REUSEPORT when asked) that fail are errors; buffer
    /// sizes and drop reports are taken as granted and reported in `features`. `socketBufferBytes` is
    /// asked for both buffers, receive (SO_RCVBUF) and send (SO_SNDBUF).
    public init(
        for address: SocketAddress, bind shouldBind: Bool, socketBufferBytes: Int32 = 4 << 20,
        reusePort: Bool = false
    ) throws(SocketFailure) {
        let family = address.ip.isIPv4 ? AF_INET : AF_INET6
        let descriptor = try Self.open(family: family, type: SOCK_DGRAM)
        let fd = descriptor.rawValue
        do throws(SystemError) {
            if family == AF_INET6 {
                try Syscall.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0, "IPV6_V6ONLY=0")  // `::` takes IPv4 peers too
            }
            if reusePort { try Syscall.setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") }
        } catch {
            throw .system(error)
        }
        // Kernel drops at a full receive buffer are reported with each message (see `kernelDrops`).
        let reportsDrops = (try? Syscall.setOption(fd, SOL_SOCKET, SO_RXQ_OVFL, 1, "SO_RXQ_OVFL")) != nil
        // A wildcard listener learns which of its addresses each datagram was sent to, so replies
        // leave from that one (a client accepts replies only from the address it sent to).
        if shouldBind, address.ip == IPAddress.unspecified(like: address.ip) {
            do throws(SystemError) {
                _ = try Syscall.call("IP_PKTINFO") { clinux_enable_packet_info(fd, family) }
            } catch {
                throw .system(error)
            }
        }
        // SO_*BUFFORCE passes net.core.rmem_max/wmem_max where privileged; SO_*BUF is capped at them.
        for (force, plain) in [(SO_RCVBUFFORCE, SO_RCVBUF), (SO_SNDBUFFORCE, SO_SNDBUF)] {
            if (try? Syscall.setOption(fd, SOL_SOCKET, force, socketBufferBytes, "buffer size")) == nil {
                _ = try? Syscall.setOption(fd, SOL_SOCKET, plain, socketBufferBytes, "buffer size")
            }
        }
        let features = Features(
            receiveBufferBytes: Int((try? Syscall.option(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF")) ?? 0),
            sendBufferBytes: Int((try? Syscall.option(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF")) ?? 0),
            requestedBufferBytes: Int(socketBufferBytes), reportsDrops: reportsDrops)
        // `descriptor` is still owned here: throwing closes it, once.
        if shouldBind { try Self.bind(fd, to: address, family: family) }
        self.descriptor = descriptor
        self.family = family
        self.features = features
    }

    /// A non-blocking, close-on-exec socket of `type` (the UDP sockets, the metrics listener).
    static func open(family: Int32, type: __socket_type) throws(SocketFailure) -> OwnedDescriptor {
        let flags = Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        do throws(SystemError) {
            return OwnedDescriptor(owning: try Syscall.call("socket") { socket(family, flags, 0) })
        } catch {
            throw .system(error)
        }
    }

    /// Binds `fd` to `address`, telling the usual refusals apart.
    static func bind(_ fd: Int32, to address: SocketAddress, family: Int32) throws(SocketFailure) {
        do throws(SystemError) {
            _ = try Syscall.call("bind \(address)") { address.withSockaddr(family: family) { Glibc.bind(fd, $0, $1) } ?? -1 }
        } catch {
            switch error.code {
            case .addressInUse: throw .addressInUse(address)
            case .addressNotAvailable: throw .addressNotAvailable(address)
            case .permissionDenied, .notPermitted: throw .permissionDenied(address)
            default: throw .system(error)
            }
        }
    }

    /// Binds `count` sockets to one address (one plain socket when `count` is 1). A port of 0 gets one
    /// free port for all of them. A plain bind first proves nobody holds the address: SO_REUSEPORT
    /// alone would let this group join another process's (same user) and split its traffic silently.
    public static func bindGroup(_ address: SocketAddress, count: Int) throws(SocketFailure) -> [UDPSocket] {
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
    public func enableUDPGSO() -> Bool {
        // UDP_SEGMENT is set per message; reading the option back proves the kernel knows it.
        let supported = (try? Syscall.option(fd, Int32(IPPROTO_UDP), CLINUX_UDP_SEGMENT, "UDP_SEGMENT")) != nil
        udpGSO.store(supported, ordering: .relaxed)
        return supported
    }

    /// Turns on UDP GRO: the kernel may hand over several datagrams of one flow in one receive.
    /// Counted as on only when the kernel reads it back as on.
    @discardableResult
    public func enableUDPGRO() -> Bool {
        guard (try? Syscall.setOption(fd, Int32(IPPROTO_UDP), CLINUX_UDP_GRO, 1, "UDP_GRO")) != nil else { return false }
        return ((try? Syscall.option(fd, Int32(IPPROTO_UDP), CLINUX_UDP_GRO, "UDP_GRO")) ?? 0) != 0
    }

    /// Whether sends may carry a UDP_SEGMENT size (it is switched off if the kernel refuses one).
    public var udpGSOEnabled: Bool { udpGSO.load(ordering: .relaxed) }

    public var localAddress: SocketAddress? { SocketAddress.bound(to: fd) }

    public func receive(into batch: PacketBatch) throws(SystemError) -> Int {
        try receive(into: batch, waker: nil, timeoutMilliseconds: 0)
    }

    /// Receives up to `batch.slotCount` datagrams, waiting up to `timeoutMilliseconds` for the first.
    /// Returns the number received (also `batch.count`); 0 on timeout or wake.
    public func receive(into batch: PacketBatch, waker: Waker?, timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        batch.prepareForReceive()
        let fd = fd
        while true {
            let received: Int32?
            do {
                received = try Syscall.nonBlocking("recvmmsg") {
                    clinux_recvmmsg(fd, batch.messages, UInt32(batch.slotCount), Int32(MSG_DONTWAIT))
                }
            } catch  where error.code == .connectionRefused || error.code == .noRouteToHost || error.code == .networkUnreachable {
                // An ICMP error from an earlier send surfaced here; it says nothing about what is queued.
                continue
            } catch {
                batch.finishReceive(count: 0)
                throw error
            }
            if let received {
                batch.finishReceive(count: Int(received))
                return Int(received)
            }
            batch.finishReceive(count: 0)
            guard timeoutMilliseconds != 0 else { return 0 }
            let seen = waitFor(fd, .read, waker: waker, timeoutMilliseconds: timeoutMilliseconds)
            guard seen.isReady, !seen.isWoken else { return 0 }
        }
    }

    /// Sends the queue and clears it. Waits (bounded) for buffer space rather than dropping under
    /// momentary pressure; a message the kernel rejects (ICMP-refused peer, no route) is counted as
    /// failed and the rest still go. EIO on a segmented send means the route cannot do UDP GSO:
    /// UDP GSO is switched off for later sends.
    public func send(_ queue: SendQueue, waker: Waker?) -> SendResult {
        var result = SendResult()
        var next = 0
        let total = queue.count
        var stalls = 0
        let fd = fd
        while next < total {
            let sent: Int32
            do {
                sent = try Syscall.call("sendmmsg") { clinux_sendmmsg(fd, queue.messages + next, UInt32(total - next), 0) }
            } catch {
                if error.code == .wouldBlock || error.code == .noBufferSpace, stalls < 100 {
                    stalls += 1
                    if waitFor(fd, .write, waker: waker, timeoutMilliseconds: 10).isWoken { break }
                    continue
                }
                if error.code == .ioError, queue.datagramCount(of: next) > 1 { udpGSO.store(false, ordering: .relaxed) }
                result.failed += queue.datagramCount(of: next)
                result.lastError = error
                next += 1
                continue
            }
            for index in next..<(next + Int(sent)) {
                result.sentBytes += Int(queue.messages[index].msg_len)
                result.sent += queue.datagramCount(of: index)
            }
            next += Int(sent)
            stalls = 0
        }
        for index in next..<total { result.failed += queue.datagramCount(of: index) }
        queue.clear()
        return result
    }

    /// Sends one datagram (control paths and the probe generator's slow mode).
    public func send(_ bytes: Span<UInt8>, to destination: SocketAddress, from source: IPAddress?) throws(SystemError) {
        let fd = fd, family = family
        guard
            let status: Int = try bytes.withUnsafeBytes({ raw throws(SystemError) -> Int? in
                try destination.withSockaddr(family: family) { address, length throws(SystemError) in
                    // Without a source there is no control message: a plain sendto.
                    try PacketInfoAddress.with(source) { sourceFamily, sourceBytes throws(SystemError) in
                        try Syscall.call("sendmsg \(destination)") {
                            clinux_send_from(fd, raw.baseAddress, UInt(raw.count), address, length, sourceFamily, sourceBytes)
                        }
                    }
                }
            })
        else { throw SystemError("sendto \(destination)", code: .addressFamilyNotSupported) }
        _ = status
    }

    /// The source address the kernel would send from toward `destination` (from the route), or nil
    /// if it cannot tell.
    public static func sourceAddress(toward destination: SocketAddress) -> IPAddress? {
        withConnectedProbe(toward: destination) { probe, _ in SocketAddress.bound(to: probe)?.ip }
    }

    /// The path MTU the kernel would use toward `destination` (from the route), or nil if it cannot tell.
    public static func pathMTU(toward destination: SocketAddress) -> Int? {
        withConnectedProbe(toward: destination) { probe, family in
            let mtu =
                family == AF_INET
                ? try? Syscall.option(probe, Int32(IPPROTO_IP), CLINUX_IP_MTU, "IP_MTU")
                : try? Syscall.option(probe, Int32(IPPROTO_IPV6), CLINUX_IPV6_MTU, "IPV6_MTU")
            guard let mtu, mtu > 0 else { return nil }
            return Int(mtu)
        }
    }

    /// Asks the routing table about `destination` through a UDP socket connected to it, which sends
    /// nothing and is closed on return: `body` gets its descriptor and address family.
    private static func withConnectedProbe<Answer>(
        toward destination: SocketAddress,
        _ body: (Int32, Int32) -> Answer?
    ) -> Answer? {
        let family = destination.ip.isIPv4 ? AF_INET : AF_INET6
        guard let raw = try? Syscall.call("socket", { socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
        else { return nil }
        let probe = OwnedDescriptor(owning: raw)
        guard destination.withSockaddr(family: family, { connect(probe.rawValue, $0, $1) }) == 0 else { return nil }
        return body(probe.rawValue, family)
    }
}
