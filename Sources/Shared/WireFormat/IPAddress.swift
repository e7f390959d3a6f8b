/// An IPv4 or IPv6 address held by value (no allocation), comparable and hashable so it can key tables.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    /// High and low 64 bits, network order read as big-endian integers.
    case v6(UInt64, UInt64)

    @inlinable public var isIPv4: Bool { if case .v4 = self { true } else { false } }

    /// 0.0.0.0 or ::, in the family of `address` (a wildcard bind, an address not known).
    public static func unspecified(like address: IPAddress) -> IPAddress { address.isIPv4 ? .v4(0) : .v6(0, 0) }

    /// `::ffff:a.b.c.d` seen on dual-stack sockets is the IPv4 peer a.b.c.d.
    @inlinable public var unmappingIPv4: IPAddress {
        if case let .v6(high, low) = self, high == 0, low >> 32 == 0xffff {
            return .v4(UInt32(truncatingIfNeeded: low))
        }
        return self
    }

    public var mappedToIPv6: IPAddress {
        if case let .v4(a) = self { return .v6(0, 0xffff_0000_0000 | UInt64(a)) }
        return self
    }

    /// Addresses that must never appear as the source of a forwarded packet.
    public var isInvalidSource: Bool {
        switch self {
        case let .v4(a):
            let first = a >> 24
            return a == 0 || a == 0xffff_ffff || (first >= 224 && first <= 239) || first == 127
        case let .v6(high, low):
            return (high == 0 && low == 0) || (high == 0 && low == 1) || high >> 56 == 0xff
        }
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` and an embedded IPv4 tail).
    public init?(_ text: some StringProtocol) {
        if let v4 = Self.parseIPv4(Substring(text)) {
            self = .v4(v4)
        } else if let (high, low) = Self.parseIPv6(Substring(text)) {
            self = .v6(high, low)
        } else {
            return nil
        }
    }

    private static func parseIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        return value
    }

    private static func parseIPv6(_ text: Substring) -> (UInt64, UInt64)? {
        guard text.contains(":"), text.count <= 45 else { return nil }
        var groups: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { return nil }
        sawDoubleColon = halves.count == 2
        func parseGroups(_ part: String, into out: inout [UInt16], allowIPv4Tail: Bool) -> Bool {
            if part.isEmpty { return true }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, field) in fields.enumerated() {
                if index == fields.count - 1, allowIPv4Tail, field.contains("."), let v4 = parseIPv4(field) {
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xffff))
                    continue
                }
                guard !field.isEmpty, field.count <= 4, let group = UInt16(field, radix: 16) else { return false }
                out.append(group)
            }
            return true
        }
        guard parseGroups(halves[0], into: &groups, allowIPv4Tail: !sawDoubleColon) else { return nil }
        if sawDoubleColon {
            guard parseGroups(halves[1], into: &tail, allowIPv4Tail: true) else { return nil }
            guard groups.count + tail.count <= 7 else { return nil }
            groups += Array(repeating: 0, count: 8 - groups.count - tail.count) + tail
        }
        guard groups.count == 8 else { return nil }
        let high = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return (high, low)
    }

    public var description: String {
        switch self {
        case let .v4(a):
            return "\(a >> 24).\(a >> 16 & 0xff).\(a >> 8 & 0xff).\(a & 0xff)"
        case let .v6(high, low):
            let groups = (0..<8).map { i -> UInt16 in
                let word = i < 4 ? high : low
                return UInt16(truncatingIfNeeded: word >> (UInt64(3 - i % 4) * 16))
            }
            // Compress the longest run (length ≥ 2) of zero groups, as RFC 5952 asks.
            var bestStart = -1, bestLength = 0, runStart = -1
            for i in 0...8 {
                if i < 8, groups[i] == 0 {
                    if runStart < 0 { runStart = i }
                } else if runStart >= 0 {
                    if i - runStart > bestLength { bestStart = runStart; bestLength = i - runStart }
                    runStart = -1
                }
            }
            let hex = groups.map { String($0, radix: 16) }
            guard bestLength >= 2 else { return hex.joined(separator: ":") }
            let head = hex[0..<bestStart].joined(separator: ":")
            let tail = hex[(bestStart + bestLength)...].joined(separator: ":")
            return head + "::" + tail
        }
    }
}
