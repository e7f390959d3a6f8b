import Glibc

/// The addresses configured on this host's (or namespace's) interfaces.
public enum InterfaceAddresses {
    public static func all() -> [IPAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let list else { return [] }
        defer { freeifaddrs(list) }
        var addresses: [IPAddress] = []
        var entry: UnsafeMutablePointer<ifaddrs>? = list
        while let current = entry {
            if let raw = current.pointee.ifa_addr {
                let family = Int32(raw.pointee.sa_family)
                if family == AF_INET || family == AF_INET6 {
                    var storage = sockaddr_storage()
                    let length = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
                    withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: length)) }
                    if let address = withUnsafePointer(to: &storage, { SocketAddress($0) }) { addresses.append(address.ip) }
                }
            }
            entry = current.pointee.ifa_next
        }
        return addresses
    }
}
