/// One static GTP-U session (there is no GTP-C or PFCP: sessions are configured): the uplink TEID
/// the UPF assigned (on every G-PDU from the RAN node), the downlink TEID replies carry, and the
/// inner source prefixes the session may use.
public struct GTPUSession: Sendable, Equatable {
    public var uplinkTEID: UInt32
    public var downlinkTEID: UInt32
    public var innerSources: [IPPrefix]

    public init(uplinkTEID: UInt32, downlinkTEID: UInt32, innerSources: [IPPrefix]) {
        self.uplinkTEID = uplinkTEID
        self.downlinkTEID = downlinkTEID
        self.innerSources = innerSources
    }

    /// `UP[:DOWN]=PREFIX[,PREFIX…]`, TEIDs in decimal or 0x-hex (1 to 2^32−1); DOWN defaults to UP.
    public init?(_ text: some StringProtocol) {
        let sides = text.split(separator: "=", omittingEmptySubsequences: false)
        guard sides.count == 2 else { return nil }
        let teids = sides[0].split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(teids.count), let up = Self.teid(teids[0]) else { return nil }
        let down = teids.count == 2 ? Self.teid(teids[1]) : up
        let prefixes = sides[1].split(separator: ",", omittingEmptySubsequences: false).map { IPPrefix($0) }
        guard let down, !prefixes.isEmpty, prefixes.allSatisfy({ $0 != nil }) else { return nil }
        self.init(uplinkTEID: up, downlinkTEID: down, innerSources: prefixes.compactMap { $0 })
    }

    /// A TEID in decimal or 0x-hex, 1 to 2^32−1 (0 is reserved for signalling).
    public static func teid(_ text: some StringProtocol) -> UInt32? {
        let lower = text.lowercased()
        let value = lower.hasPrefix("0x") ? UInt32(lower.dropFirst(2), radix: 16) : UInt32(lower)
        guard let value, value != 0 else { return nil }
        return value
    }
}
