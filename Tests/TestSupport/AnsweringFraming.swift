import WireFormat

/// Raw framing plus three control messages of its own, to drive the engine's control path without a
/// real protocol: a datagram starting 0xE1 is an echo request, answered with the same bytes behind
/// 0xE2; 0xE3 is an end marker, consumed; 0xE4 is refused (unknown key) and answered with an error
/// indication 0xE5. Anything else is an inner packet, forwarded as is.
public struct AnsweringFraming: Framing {
    public static let echoRequest: UInt8 = 0xE1
    public static let echoResponse: UInt8 = 0xE2
    public static let endMarker: UInt8 = 0xE3
    public static let refused: UInt8 = 0xE4
    public static let errorIndication: UInt8 = 0xE5

    public init() {}
    public var name: String { "answering (test)" }
    public var overhead: Int { 0 }
    public var headroom: Int { 0 }
    public var isAuthenticated: Bool { false }
    public var sessionCount: Int { 1 }
    public func makeSealer() -> any PacketSealer { RawFraming.Passthrough() }
    public func makeOpener() -> any PacketOpener { Opener() }

    struct Opener: PacketOpener {
        func open(
            _ slot: inout MutableSpan<UInt8>, datagram: Range<Int>, from peer: SocketAddress,
            reply: inout MutableSpan<UInt8>
        ) -> OpenedDatagram {
            guard let first = datagram.first else { return .drop(.truncated, reply: nil) }
            switch slot[first] {
            case AnsweringFraming.echoRequest:
                reply[0] = AnsweringFraming.echoResponse
                reply.copy(from: slot.span.extracting((first + 1)..<datagram.upperBound), to: 1)
                return .control(.echoRequest, reply: ControlReply(.echoResponse, length: datagram.count))
            case AnsweringFraming.endMarker:
                return .control(.endMarker, reply: nil)
            case AnsweringFraming.refused:
                reply[0] = AnsweringFraming.errorIndication
                return .drop(.unknownKey, reply: ControlReply(.errorIndication, length: 1))
            default:
                return .forward(datagram, session: PeerSession())
            }
        }
    }
}
