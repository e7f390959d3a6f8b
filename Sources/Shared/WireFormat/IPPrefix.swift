/// A CIDR prefix such as `198.18.0.0/15` or `2001:db8::/32`.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    public init?(address: IPAddress, length: Int) {
        let maxLength = address.isIPv4 ? 32 : 128
        guard (0...maxLength).contains(length) else { return nil }
        self.address = Self.masked(address, length)
        self.length = length
    }

    /// `a.b.c.d/n`, `v6/n`, or a bare address (a host prefix).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(parts[0]) else { return nil }
        let maxLength = address.isIPv4 ? 32 : 128
        var length = maxLength
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), parts[1].allSatisfy(\.isASCII) else { return nil }
            length = parsed
        }
        self.init(address: address, length: length)
    }

    /// An IPv4 prefix also contains the IPv4-mapped IPv6 form of its addresses (what dual-stack
    /// sockets report); an IPv6 prefix compares addresses as they are.
    /// Inlinable: the relay's policy checks a dozen prefixes per packet from another module.
    @inlinable
    public func contains(_ candidate: IPAddress) -> Bool {
        let candidate = address.isIPv4 ? candidate.unmappingIPv4 : candidate
        switch (address, candidate) {
        case (.v4, .v4), (.v6, .v6):
            return Self.masked(candidate, length) == address
        default:
            return false
        }
    }

    public var description: String { "\(address)/\(length)" }

    @usableFromInline
    static func masked(_ address: IPAddress, _ length: Int) -> IPAddress {
        switch address {
        case let .v4(a):
            let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
            return .v4(a & mask)
        case let .v6(high, low):
            let highMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
            let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << UInt64(128 - length))
            return .v6(high & highMask, low & lowMask)
        }
    }
}
