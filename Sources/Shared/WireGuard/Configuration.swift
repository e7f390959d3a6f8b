import WireFormat

/// Where a peer is reached: an address, or a host name left for the CLI layer to resolve (this
/// module makes no system calls).
public enum WireGuardEndpoint: Hashable, Sendable, CustomStringConvertible {
    case address(SocketAddress)
    case host(String, port: UInt16)

    /// `a.b.c.d:port`, `[v6]:port` or `name:port`, as wg(8) takes it.
    public init?(_ text: some StringProtocol) {
        let text = Substring(text)
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]),
            text[text.index(after: colon)...].allSatisfy(\.isASCII)
        else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), let ip = IPAddress(host.dropFirst().dropLast()), !ip.isIPv4 else { return nil }
            self = .address(SocketAddress(ip: ip, port: port))
            return
        }
        if let ip = IPAddress(host), ip.isIPv4 {
            self = .address(SocketAddress(ip: ip, port: port))
            return
        }
        host = host.prefix(254)
        guard !host.isEmpty, host.count <= 253,
            host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") })
        else { return nil }
        self = .host(String(host), port: port)
    }

    public var description: String {
        switch self {
        case .address(let address): address.description
        case .host(let name, let port): "\(name):\(port)"
        }
    }
}

/// One `[Peer]` section (or one peer of a device's state).
public struct WireGuardPeer: Sendable, Equatable {
    public var publicKey: PublicKey
    /// nil when none (an all-zero key means none, as in wg).
    public var presharedKey: PresharedKey?
    public var endpoint: WireGuardEndpoint?
    /// Seconds; 0 is off.
    public var persistentKeepalive: UInt16
    /// In the order given, without repeats.
    public var allowedIPs: [IPPrefix]

    public init(
        publicKey: PublicKey, presharedKey: PresharedKey? = nil, endpoint: WireGuardEndpoint? = nil,
        persistentKeepalive: UInt16 = 0, allowedIPs: [IPPrefix] = []
    ) {
        self.publicKey = publicKey
        self.presharedKey = presharedKey.flatMap { $0.bytes.allSatisfy { $0 == 0 } ? nil : $0 }
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.allowedIPs = allowedIPs
    }

    public static func == (a: WireGuardPeer, b: WireGuardPeer) -> Bool {
        a.publicKey == b.publicKey && a.presharedKey?.bytes == b.presharedKey?.bytes && a.endpoint == b.endpoint
            && a.persistentKeepalive == b.persistentKeepalive && a.allowedIPs == b.allowedIPs
    }
}

/// What `wg setconf` takes and `wg showconf` prints: the interface and its peers.
public struct WireGuardConfiguration: Sendable, Equatable {
    public var privateKey: PrivateKey?
    /// 0 means "pick one" (wg prints none).
    public var listenPort: UInt16
    /// 0 is off.
    public var fwmark: UInt32
    public var peers: [WireGuardPeer]

    public init(privateKey: PrivateKey? = nil, listenPort: UInt16 = 0, fwmark: UInt32 = 0, peers: [WireGuardPeer] = []) {
        self.privateKey = privateKey
        self.listenPort = listenPort
        self.fwmark = fwmark
        self.peers = peers
    }

    public static func == (a: WireGuardConfiguration, b: WireGuardConfiguration) -> Bool {
        a.privateKey?.bytes == b.privateKey?.bytes && a.listenPort == b.listenPort && a.fwmark == b.fwmark
            && a.peers == b.peers
    }

    /// Bounds on what is parsed or applied: a file or a request beyond them is refused, not truncated.
    public enum Limits {
        public static let fileBytes = 32 << 20
        public static let lineBytes = 4096
        public static let peers = 100_000
        public static let allowedIPsPerPeer = 65_536
    }

