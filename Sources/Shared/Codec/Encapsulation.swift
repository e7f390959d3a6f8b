/// How an inner IP packet travels inside a UDP datagram. Each worker makes its own sealer (sending:
/// it may keep a counter) and opener (receiving: it may keep replay windows), so no state is shared
/// between threads. Both work in place on a buffer slot: `headroom` bytes are reserved in front of
/// every inner packet and `overhead - headroom` behind it.
public protocol Encapsulation: Sendable {
    associatedtype Sealer: PacketSealer
    associatedtype Opener: PacketOpener

    /// Name used in logs.
    var name: String { get }
    /// Bytes a datagram carries beyond the inner packet (for MTU arithmetic).
    var overhead: Int { get }
    /// Bytes to reserve in front of each inner packet.
    var headroom: Int { get }
    /// False when anybody who can reach the UDP port can inject packets.
    var isAuthenticated: Bool { get }
    /// Keys a receiver tells apart (`PacketOpener.lastKeyIndex`); 1 for a framing without keys.
    var keyCount: Int { get }

    /// A sealer for replies to peers whose datagrams opened with the key at `keyIndex`.
    func makeSealer(keyIndex: Int) -> Sealer
    func makeOpener() -> Opener
}

extension Encapsulation {
    /// A sealer with the first key (a client has only one).
    public func makeSealer() -> Sealer { makeSealer(keyIndex: 0) }
}

public protocol PacketSealer {
    /// Turns the inner packet occupying `packet` of `slot` into a datagram payload, in place.
    /// Returns the payload's range in the slot, or nil when it cannot be sent.
    mutating func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>) -> Range<Int>?
}

public protocol PacketOpener {
    /// Checks the datagram occupying `datagram` of `slot` and returns where its inner packet is
    /// (decrypted in place where the encapsulation encrypts).
    mutating func open(_ slot: inout MutableSpan<UInt8>, datagram: Range<Int>) -> Result<Range<Int>, DropReason>
    /// Which of the receiver's keys the last datagram `open` accepted was sealed with (its index in
    /// the order the keys were given), so the relay can hold each key to its own inner addresses;
    /// nil for a framing without keys.
    var lastKeyIndex: Int? { get }
}

/// The seed programs' and socat's format: the UDP payload is exactly one IP packet, nothing added.
public struct RawEncapsulation: Encapsulation {
    public init() {}
    public var name: String { "raw" }
    public var overhead: Int { 0 }
    public var headroom: Int { 0 }
    public var isAuthenticated: Bool { false }
    public var keyCount: Int { 1 }
    public func makeSealer(keyIndex: Int) -> Passthrough { Passthrough() }
    public func makeOpener() -> Passthrough { Passthrough() }

    public struct Passthrough: PacketSealer, PacketOpener {
        public func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>) -> Range<Int>? { packet }

        public func open(_ slot: inout MutableSpan<UInt8>, datagram: Range<Int>) -> Result<Range<Int>, DropReason> {
            datagram.isEmpty ? .failure(.truncated) : .success(datagram)
        }

        public var lastKeyIndex: Int? { nil }
    }
}
