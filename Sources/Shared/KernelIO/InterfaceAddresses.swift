import Glibc
import WireFormat

/// The addresses configured on this host's (or namespace's) interfaces.
public enum InterfaceAddresses {
    /// Every address, or an error when the kernel cannot be asked. glibc's getifaddrs asks over an
    /// AF_NETLINK socket: a sandbox that refuses that family (systemd's RestrictAddressFamilies
    /// without AF_NETLINK, a seccomp filter) makes it fail, and a caller that guards with this list
    /// must then refuse to run rather than guard with an empty one.
    public static func all() throws(SystemError) -> [IPAddress] { try of(interface: nil) }

    /// The addresses of the interface called `name` (every interface's when nil).
    public static func of(interface name: String?) throws(SystemError) -> [IPAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        _ = try Syscall.call("getifaddrs (needs AF_NETLINK sockets)") { getifaddrs(&list) }
        guard let list else { return [] }
        defer { freeifaddrs(list) }
        var addresses: [IPAddress] = []
        var entry: UnsafeMutablePointer<ifaddrs>? = list
        while let current = entry {
            if let raw = current.pointee.ifa_addr, name == nil || String(cString: current.pointee.ifa_name) == name {
                let family = Int32(raw.pointee.sa_family)
                if family == AF_INET || family == AF_INET6 {
                    let length = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
                    if let address = SocketAddress(raw, length: length) { addresses.append(address.ip) }
                }
            }
            entry = current.pointee.ifa_next
        }
        return addresses
    }
}
