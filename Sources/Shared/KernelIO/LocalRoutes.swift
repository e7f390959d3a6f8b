import CLinux
import Glibc
import WireFormat

/// What the kernel delivers to this host instead of forwarding it: the local routing table's
/// `local`, `broadcast` and `anycast` routes (RT_TABLE_LOCAL; RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST),
/// as prefixes, since one `local` route can cover a whole prefix (`ip route add local 198.18.9.0/24
/// dev lo`). Beside each configured address this holds its subnet's broadcast address and IPv6's
/// subnet-router anycast addresses, which an exact list of addresses misses. Read with one
/// RTM_GETROUTE dump per family over AF_NETLINK (which a sandbox must allow, as for getifaddrs).
public enum LocalRoutes {
    /// The local table's local, broadcast and anycast prefixes of both families, or an error when
    /// the kernel cannot be asked (the caller guards with them, so it must then refuse to run).
    public static func read() throws(SystemError) -> [IPPrefix] {
        try dump(family: AF_INET) + dump(family: AF_INET6)
    }

    static func dump(family: Int32) throws(SystemError) -> [IPPrefix] {
        var capacity = 1 << 16
        while true {
            var buffer = [UInt8](repeating: 0, count: capacity)
            let length = buffer.withUnsafeMutableBytes { clinux_route_dump(family, $0.baseAddress, UInt($0.count)) }
            if length == -Int(SystemError.Code.noSpace.rawValue), capacity < 1 << 26 {
                capacity *= 4
                continue
            }
            if length < 0 {
                throw SystemError(
                    "RTM_GETROUTE dump (needs AF_NETLINK sockets)", code: SystemError.Code(Int32(truncatingIfNeeded: -length)))
            }
            guard let prefixes = parse(buffer[0..<length]) else {
                throw SystemError("RTM_GETROUTE dump: malformed answer", code: .protocolError)
            }
            return prefixes
        }
    }

    /// The local prefixes in a route dump's netlink messages (every part, through NLMSG_DONE): nil
    /// when the bytes are malformed or end before NLMSG_DONE, so a short read never passes for a
    /// short table. Other tables, route types and families are skipped.
    public static func parse(_ bytes: ArraySlice<UInt8>) -> [IPPrefix]? {
        let header = Int(CLINUX_NLMSG_HDRLEN)
        var prefixes: [IPPrefix] = []
        var offset = bytes.startIndex
        while bytes.endIndex - offset >= header {
            let length = Int(hostUInt32(bytes, offset)), type = Int32(hostUInt16(bytes, offset + 4))
            guard length >= header, length <= bytes.endIndex - offset else { return nil }
            if type == CLINUX_NLMSG_DONE { return prefixes }
            if type == CLINUX_NLMSG_ERROR { return nil }
            if type == CLINUX_RTM_NEWROUTE {
                guard let route = route(bytes[(offset + header)..<(offset + length)]) else { return nil }
                if let prefix = route { prefixes.append(prefix) }
            }
            offset += min(align(length), bytes.endIndex - offset)
        }
        return nil
    }

    /// One RTM_NEWROUTE's payload: .some(prefix) for a local-table route of a kept type, .some(nil)
    /// for any other route, nil when malformed.
    static func route(_ payload: ArraySlice<UInt8>) -> IPPrefix?? {
        let base = payload.startIndex
        guard payload.count >= Int(CLINUX_RTMSG_LEN) else { return nil }
        let family = Int32(payload[base + Int(CLINUX_RTMSG_FAMILY)]), length = Int(payload[base + Int(CLINUX_RTMSG_DST_LEN)])
        var table = UInt32(payload[base + Int(CLINUX_RTMSG_TABLE)])
        let type = Int32(payload[base + Int(CLINUX_RTMSG_TYPE)])
        var destination: ArraySlice<UInt8>?
        var offset = base + align(Int(CLINUX_RTMSG_LEN))
        while payload.endIndex - offset >= 4 {
            let attributeLength = Int(hostUInt16(payload, offset)), attribute = Int32(hostUInt16(payload, offset + 2) & 0x3fff)
            guard attributeLength >= 4, attributeLength <= payload.endIndex - offset else { return nil }
            let value = payload[(offset + 4)..<(offset + attributeLength)]
            if attribute == CLINUX_RTA_DST { destination = value }
            if attribute == CLINUX_RTA_TABLE, value.count >= 4 { table = hostUInt32(value, value.startIndex) }
            offset += min(align(attributeLength), payload.endIndex - offset)
        }
        guard table == UInt32(CLINUX_RT_TABLE_LOCAL),
            type == CLINUX_RTN_LOCAL || type == CLINUX_RTN_BROADCAST || type == CLINUX_RTN_ANYCAST
        else { return .some(nil) }
        let width: Int
        switch family {
        case AF_INET: width = 4
        case AF_INET6: width = 16
        default: return .some(nil)
        }
        // No destination attribute: the route covers everything of its family (length 0).
        let address = destination ?? ArraySlice(repeating: 0, count: width)
        guard address.count == width, let prefix = IPPrefix(address: bigEndianAddress(address), length: length) else { return nil }
        return .some(prefix)
    }

    private static func align(_ length: Int) -> Int { (length + 3) & ~3 }

    /// Netlink's lengths and types are in the host's byte order.
    private static func hostUInt32(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { for index in 0..<4 { $0[index] = bytes[at + index] } }
        return value
    }

    private static func hostUInt16(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt16 {
        var value: UInt16 = 0
        withUnsafeMutableBytes(of: &value) { for index in 0..<2 { $0[index] = bytes[at + index] } }
        return value
    }

    private static func bigEndianAddress(_ bytes: ArraySlice<UInt8>) -> IPAddress {
        func word(_ from: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(0) { $0 << 8 | UInt64(bytes[bytes.startIndex + from + $1]) }
        }
        return bytes.count == 4 ? .v4(UInt32(word(0, 4))) : .v6(word(0, 8), word(8, 8))
    }
}
