import Glibc
import WireFormat

/// Turns user text (`host:port`, `[v6]:port`, `host`, `:port`) into a socket address, resolving names.
public enum AddressResolver {
    public enum Failure: Error, CustomStringConvertible, Sendable {
        case malformed(String, why: String)
        case unresolvable(String, why: String)

        public var isMalformed: Bool { if case .malformed = self { true } else { false } }

        public var description: String {
            switch self {
            case let .malformed(text, why): "malformed address '\(text)': \(why)"
            case let .unresolvable(host, why): "cannot resolve '\(host)': \(why)"
            }
        }
    }

    /// Splits `text` into host and port. An empty host means "any address".
    public static func split(_ text: String, defaultPort: UInt16?) throws(Failure) -> (host: String, port: UInt16) {
        var host = Substring(text)
        var portText: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw .malformed(text, why: "missing ']'") }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw .malformed(text, why: "expected ':' after ']'") }
                portText = rest.dropFirst()
            }
        } else if host.filter({ $0 == ":" }).count == 1, let colon = host.lastIndex(of: ":") {
            portText = host[host.index(after: colon)...]
            host = host[..<colon]
        } else if host.allSatisfy(\.isNumber), !host.isEmpty, IPAddress(host) == nil {
            portText = host  // a bare port number
            host = ""
        }
        let port: UInt16
        if let portText {
            guard let parsed = UInt16(portText), parsed > 0 else {
                throw .malformed(text, why: "port must be a number from 1 to 65535")
            }
            port = parsed
        } else if let defaultPort {
            port = defaultPort
        } else {
            throw .malformed(text, why: "expected HOST:PORT")
        }
        return (String(host), port)
    }

    /// Resolves `text` to one endpoint. An empty host resolves to `anyAddress`.
    public static func resolve(
        _ text: String, defaultPort: UInt16?, anyAddress: IPAddress = .v4(0)
    ) throws(Failure) -> SocketAddress {
        let (host, port) = try split(text, defaultPort: defaultPort)
        if host.isEmpty { return SocketAddress(ip: anyAddress, port: port) }
        if let literal = IPAddress(host) { return SocketAddress(ip: literal, port: port) }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" }) else {
            throw .malformed(text, why: "'\(host)' is neither an IP address nor a host name")
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let list else {
            throw .unresolvable(host, why: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        var candidate: UnsafeMutablePointer<addrinfo>? = list
        var fallback: IPAddress?
        while let entry = candidate {
            if let sockaddr = entry.pointee.ai_addr, let address = SocketAddress(sockaddr, length: Int(entry.pointee.ai_addrlen)) {
                if address.ip.isIPv4 { return SocketAddress(ip: address.ip, port: port) }
                fallback = fallback ?? address.ip
            }
            candidate = entry.pointee.ai_next
        }
        guard let fallback else { throw .unresolvable(host, why: "no IPv4 or IPv6 address") }
        return SocketAddress(ip: fallback, port: port)
    }
}
