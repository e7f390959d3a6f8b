import WireFormat

/// What the relay lets through beyond well-formedness: which inner sources each client may use
/// (like WireGuard's allowed-ips), and which destinations may be reached at all.
public struct PacketPolicy: Sendable {
    /// A client's underlay prefix and the inner source prefixes datagrams from it may carry.
    public struct ClientRule: Sendable, Equatable {
        public var peers: IPPrefix
        public var innerSources: [IPPrefix]

        public init(peers: IPPrefix, innerSources: [IPPrefix]) {
            self.peers = peers
            self.innerSources = innerSources
        }

        /// `PEER_CIDR=INNER_CIDR[,INNER_CIDR…]`, e.g. `198.18.1.1/32=198.19.0.1/32`.
        public init?(_ text: some StringProtocol) {
            let sides = text.split(separator: "=", omittingEmptySubsequences: false)
            guard sides.count == 2, let peers = IPPrefix(sides[0]) else { return nil }
            let inner = sides[1].split(separator: ",", omittingEmptySubsequences: false).map { IPPrefix($0) }
            guard !inner.isEmpty, inner.allSatisfy({ $0 != nil }) else { return nil }
            self.init(peers: peers, innerSources: inner.compactMap { $0 })
        }
    }

    /// A client's own key file and the inner source prefixes datagrams sealed with it may carry.
    public struct KeyRule: Sendable, Equatable {
        public var path: String
        public var innerSources: [IPPrefix]

        /// `PATH=INNER_CIDR[,INNER_CIDR…]`, e.g. `/etc/udptun/alice.key=198.19.0.2/32` (split at the
        /// last `=`, so a path may contain one).
        public init?(_ text: some StringProtocol) {
            guard let equals = text.lastIndex(of: "=") else { return nil }
            let path = String(text[..<equals])
            let inner = text[text.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false).map { IPPrefix($0) }
            guard !path.isEmpty, !inner.isEmpty, inner.allSatisfy({ $0 != nil }) else { return nil }
            self.path = path
            innerSources = inner.compactMap { $0 }
        }
    }

    /// Empty: any inner source (only well-formedness is checked).
    public var clientRules: [ClientRule]
    /// The inner sources each session (a key: `--client-key`) may carry, by its index in the
    /// framing; nil, or no entry, leaves that session's sources unchecked here.
    public var innerSourcesBySession: [[IPPrefix]?]
    /// Nil: any destination not forbidden below.
    public var allowedDestinations: [IPPrefix]?
    /// The relay's own addresses: never a destination for injected packets.
    public var ownAddresses: [IPAddress]
    /// What the relay's kernel delivers locally (`LocalRoutes`: local, broadcast and anycast routes,
    /// a whole prefix where a route covers one): never a destination either.
    public var localPrefixes: [IPPrefix] { didSet { localSet = PrefixSet(localPrefixes) } }
    /// `localPrefixes` as the per-packet check reads them.
    private var localSet: PrefixSet

    /// Never reachable through the relay: loopback, link-local, multicast, broadcast, "this network",
    /// and IPv4-mapped IPv6.
    public static let forbiddenDestinations: [IPPrefix] = [
        "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32",
        "::/128", "::1/128", "fe80::/10", "ff00::/8", "::ffff:0:0/96"
    ].compactMap { IPPrefix($0) }

    /// `forbiddenDestinations` as the per-packet check reads them.
    static let forbiddenSet = PrefixSet(forbiddenDestinations)

    static let loopback: [IPPrefix] = ["127.0.0.0/8", "::1/128"].compactMap { IPPrefix($0) }

    /// An inner address a relay can route replies to: a valid source that is no forbidden
    /// destination (what a keepalive may name).
    public static func canReceiveReplies(_ address: IPAddress) -> Bool {
        !address.isInvalidSource && !forbiddenDestinations.contains { $0.contains(address) }
    }

    /// 127.0.0.0/8 and ::1.
    public static func isLoopback(_ address: IPAddress) -> Bool { loopback.contains { $0.contains(address) } }

    public init(
        clientRules: [ClientRule] = [], innerSourcesBySession: [[IPPrefix]?] = [], allowedDestinations: [IPPrefix]? = nil,
        ownAddresses: [IPAddress] = [], localPrefixes: [IPPrefix] = []
    ) {
        self.clientRules = clientRules
        self.innerSourcesBySession = innerSourcesBySession
        self.allowedDestinations = allowedDestinations
        self.ownAddresses = ownAddresses
        self.localPrefixes = localPrefixes
        localSet = PrefixSet(localPrefixes)
    }

    /// The address the relay's ICMP errors about packets from `destination` come from: the first of
    /// its own addresses of that family that is neither loopback nor link-local.
    public func errorSource(like destination: IPAddress) -> IPAddress? {
        ownAddresses.first { own in
            own.isIPv4 == destination.isIPv4 && !Self.forbiddenDestinations.contains { $0.contains(own) }
        }
    }

    /// `.spoofedSource` when `peer`, in `session`, may not use the inner `source` (the return path
    /// a keepalive refreshes is checked like a packet's), nil when it may.
    @inline(__always)
    public func sourceRefusal(for source: IPAddress, from peer: IPAddress, session: PeerSession = PeerSession()) -> DropReason? {
        if session.index < innerSourcesBySession.count, let sources = innerSourcesBySession[session.index],
            !sources.contains(where: { $0.contains(source) })
        {
            return .spoofedSource
        }
        if !clientRules.isEmpty {
            var permitted = false
            for rule in clientRules where rule.peers.contains(peer) {
                if rule.innerSources.contains(where: { $0.contains(source) }) { permitted = true; break }
            }
            if !permitted { return .spoofedSource }
        }
        return nil
    }

    /// Why an inner packet from `peer`, in `session`, is refused, or nil if it may be forwarded. Both
    /// the underlay rule and the session's rule must allow its source.
    public func refusal(for info: IPPacketInfo, from peer: IPAddress, session: PeerSession = PeerSession()) -> DropReason? {
        if let refusal = sourceRefusal(for: info.source, from: peer, session: session) { return refusal }
        let destination = info.destination
        if Self.forbiddenSet.contains(destination) || ownAddresses.contains(destination) || localSet.contains(destination) {
            return .forbiddenDestination
        }
        if let allowedDestinations, !allowedDestinations.contains(where: { $0.contains(destination) }) {
            return .forbiddenDestination
        }
        return nil
    }
}
