import WireFormat

/// A refused UAPI request, with the `errno=` value wireguard-go answers (its ipc package's
/// negative codes: -22 EINVAL for a bad key or value, -71 EPROTO for a line that is not key=value).
public struct UAPIError: Error, Equatable, CustomStringConvertible {
    public let errno: Int
    public let message: String
    public static let invalid = -22
    public static let protocolError = -71
    public init(errno: Int, message: String) {
        self.errno = errno
        self.message = message
    }
    public var description: String { "errno=\(errno): \(message)" }
    /// What the device writes back.
    public var response: String { "errno=\(errno)\n\n" }
}

/// One line of a `set=1` request (https://www.wireguard.com/xplatform/), in request order: order
/// matters (replace_allowed_ips clears what came before it), so the request is a list, not a struct.
public enum UAPIOperation: Equatable, Sendable {
    case privateKey(PrivateKey?)  // nil: an all-zero key, which clears it
    case listenPort(UInt16)
    case fwmark(UInt32)
    case replacePeers
    case peer(PublicKey)  // the following peer operations are for this key
    case updateOnly
    case removePeer
    case presharedKey(PresharedKey?)
    case endpoint(SocketAddress)
    case persistentKeepalive(UInt16)
    case replaceAllowedIPs
    case allowedIP(IPPrefix)
    case removeAllowedIP(IPPrefix)  // `allowed_ip=-prefix` (wireguard-go): drops it if this peer has it
    case protocolVersion

    public static func == (a: UAPIOperation, b: UAPIOperation) -> Bool {
        switch (a, b) {
        case (.privateKey(let x), .privateKey(let y)): x?.bytes == y?.bytes
        case (.presharedKey(let x), .presharedKey(let y)): x?.bytes == y?.bytes
        case (.listenPort(let x), .listenPort(let y)): x == y
        case (.fwmark(let x), .fwmark(let y)): x == y
        case (.peer(let x), .peer(let y)): x == y
        case (.endpoint(let x), .endpoint(let y)): x == y
        case (.persistentKeepalive(let x), .persistentKeepalive(let y)): x == y
        case (.allowedIP(let x), .allowedIP(let y)), (.removeAllowedIP(let x), .removeAllowedIP(let y)): x == y
        case (.replacePeers, .replacePeers), (.updateOnly, .updateOnly), (.removePeer, .removePeer),
            (.replaceAllowedIPs, .replaceAllowedIPs), (.protocolVersion, .protocolVersion):
            true
        default: false
        }
    }
}

/// Runtime figures a `get=1` answer reports per peer; the configuration layer keeps none.
public struct UAPIPeerStats: Sendable, Equatable {
    public var lastHandshakeUnixNanoseconds: UInt64
    public var txBytes: UInt64
    public var rxBytes: UInt64
    public init(lastHandshakeUnixNanoseconds: UInt64 = 0, txBytes: UInt64 = 0, rxBytes: UInt64 = 0) {
        self.lastHandshakeUnixNanoseconds = lastHandshakeUnixNanoseconds
        self.txBytes = txBytes
        self.rxBytes = rxBytes
    }
}

public enum UAPI {
    public enum Limits {
        public static let requestBytes = 32 << 20
        public static let lineBytes = 256
        public static let operations = 4_000_000
    }

