/// Why a datagram or packet was not forwarded. Every drop is counted under exactly one reason.
public enum DropReason: Int, Error, CaseIterable, Sendable, CustomStringConvertible {
    // Inner packet validation (codec).
    case truncated
    case badVersion
    case badHeaderLength
    case lengthMismatch
    case badChecksum
    case ttlExpired
    case badFragment
    case badAddress
    case badTransportHeader
    // TUN offload metadata (the kernel's virtio-net header).
    /// A super-packet of a GSO type the segmenter does not cut (neither TCP nor UDP_L4).
    case unsupportedOffload
    // Policy and routing.
    case notAllowed
    case unknownPeer
    case noRoute
    case ipv6Disabled
    case oversize
    case spoofedSource
    case forbiddenDestination
    /// A source-routed inner packet (IPv4 LSRR/SSRR, IPv6 routing header): where a host honours the
    /// route, it would reach addresses `--allow-dest` never allowed.
    case sourceRouted
    /// A new inner source beyond the relay's budget for new clients per second.
    case newClientLimit
    /// A new inner source while every return path belongs to an active client.
    case clientTableFull
    /// A known inner source from another endpoint than the one using it (refreshed within the idle window).
    case addressInUse
    // Authenticated framing.
    case badFraming
    case unknownKey
    case badTag
    case replayed
    case senderLimit
    // GTP-U framing.
    case badGTPHeader
    case unknownTEID
    case unsupportedExtension
    case unexpectedMessage
    // Output failures.
    case tunWriteFailed
    case sendFailed

    /// Stable name used in logs and JSON reports.
    public var description: String {
        switch self {
        case .truncated: "truncated"
        case .badVersion: "bad_version"
        case .badHeaderLength: "bad_header_length"
        case .lengthMismatch: "length_mismatch"
        case .badChecksum: "bad_checksum"
        case .ttlExpired: "ttl_expired"
        case .badFragment: "bad_fragment"
        case .badAddress: "bad_address"
        case .badTransportHeader: "bad_transport_header"
        case .unsupportedOffload: "unsupported_offload"
        case .notAllowed: "not_allowed"
        case .unknownPeer: "unknown_peer"
        case .noRoute: "no_route"
        case .ipv6Disabled: "ipv6_disabled"
        case .oversize: "oversize"
        case .spoofedSource: "spoofed_source"
        case .forbiddenDestination: "forbidden_destination"
        case .sourceRouted: "source_routed"
        case .newClientLimit: "new_client_limit"
        case .clientTableFull: "client_table_full"
        case .addressInUse: "address_in_use"
        case .badFraming: "bad_framing"
        case .unknownKey: "unknown_key"
        case .badTag: "bad_tag"
        case .replayed: "replayed"
        case .senderLimit: "sender_limit"
        case .badGTPHeader: "bad_gtp_header"
        case .unknownTEID: "unknown_teid"
        case .unsupportedExtension: "unsupported_extension"
        case .unexpectedMessage: "unexpected_message"
        case .tunWriteFailed: "tun_write_failed"
        case .sendFailed: "send_failed"
        }
    }

    /// True for reasons that mean the bytes themselves were not a valid IP packet.
    public var isMalformed: Bool { rawValue <= DropReason.badTransportHeader.rawValue }
}
