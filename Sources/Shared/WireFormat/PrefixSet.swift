/// Prefixes to test addresses against per packet, kept as network and mask words by family, so a
/// test is a masked compare per prefix of the address's family: what `IPPrefix.contains` answers,
/// without recomputing masks (the relay checks every inner destination against a few dozen).
public struct PrefixSet: Sendable, Equatable {
    @usableFromInline var v4: [IPv4Entry] = []
    @usableFromInline var v6: [IPv6Entry] = []

    @usableFromInline struct IPv4Entry: Sendable, Equatable {
        @usableFromInline var network: UInt32
        @usableFromInline var mask: UInt32
    }

    @usableFromInline struct IPv6Entry: Sendable, Equatable {
        @usableFromInline var high: UInt64
        @usableFromInline var low: UInt64
        @usableFromInline var highMask: UInt64
        @usableFromInline var lowMask: UInt64
    }

    public init(_ prefixes: [IPPrefix] = []) {
        for prefix in prefixes {
            switch prefix.address {
            case let .v4(network):
                let length = prefix.length
                v4.append(IPv4Entry(network: network, mask: length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)))
            case let .v6(high, low):
                let length = prefix.length
                let highMask: UInt64 = length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
                let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << UInt64(128 - length))
                v6.append(IPv6Entry(high: high, low: low, highMask: highMask, lowMask: lowMask))
            }
        }
    }

    public var isEmpty: Bool { v4.isEmpty && v6.isEmpty }

    /// Whether any prefix contains `candidate`; as `IPPrefix.contains`, an IPv4 prefix also
    /// contains the IPv4-mapped IPv6 form of its addresses.
    @inlinable
    public func contains(_ candidate: IPAddress) -> Bool {
        if case let .v4(address) = candidate.unmappingIPv4 {
            for entry in v4 where address & entry.mask == entry.network { return true }
        }
        if case let .v6(high, low) = candidate {
            for entry in v6 where high & entry.highMask == entry.high && low & entry.lowMask == entry.low { return true }
        }
        return false
    }
}