    /// Parses the body of a `set=1` request: key=value lines up to an empty line (or the end).
    /// Keys are validated as wireguard-go does (hex keys, decimal numbers, "true" flags,
    /// protocol_version=1, endpoints as IP:port or [IPv6]:port, allowed_ip as a CIDR prefix).
    public static func parseSet(_ body: String) throws(UAPIError) -> [UAPIOperation] {
        guard body.utf8.count <= Limits.requestBytes else {
            throw UAPIError(errno: UAPIError.invalid, message: "request over \(Limits.requestBytes) bytes")
        }
        var operations: [UAPIOperation] = []
        var inPeer = false
        // Go's bufio.ScanLines, which wireguard-go reads with, also ends a line at "\r\n".
        for line in body.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            if line.isEmpty { break }
            guard line.utf8.count <= Limits.lineBytes else {
                throw UAPIError(errno: UAPIError.protocolError, message: "line over \(Limits.lineBytes) bytes")
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw UAPIError(errno: UAPIError.protocolError, message: "failed to parse line \"\(line)\"")
            }
            guard operations.count < Limits.operations else {
                throw UAPIError(errno: UAPIError.invalid, message: "more than \(Limits.operations) lines")
            }
            let key = line[..<equals]
            let value = line[line.index(after: equals)...]
            func invalid(_ what: String) -> UAPIError { UAPIError(errno: UAPIError.invalid, message: "invalid \(key) \(what)") }
            func flag() throws(UAPIError) {
                guard value == "true" else { throw invalid("value \"\(value)\" (only true is accepted)") }
            }
            if key == "public_key" {
                guard let bytes = hexKey(value), let peer = PublicKey(bytes: bytes) else { throw invalid("key") }
                operations.append(.peer(peer))
                inPeer = true
                continue
            }
            if !inPeer {
                switch key {
                case "private_key":
                    guard let bytes = hexKey(value) else { throw invalid("key") }
                    if bytes.allSatisfy({ $0 == 0 }) {
                        operations.append(.privateKey(nil))
                    } else {
                        guard let parsed = PrivateKey(bytes: bytes) else { throw invalid("key") }
                        operations.append(.privateKey(parsed))
                    }
                case "listen_port":
                    guard let port = decimal(value, as: UInt16.self) else { throw invalid("port \"\(value)\"") }
                    operations.append(.listenPort(port))
                case "fwmark":
                    guard let mark = decimal(value, as: UInt32.self) else { throw invalid("value \"\(value)\"") }
                    operations.append(.fwmark(mark))
                case "replace_peers":
                    try flag()
                    operations.append(.replacePeers)
                default:
                    throw UAPIError(errno: UAPIError.invalid, message: "invalid UAPI device key: \(key)")
                }
                continue
            }
            switch key {
            case "update_only":
                try flag()
                operations.append(.updateOnly)
            case "remove":
                try flag()
                operations.append(.removePeer)
            case "preshared_key":
                guard let bytes = hexKey(value), let psk = PresharedKey(bytes: bytes) else { throw invalid("key") }
                operations.append(.presharedKey(bytes.allSatisfy { $0 == 0 } ? nil : psk))
            case "endpoint":
                guard case .address(let address)? = WireGuardEndpoint(value) else { throw invalid("endpoint \"\(value)\"") }
                operations.append(.endpoint(address))
            case "persistent_keepalive_interval":
                guard let seconds = decimal(value, as: UInt16.self) else { throw invalid("value \"\(value)\"") }
                operations.append(.persistentKeepalive(seconds))
            case "replace_allowed_ips":
                try flag()
                operations.append(.replaceAllowedIPs)
            case "allowed_ip":
                let removing = value.hasPrefix("-")
                let text = removing ? value.dropFirst() : value
                guard text.contains("/"), let prefix = IPPrefix(text) else { throw invalid("prefix \"\(value)\"") }
                operations.append(removing ? .removeAllowedIP(prefix) : .allowedIP(prefix))
            case "protocol_version":
                guard value == "1" else { throw invalid("version \"\(value)\"") }
                operations.append(.protocolVersion)
            default:
                throw UAPIError(errno: UAPIError.invalid, message: "invalid UAPI peer key: \(key)")
            }
        }
        return operations
    }

    /// Applies `operations` to `configuration` as a device does: a peer line creates the peer
    /// unless it exists; update_only drops a peer the line just created; remove deletes it; a peer
    /// keyed like the interface's own public key is ignored (wireguard-go does the same).
    public static func apply(_ operations: [UAPIOperation], to configuration: inout WireGuardConfiguration) throws(UAPIError) {
        var config = configuration
        var owners: [IPPrefix: Int] = [:]
        var index: [PublicKey: Int] = [:]
        func reindex() {
            owners.removeAll(keepingCapacity: true)
            index.removeAll(keepingCapacity: true)
            for (i, peer) in config.peers.enumerated() {
                index[peer.publicKey] = i
                for prefix in peer.allowedIPs { owners[prefix] = i }
            }
        }
        reindex()
        var current: Int? = nil
        var created = false
        for operation in operations {
            switch operation {
            case .privateKey(let key):
                config.privateKey = key
                if let own = key?.publicKey, let i = index[own] {
                    config.peers.remove(at: i)
                    reindex()
                }
            case .listenPort(let port): config.listenPort = port
            case .fwmark(let mark): config.fwmark = mark
            case .replacePeers:
                config.peers.removeAll()
                reindex()
            case .peer(let key):
                if key == config.privateKey?.publicKey {
                    current = nil
                } else if let i = index[key] {
                    current = i
                    created = false
                } else {
                    guard config.peers.count < WireGuardConfiguration.Limits.peers else {
                        throw UAPIError(errno: UAPIError.invalid, message: "more than \(WireGuardConfiguration.Limits.peers) peers")
                    }
                    config.peers.append(WireGuardPeer(publicKey: key))
                    current = config.peers.count - 1
                    index[key] = current
                    created = true
                }
            case .updateOnly, .removePeer:
                guard let i = current else { continue }
                if case .removePeer = operation {} else if !created { continue }
                config.peers.remove(at: i)
                reindex()
                current = nil
            case .presharedKey(let psk): if let i = current { config.peers[i].presharedKey = psk }
            case .endpoint(let address): if let i = current { config.peers[i].endpoint = .address(address) }
            case .persistentKeepalive(let seconds): if let i = current { config.peers[i].persistentKeepalive = seconds }
            case .replaceAllowedIPs:
                guard let i = current else { continue }
                for prefix in config.peers[i].allowedIPs { owners[prefix] = nil }
                config.peers[i].allowedIPs.removeAll()
            case .allowedIP(let prefix):
                guard let i = current else { continue }
                do { try config.addAllowedIP(prefix, toPeer: i, owners: &owners) } catch {
                    throw UAPIError(errno: UAPIError.invalid, message: error.message)
                }
            case .removeAllowedIP(let prefix):
                guard let i = current, owners[prefix] == i else { continue }
                owners[prefix] = nil
                config.peers[i].allowedIPs.removeAll { $0 == prefix }
            case .protocolVersion: break
            }
        }
        configuration = config
    }

    /// The `set=1` body that makes a device hold exactly `configuration` (what `wg setconf` sends:
    /// replace_peers, then each peer with replace_allowed_ips). Host-name endpoints must have been
    /// resolved first: they are refused here.
    public static func setRequest(for configuration: WireGuardConfiguration) throws(UAPIError) -> String {
        var out = "set=1\n"
        out += "private_key=\(hex(configuration.privateKey?.bytes ?? [UInt8](repeating: 0, count: 32)))\n"
        out += "listen_port=\(configuration.listenPort)\nfwmark=\(configuration.fwmark)\nreplace_peers=true\n"
        for peer in configuration.peers {
            out += "public_key=\(hex(peer.publicKey.bytes))\n"
            out += "preshared_key=\(hex(peer.presharedKey?.bytes ?? [UInt8](repeating: 0, count: 32)))\n"
            switch peer.endpoint {
            case .address(let address)?: out += "endpoint=\(address)\n"
            case .host(let name, _)?:
                throw UAPIError(errno: UAPIError.invalid, message: "endpoint \(name) is not resolved")
            case nil: break
            }
            out += "persistent_keepalive_interval=\(peer.persistentKeepalive)\nreplace_allowed_ips=true\n"
            for prefix in peer.allowedIPs { out += "allowed_ip=\(prefix)\n" }
        }
        return out + "\n"
    }

    /// The answer to `get=1`, line for line as wireguard-go's IpcGetOperation writes it, then errno=0.
    /// Host-name endpoints (unresolved) are left out, as a device has no address for them.
    public static func getResponse(for configuration: WireGuardConfiguration, stats: [PublicKey: UAPIPeerStats] = [:]) -> String {
        var out = ""
        if let key = configuration.privateKey { out += "private_key=\(hex(key.bytes))\n" }
        if configuration.listenPort != 0 { out += "listen_port=\(configuration.listenPort)\n" }
        if configuration.fwmark != 0 { out += "fwmark=\(configuration.fwmark)\n" }
        for peer in configuration.peers {
            let figures = stats[peer.publicKey] ?? UAPIPeerStats()
            out += "public_key=\(hex(peer.publicKey.bytes))\n"
            out += "preshared_key=\(hex(peer.presharedKey?.bytes ?? [UInt8](repeating: 0, count: 32)))\n"
            out += "protocol_version=1\n"
            if case .address(let address)? = peer.endpoint { out += "endpoint=\(address)\n" }
            out += "last_handshake_time_sec=\(figures.lastHandshakeUnixNanoseconds / 1_000_000_000)\n"
            out += "last_handshake_time_nsec=\(figures.lastHandshakeUnixNanoseconds % 1_000_000_000)\n"
            out += "tx_bytes=\(figures.txBytes)\nrx_bytes=\(figures.rxBytes)\n"
            out += "persistent_keepalive_interval=\(peer.persistentKeepalive)\n"
            for prefix in peer.allowedIPs { out += "allowed_ip=\(prefix)\n" }
        }
        return out + "errno=0\n\n"
    }

    /// Reads a `get=1` answer back into a configuration (and the stats), for `wg showconf`-style use.
    public static func parseGet(_ text: String) throws(UAPIError) -> (WireGuardConfiguration, [PublicKey: UAPIPeerStats]) {
        var operations: [UAPIOperation] = []
        var stats: [PublicKey: UAPIPeerStats] = [:]
        var current: PublicKey?
        var body = ""
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            guard let equals = line.firstIndex(of: "=") else {
                throw UAPIError(errno: UAPIError.protocolError, message: "failed to parse line \"\(line)\"")
            }
            let key = line[..<equals]
            let value = line[line.index(after: equals)...]
            switch key {
            case "errno":
                guard value == "0" else {
                    throw UAPIError(errno: Int(value) ?? UAPIError.invalid, message: "device answered errno=\(value)")
                }
            case "last_handshake_time_sec", "last_handshake_time_nsec", "tx_bytes", "rx_bytes":
                guard let number = UInt64(value), let peer = current else {
                    throw UAPIError(errno: UAPIError.invalid, message: "invalid \(key) \"\(value)\"")
                }
                var figures = stats[peer] ?? UAPIPeerStats()
                switch key {
                case "last_handshake_time_sec": figures.lastHandshakeUnixNanoseconds += number &* 1_000_000_000
                case "last_handshake_time_nsec": figures.lastHandshakeUnixNanoseconds += number
                case "tx_bytes": figures.txBytes = number
                default: figures.rxBytes = number
                }
                stats[peer] = figures
            default:
                body += line + "\n"
                if key == "public_key", let bytes = hexKey(value) { current = PublicKey(bytes: bytes) }
            }
        }
        operations = try parseSet(body)
        var configuration = WireGuardConfiguration()
        try apply(operations, to: &configuration)
        return (configuration, stats)
    }
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// 64 hex digits (either case, as Go's hex decoder takes them) to 32 bytes.
func hexKey(_ text: Substring) -> [UInt8]? {
    let utf8 = Array(text.utf8)
    guard utf8.count == 64 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var bytes = [UInt8]()
    bytes.reserveCapacity(32)
    var i = 0
    while i < 64 {
        guard let high = nibble(utf8[i]), let low = nibble(utf8[i + 1]) else { return nil }
        bytes.append(high << 4 | low)
        i += 2
    }
    return bytes
}

/// Go's strconv.ParseUint(value, 10, bits): ASCII digits only, no sign.
func decimal<T: FixedWidthInteger & UnsignedInteger>(_ text: Substring, as: T.Type) -> T? {
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
    return T(text)
}