    /// The `wg showconf` text (same order and spelling as wireguard-tools' showconf.c).
    public var text: String {
        var out = "[Interface]\n"
        if listenPort != 0 { out += "ListenPort = \(listenPort)\n" }
        if fwmark != 0 { out += "FwMark = 0x\(String(fwmark, radix: 16))\n" }
        if let privateKey { out += "PrivateKey = \(base64(privateKey.bytes))\n" }
        out += "\n"
        for (index, peer) in peers.enumerated() {
            out += "[Peer]\nPublicKey = \(peer.publicKey.base64)\n"
            if let psk = peer.presharedKey { out += "PresharedKey = \(base64(psk.bytes))\n" }
            if !peer.allowedIPs.isEmpty { out += "AllowedIPs = \(peer.allowedIPs.map(\.description).joined(separator: ", "))\n" }
            if let endpoint = peer.endpoint { out += "Endpoint = \(endpoint)\n" }
            if peer.persistentKeepalive != 0 { out += "PersistentKeepalive = \(peer.persistentKeepalive)\n" }
            if index < peers.count - 1 { out += "\n" }
        }
        return out
    }

    /// Adds `prefix` to peer `index`, taking it from any other peer that had it: a device routes
    /// each prefix to one peer, and wg gives it to the last one named (kernel and wireguard-go alike).
    /// Overlapping but different prefixes stay on both peers (longest match routes).
    mutating func addAllowedIP(_ prefix: IPPrefix, toPeer index: Int, owners: inout [IPPrefix: Int]) throws(WireGuardConfigurationError) {
        if let owner = owners[prefix] {
            if owner == index { return }
            peers[owner].allowedIPs.removeAll { $0 == prefix }
        }
        guard peers[index].allowedIPs.count < Limits.allowedIPsPerPeer else {
            throw WireGuardConfigurationError(line: 0, message: "more than \(Limits.allowedIPsPerPeer) allowed IPs for one peer")
        }
        peers[index].allowedIPs.append(prefix)
        owners[prefix] = index
    }
}

func base64(_ bytes: [UInt8]) -> String {
    // PublicKey has the encoder; any 32 bytes make one.
    PublicKey(bytes: bytes)!.base64
}

/// A configuration file refused: the line (1-based; 0 for the file as a whole) and what is wrong.
public struct WireGuardConfigurationError: Error, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String
    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }
    public var description: String { line == 0 ? message : "line \(line): \(message)" }
}

extension WireGuardConfiguration {
    /// wg-quick(8)'s own keys: wg(8) refuses them too, and so does udptun, saying what to use.
    static let wgQuickKeys: [String: String] = [
        "address": "give the tunnel addresses with udptun's own options",
        "dns": "udptun does not change the resolver configuration",
        "mtu": "udptun sizes its tunnel from its own --mtu option",
        "table": "udptun installs no routes from the configuration file",
        "preup": "udptun runs no hook commands", "postup": "udptun runs no hook commands",
        "predown": "udptun runs no hook commands", "postdown": "udptun runs no hook commands",
        "saveconfig": "udptun never writes the configuration file"
    ]

