import CLinux
import Glibc
import WireFormat

/// A listening TCP socket (the metrics endpoint): non-blocking, close-on-exec, closed when released.
/// It is opened and bound as `UDPSocket`s are, and fails the same ways (`SocketFailure`).
public final class StreamListener {
    private let descriptor: OwnedDescriptor
    public var fd: Int32 { descriptor.rawValue }

    /// Binds and listens on `address` (port 0: the kernel picks one). A `::` address takes IPv4 too.
    public init(_ address: SocketAddress, backlog: Int32 = 64) throws(SocketFailure) {
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
            do {
                let accepted = try Syscall.shim("accept") { clinux_accept_stream(fd) }
                return StreamConnection(OwnedDescriptor(owning: accepted))
            } catch  where error.code == .connectionAbort {
                continue  // the peer gave up before we took it: the next one may be waiting
            } catch  where error.code == .wouldBlock {
                return nil
            }
        }
    }
}

/// One accepted TCP connection, non-blocking; closed when released.
public final class StreamConnection {
    private let descriptor: OwnedDescriptor
    public var fd: Int32 { descriptor.rawValue }

    init(_ descriptor: consuming OwnedDescriptor) { self.descriptor = descriptor }

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
