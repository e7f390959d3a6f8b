import Glibc
import WireFormat

/// Conversions between `SocketAddress` and the kernel's sockaddr structures.
extension SocketAddress {
    /// Reads a sockaddr_in or sockaddr_in6; v4-mapped IPv6 peers come back as IPv4.
    init?(_ storage: UnsafePointer<sockaddr_storage>) {
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            let sin = UnsafeRawPointer(storage).load(as: sockaddr_in.self)
            self.init(ip: .v4(UInt32(bigEndian: sin.sin_addr.s_addr)), port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = UnsafeRawPointer(storage).load(as: sockaddr_in6.self)
            let (high, low) = withUnsafeBytes(of: sin6.sin6_addr) { raw in
                (
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            }
            self.init(ip: IPAddress.v6(high, low).unmappingIPv4, port: UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }

    /// Reads `length` bytes of a sockaddr a library handed over (getifaddrs, getaddrinfo).
    init?(_ address: UnsafePointer<sockaddr>, length: Int) {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) {
            $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: min(length, MemoryLayout<sockaddr_storage>.size)))
        }
        guard let address = withUnsafePointer(to: &storage, { SocketAddress($0) }) else { return nil }
        self = address
    }

    /// Writes this address for a socket of `family`, mapping IPv4 into IPv6 for dual-stack sockets.
    /// Returns the sockaddr length, or nil when the socket cannot reach this family.
    func write(to storage: UnsafeMutablePointer<sockaddr_storage>, family: Int32) -> socklen_t? {
        let raw = UnsafeMutableRawPointer(storage)
        switch (family, ip) {
        case (AF_INET, .v4(let a)):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = a.bigEndian
            raw.storeBytes(of: sin, as: sockaddr_in.self)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case (AF_INET6, _):
            guard case let .v6(high, low) = ip.mappedToIPv6 else { return nil }
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { bytes in
                bytes.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
                bytes.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        default:
            return nil
        }
    }

    func withSockaddr<R, Failure: Error>(
        family: Int32, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Failure) -> R
    ) throws(Failure) -> R? {
        var storage = sockaddr_storage()
        return try withUnsafeMutablePointer(to: &storage) { pointer throws(Failure) -> R? in
            guard let length = write(to: pointer, family: family) else { return nil }
            return try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(Failure) -> R in
                try body(address, length)
            }
        }
    }
}

/// An address in the form IP_PKTINFO / IPV6_PKTINFO carry it: a family and 4 or 16 bytes.
struct PacketInfoAddress {
    var family: Int32 = 0
    var bytes: (UInt64, UInt64) = (0, 0)

    init() {}

    init(_ address: IPAddress) {
        switch address {
        case let .v4(a):
            family = AF_INET
            withUnsafeMutableBytes(of: &bytes) { $0.storeBytes(of: a.bigEndian, toByteOffset: 0, as: UInt32.self) }
        case let .v6(high, low):
            family = AF_INET6
            bytes = (high.bigEndian, low.bigEndian)
        }
    }

    var address: IPAddress? {
        switch family {
        case AF_INET: .v4(UInt32(bigEndian: UInt32(truncatingIfNeeded: withUnsafeBytes(of: bytes) { $0.load(as: UInt32.self) })))
        case AF_INET6: .v6(UInt64(bigEndian: bytes.0), UInt64(bigEndian: bytes.1))
        default: nil
        }
    }

    /// Calls `body` with the family and a pointer to the address bytes (family 0 for nil).
    static func with<R, Failure: Error>(_ address: IPAddress?, _ body: (Int32, UnsafePointer<UInt8>) throws(Failure) -> R) throws(Failure)
        -> R
    {
        var info = address.map(PacketInfoAddress.init) ?? PacketInfoAddress()
        let family = info.family
        return try withUnsafeBytes(of: &info.bytes) { raw throws(Failure) -> R in
            try body(family, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
    }
}

extension SocketAddress {
    /// The address a descriptor is bound to (getsockname), or nil.
    static func bound(to fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard status == 0 else { return nil }
        return withUnsafePointer(to: &storage) { SocketAddress($0) }
    }
}