    /// Parses the `wg setconf` format (wg(8) "CONFIGURATION FILE FORMAT"): `[Interface]` with
    /// PrivateKey, ListenPort, FwMark; `[Peer]` with PublicKey, PresharedKey, AllowedIPs, Endpoint,
    /// PersistentKeepalive. Keys and section names are case-insensitive, `#` starts a comment,
    /// whitespace is ignored, AllowedIPs lines add up. A peer's public key may appear once.
    public init(parsing text: String) throws(WireGuardConfigurationError) {
        guard text.utf8.count <= Limits.fileBytes else {
            throw WireGuardConfigurationError(line: 0, message: "the file is over \(Limits.fileBytes) bytes")
        }
        self.init()
        enum Section { case none, interface, peer }
        var section = Section.none
        var peerLine = 0
        var seen: [PublicKey: Int] = [:]
        var owners: [IPPrefix: Int] = [:]
        var lineNumber = 0
        func fail(_ message: String) -> WireGuardConfigurationError {
            WireGuardConfigurationError(line: lineNumber, message: message)
        }
        var peerOpen = false
        // "\r\n" is one Character in Swift: a file written on Windows has lines too.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            guard rawLine.utf8.count <= Limits.lineBytes else { throw fail("line over \(Limits.lineBytes) bytes") }
            let line = String(rawLine.prefix { $0 != "#" }.filter { !$0.isWhitespace })
            if line.isEmpty { continue }
            if line.hasPrefix("[") {
                switch line.lowercased() {
                case "[interface]": section = .interface
                case "[peer]":
                    if peerOpen { throw WireGuardConfigurationError(line: peerLine, message: "a [Peer] section without PublicKey") }
                    section = .peer
                    peerOpen = true
                    peerLine = lineNumber
                default: throw fail("unknown section \(line): expected [Interface] or [Peer]")
                }
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { throw fail("expected Key = Value, found \"\(line)\"") }
            let key = line[..<equals].lowercased()
            let value = line[line.index(after: equals)...]
            if let advice = Self.wgQuickKeys[key] {
                throw fail("\(line[..<equals]) belongs to wg-quick, not to wg's configuration file: \(advice)")
            }
            switch (section, key) {
            case (.none, _):
                throw fail("\(line[..<equals]) before any [Interface] or [Peer] section")
            case (.interface, "privatekey"):
                guard let parsed = PrivateKey(base64: value), value.count == 44 else {
                    throw fail("PrivateKey is not a base64 32-byte key")
                }
                privateKey = parsed
            case (.interface, "listenport"):
                guard let port = UInt16(value) else { throw fail("ListenPort \"\(value)\" is not a port 0-65535") }
                listenPort = port
            case (.interface, "fwmark"):
                guard let mark = Self.parseFwmark(value) else { throw fail("FwMark \"\(value)\" is not off or a 32-bit number") }
                fwmark = mark
            case (.peer, "publickey"):
                guard let key = PublicKey(base64: value), value.count == 44 else { throw fail("PublicKey is not a base64 32-byte key") }
                if peerOpen == false { throw fail("a second PublicKey in one [Peer] section") }
                if let first = seen[key] { throw fail("peer \(key) is already defined on line \(first)") }
                guard peers.count < Limits.peers else { throw fail("more than \(Limits.peers) peers") }
                seen[key] = lineNumber
                peers.append(WireGuardPeer(publicKey: key))
                peerOpen = false
            case (.peer, _) where peerOpen:
                throw fail("\(line[..<equals]) before the peer's PublicKey (put PublicKey first)")
            case (.peer, "presharedkey"):
                guard let psk = PresharedKey(base64: value), value.count == 44 else {
                    throw fail("PresharedKey is not a base64 32-byte key")
                }
                peers[peers.count - 1].presharedKey = psk.bytes.allSatisfy { $0 == 0 } ? nil : psk
            case (.peer, "allowedips"):
                if value.isEmpty { continue }  // "AllowedIPs =" adds nothing, as in wg
                for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let prefix = IPPrefix(item) else {
                        throw fail("AllowedIPs entry \"\(item)\" is not an address or CIDR prefix")
                    }
                    do { try addAllowedIP(prefix, toPeer: peers.count - 1, owners: &owners) } catch { throw fail(error.message) }
                }
            case (.peer, "endpoint"):
                guard let endpoint = WireGuardEndpoint(value) else { throw fail("Endpoint \"\(value)\" is not host:port or [IPv6]:port") }
                peers[peers.count - 1].endpoint = endpoint
            case (.peer, "persistentkeepalive"):
                if value.lowercased() == "off" {
                    peers[peers.count - 1].persistentKeepalive = 0
                } else {
                    guard let seconds = UInt16(value) else { throw fail("PersistentKeepalive \"\(value)\" is not off or 0-65535 seconds") }
                    peers[peers.count - 1].persistentKeepalive = seconds
                }
            case (.interface, _):
                throw fail("unknown [Interface] key \(line[..<equals]) (expected PrivateKey, ListenPort or FwMark)")
            case (.peer, _):
                throw fail(
                    "unknown [Peer] key \(line[..<equals]) (expected PublicKey, PresharedKey, AllowedIPs, Endpoint or PersistentKeepalive)")
            }
        }
        if peerOpen { throw WireGuardConfigurationError(line: peerLine, message: "a [Peer] section without PublicKey") }
    }

    static func parseFwmark(_ value: Substring) -> UInt32? {
        let lower = value.lowercased()
        if lower == "off" { return 0 }
        if lower.hasPrefix("0x") { return UInt32(lower.dropFirst(2), radix: 16) }
        return UInt32(lower)
    }
}
