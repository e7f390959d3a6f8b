/// How an inner IP packet travels inside a UDP datagram. Each worker makes its own sealer (sending:
/// it may keep counters) and opener (receiving: it may keep replay windows), so no state is shared
/// between threads. Both work in place on a buffer slot: `headroom` bytes are reserved in front of
/// every inner packet and `overhead - headroom` behind it.
///
/// Adding an framing is one file here and one option in the command line: the engine reaches
/// sealers and openers only through these protocols.
public protocol Framing: Sendable {
    /// Name used in logs.
    var name: String { get }
    /// Bytes a datagram carries beyond the inner packet (for MTU arithmetic).
    var overhead: Int { get }
    /// Bytes to reserve in front of each inner packet.
    var headroom: Int { get }
    /// False when anybody who can reach the UDP port can inject packets.
    var isAuthenticated: Bool { get }
    /// Sessions a receiver tells apart (`PeerSession.index` is below it): one per key with keys,
    /// one for a framing without any.
    var sessionCount: Int { get }

    func makeSealer() -> any PacketSealer
    func makeOpener() -> any PacketOpener
}

/// Which of the receiver's sessions a datagram belongs to (the key it was sealed with today), by
/// index in the order they were configured. The relay remembers it per client so that replies are
/// sealed for the same session, and the policy holds each session to its own inner addresses.
public struct PeerSession: Hashable, Sendable {
    public var index: Int

    public init(index: Int = 0) { self.index = index }
}

/// Messages of an framing's own that are not inner packets: answered, or consumed, and counted
/// by type, never forwarded.
public enum ControlMessage: Int, CaseIterable, Sendable, CustomStringConvertible {
    case echoRequest
    case echoResponse
    case errorIndication
    case endMarker
    case extensionHeadersNotification
    case keepalive

    /// Stable name used in logs and JSON reports.
    public var description: String {
        switch self {
        case .echoRequest: "echo_request"
        case .echoResponse: "echo_response"
        case .errorIndication: "error_indication"
        case .endMarker: "end_marker"
        case .extensionHeadersNotification: "notification"
        case .keepalive: "keepalive"
        }
    }
}

/// A control datagram an opener built in the reply buffer, to go back to the sender from the socket
/// its request reached: `message`, in bytes `0..<length` of the buffer.
public struct ControlReply: Sendable, Equatable {
    public var message: ControlMessage
    public var length: Int

    public init(_ message: ControlMessage, length: Int) {
        self.message = message
        self.length = length
    }
}

/// What opening one datagram produced.
public enum OpenedDatagram: Sendable, Equatable {
    /// An inner packet to validate and forward, at this range of the slot, from this session.
    case forward(Range<Int>, session: PeerSession)
    /// A control message, consumed; it may be answered.
    case control(ControlMessage, reply: ControlReply?)
    /// Not forwarded, for this reason; the sender may be told (a GTP-U Error Indication, say).
    case drop(DropReason, reply: ControlReply?)
}

public protocol PacketSealer {
    /// Turns the inner packet occupying `packet` of `slot` into a datagram payload for a peer of
    /// `session`, in place. Returns the payload's range in the slot, or nil when it cannot be sent.
    mutating func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>, session: PeerSession) -> Range<Int>?
}

public protocol PacketOpener {
    /// Checks the datagram occupying `datagram` of `slot` (sent from `peer`), and says what it holds:
    /// an inner packet (decrypted in place where the framing encrypts), a control message, or a
    /// drop. A reply, if any, is written into `reply` from its start.
    mutating func open(
        _ slot: inout MutableSpan<UInt8>, datagram: Range<Int>, from peer: SocketAddress,
        reply: inout MutableSpan<UInt8>
    ) -> OpenedDatagram
}

/// The seed programs' and socat's format: the UDP payload is exactly one IP packet, nothing added.
public struct RawFraming: Framing {
    public init() {}
    public var name: String { "raw" }
    public var overhead: Int { 0 }
    public var headroom: Int { 0 }
    public var isAuthenticated: Bool { false }
    public var sessionCount: Int { 1 }
    public func makeSealer() -> any PacketSealer { Passthrough() }
    public func makeOpener() -> any PacketOpener { Passthrough() }

    public struct Passthrough: PacketSealer, PacketOpener {
        public init() {}

        public func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>, session: PeerSession) -> Range<Int>? { packet }

        public func open(
            _ slot: inout MutableSpan<UInt8>, datagram: Range<Int>, from peer: SocketAddress,
            reply: inout MutableSpan<UInt8>
        ) -> OpenedDatagram {
            datagram.isEmpty ? .drop(.truncated, reply: nil) : .forward(datagram, session: PeerSession())
        }
    }
}
