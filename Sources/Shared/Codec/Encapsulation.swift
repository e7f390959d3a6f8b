/// How an inner IP packet travels inside a UDP datagram. Implementations work in place on a buffer
/// slot: `headroom` bytes are reserved in front of every inner packet so a header can be prepended
/// without copying.
public protocol Encapsulation: Sendable {
    /// Name used in logs and `--encap`.
    var name: String { get }
    /// Bytes a datagram carries beyond the inner packet (for MTU arithmetic).
    var overhead: Int { get }
    /// Bytes to reserve in front of each inner packet.
    var headroom: Int { get }
    /// False when anybody who can reach the UDP port can inject packets.
    var isAuthenticated: Bool { get }

    /// Turns the inner packet occupying `packet` of `slot` into a datagram payload, in place.
    /// Returns the payload's range in the slot, or nil when it cannot be sent.
    func encapsulate(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>) -> Range<Int>?

    /// Finds the inner packet inside a received datagram payload.
    func decapsulate(_ datagram: Span<UInt8>) -> Result<Range<Int>, DropReason>
}

/// The seed programs' and socat's format: the UDP payload is exactly one IP packet, nothing added.
public struct RawEncapsulation: Encapsulation {
    public init() {}
    public var name: String { "raw" }
    public var overhead: Int { 0 }
    public var headroom: Int { 0 }
    public var isAuthenticated: Bool { false }

    public func encapsulate(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>) -> Range<Int>? { packet }

    public func decapsulate(_ datagram: Span<UInt8>) -> Result<Range<Int>, DropReason> {
        datagram.isEmpty ? .failure(.truncated) : .success(0..<datagram.count)
    }
}
