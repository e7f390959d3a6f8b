import ArgumentParser
import Engine
import WireFormat

/// Parses a TEID given on the command line (decimal or 0x-hex, 1 to 2^32−1).
struct TEID: ExpressibleByArgument {
    let value: UInt32
    init?(argument: String) {
        guard let value = GTPUSession.teid(argument) else { return nil }
        self.value = value
    }
}

/// The client's GTP-U flags: the client as a RAN node (gNB/eNB) with one static session.
public struct GTPUClientOptions: ParsableArguments {
    @Flag(help: "GTP-U framing (3GPP TS 29.281): the client acts as a RAN node; the relay port defaults to 2152.")
    public var gtpu = false

    @Option(
        help: ArgumentHelp(
            "Uplink TEID, assigned by the UPF, on every G-PDU to the relay (decimal or 0x-hex, 1 to 2^32-1). Required with --gtpu.",
            valueName: "N"))
    var teid: TEID?

    @Option(help: ArgumentHelp("Downlink TEID the relay must use toward this client (default: the same as --teid).", valueName: "N"))
    var localTeid: TEID?

    @Option(help: ArgumentHelp("QoS flow id carried in a UL PDU Session Container on every G-PDU (0-63).", valueName: "N"))
    var qfi: UInt8 = 9

    @Flag(help: "Send plain LTE-style G-PDUs (flags 0x30), without a PDU Session Container.")
    var noPduSessionContainer = false

    @Option(help: ArgumentHelp("Seconds between GTP-U Echo Requests to the relay (0 turns them off).", valueName: "S"))
    public var echoInterval: Double = 60

    public init() {}

    public func validate() throws {
        guard gtpu else {
            if teid != nil || localTeid != nil || noPduSessionContainer {
                throw ValidationError("--teid, --local-teid and --no-pdu-session-container need --gtpu")
            }
            return
        }
        guard teid != nil else { throw ValidationError("--gtpu needs --teid N (the uplink TEID the UPF assigned)") }
        guard qfi <= 63 else { throw ValidationError("--qfi must be 0 to 63") }
        guard echoInterval >= 0, echoInterval.isFinite else { throw ValidationError("--echo-interval must be 0 or more seconds") }
    }

    /// `relay`: the UPF, the one peer whose Error Indications count.
    public func make(localAddress: IPAddress, relay: IPAddress) -> GTPUFraming {
        let up = teid?.value ?? 1
        return GTPUFraming(
            role: .ran(uplinkTEID: up, downlinkTEID: localTeid?.value ?? up),
            qfi: noPduSessionContainer ? nil : qfi, sessionContainer: !noPduSessionContainer,
            localAddress: localAddress, peer: relay)
    }
}

/// The relay's GTP-U flags: the relay as a UPF with static sessions.
public struct GTPURelayOptions: ParsableArguments {
    @Flag(
        help:
            "GTP-U framing (3GPP TS 29.281): the relay acts as a UPF; it listens on port 2152 unless --listen says otherwise. Echo Responses, Error Indications and Notifications are held to --reply-rate in all and 5 a second per source; an Error Indication is acted on only from the endpoint its session uses."
    )
    public var gtpu = false

    @Option(
        name: .customLong("session"),
        help: ArgumentHelp(
            "A static session (repeatable): uplink TEID UP carries inner sources in PREFIX, and replies to those addresses go out with downlink TEID DOWN (default UP) to where the session last sent from.",
            valueName: "UP[:DOWN]=PREFIX[,PREFIX...]"))
    var sessions: [String] = []

    @Option(
        help: ArgumentHelp(
            "QoS flow id in the DL PDU Session Container (0-63; default: the QFI of the session's latest uplink G-PDU, none if it sent none).",
            valueName: "N"))
    var qfi: UInt8?

    @Option(help: ArgumentHelp("Seconds between GTP-U Echo Requests to each active client (0 turns them off).", valueName: "S"))
    public var echoInterval: Double = 60

    public init() {}

    public func validate() throws {
        guard gtpu else {
            if !sessions.isEmpty || qfi != nil { throw ValidationError("--session and --qfi need --gtpu") }
            return
        }
        let parsed = try parsedSessions()
        guard !parsed.isEmpty else {
            throw ValidationError("--gtpu needs at least one --session UP[:DOWN]=PREFIX (e.g. --session 0x100=198.19.0.1/32)")
        }
        let teids = parsed.map(\.uplinkTEID)
        if let repeated = teids.first(where: { teid in teids.filter { $0 == teid }.count > 1 }) {
            throw ValidationError("--session: uplink TEID \(repeated) is given twice")
        }
        if let qfi { guard qfi <= 63 else { throw ValidationError("--qfi must be 0 to 63") } }
        guard echoInterval >= 0, echoInterval.isFinite else { throw ValidationError("--echo-interval must be 0 or more seconds") }
    }

    public func parsedSessions() throws -> [GTPUSession] {
        try sessions.map { text in
            guard let session = GTPUSession(text) else {
                throw ValidationError(
                    "--session '\(text)' is not UP[:DOWN]=PREFIX[,PREFIX...] with TEIDs 1 to 2^32-1 (e.g. 0x100:0x200=198.19.0.1/32)")
            }
            return session
        }
    }

    /// The UPF's framing. Error Indications name the address G-PDUs arrive at: the listening one, or
    /// on a wildcard listener this host's first address of that family.
    public func make(listening listenAddress: SocketAddress, ownAddresses: [IPAddress]) throws -> GTPUFraming {
        let unspecified = IPAddress.unspecified(like: listenAddress.ip)
        let local =
            listenAddress.ip != unspecified
            ? listenAddress.ip
            : ownAddresses.first { $0.isIPv4 == listenAddress.ip.isIPv4 && !PacketPolicy.isLoopback($0) } ?? unspecified
        return GTPUFraming(role: .upf(try parsedSessions()), qfi: qfi, localAddress: local)
    }
}
