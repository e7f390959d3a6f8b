/// udptun's authenticated framing, for tunnels that hold a shared key (`--key-file`):
///
///     0  type: 0x11 authenticated, 0x12 authenticated and encrypted    1  reserved (3 bytes, zero)
///     4  sender id (u64, random per sending worker)                   12  counter (u64)
///     20 the inner IP packet (ChaCha20-encrypted with 0x12)           end  Poly1305 tag (16 bytes)
///
/// The tag covers the header and the packet. Each sender seals with its own key, derived from the
/// shared one and its sender id, and a nonce made of its counter, so nonces never repeat. Receivers
/// keep a replay window per sender and commit to it only after the tag verified. The type byte's
/// high nibble (1) can never be an IP version, so raw and authenticated datagrams are never confused.
public struct AuthenticatedEncapsulation: Encapsulation {
    public static let headerLength = 20
    public static let tagLength = 16
    static let authenticatedType: UInt8 = 0x11
    static let encryptedType: UInt8 = 0x12
    /// Senders remembered by an opener (keys and replay windows).
    public static let maximumSenders = 4096
    /// New senders whose key an opener sets up per second, after a first burst of `maximumSenders`.
    /// Before its tag is checked, a datagram under an unknown sender id costs a key derivation; a
    /// flood of made-up ids (from an allowed source) is held to this rate and the rest dropped as
    /// `sender_limit` at the price of a table lookup. Senders already known are never limited.
    public static let newSendersPerSecond: UInt64 = 1000

    public let key: TunnelKey
    public let encrypts: Bool

    public init(key: TunnelKey, encrypt: Bool) {
        self.key = key
        encrypts = encrypt
    }

    public var name: String { encrypts ? "chacha20-poly1305" : "poly1305 (authenticated, not encrypted)" }
    public var overhead: Int { Self.headerLength + Self.tagLength }
    public var headroom: Int { Self.headerLength }
    public var isAuthenticated: Bool { true }

    public func makeSealer() -> Sealer { Sealer(key: key, encrypt: encrypts, sender: UInt64.random(in: 1...UInt64.max)) }
    public func makeOpener() -> Opener { Opener(key: key) }

    public struct Sealer: PacketSealer {
        public let sender: UInt64
        let senderKey: SenderKey
        let encrypt: Bool
        public private(set) var counter: UInt64 = 0

        public init(key: TunnelKey, encrypt: Bool, sender: UInt64) {
            self.sender = sender
            self.encrypt = encrypt
            senderKey = SenderKey(key, sender: sender)
        }

        public mutating func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>) -> Range<Int>? {
            let start = packet.lowerBound - AuthenticatedEncapsulation.headerLength
            let end = packet.upperBound + AuthenticatedEncapsulation.tagLength
            guard start >= 0, end <= slot.count, counter < UInt64.max else { return nil }
            slot[start] = encrypt ? AuthenticatedEncapsulation.encryptedType : AuthenticatedEncapsulation.authenticatedType
            slot[start + 1] = 0
            slot.setU16(0, at: start + 2)
            slot.setU64(sender, at: start + 4)
            slot.setU64(counter, at: start + 12)
            guard PacketCrypto.seal(&slot, header: start..<packet.lowerBound, payload: packet, tagOffset: packet.upperBound,
                                    encrypt: encrypt, key: senderKey, counter: counter) else { return nil }
            counter += 1
            return start..<end
        }
    }

    public struct Opener: PacketOpener {
        let key: TunnelKey
        private var senders: [UInt64: (key: SenderKey, window: ReplayWindow)] = [:]
        private var newSenders: TokenBucket
        private let clock: @Sendable () -> UInt64

        public init(key: TunnelKey,
                    newSenders: TokenBucket = TokenBucket(rate: AuthenticatedEncapsulation.newSendersPerSecond,
                                                          burst: UInt64(AuthenticatedEncapsulation.maximumSenders)),
                    clock: @escaping @Sendable () -> UInt64 = { Clock.monotonicNanoseconds() }) {
            self.key = key
            self.newSenders = newSenders
            self.clock = clock
            senders.reserveCapacity(AuthenticatedEncapsulation.maximumSenders)
        }

        public var knownSenders: Int { senders.count }

        public mutating func open(_ slot: inout MutableSpan<UInt8>, datagram: Range<Int>) -> Result<Range<Int>, DropReason> {
            let header = AuthenticatedEncapsulation.headerLength
            let tag = AuthenticatedEncapsulation.tagLength
            guard datagram.count > header + tag else { return .failure(datagram.isEmpty ? .truncated : .badFraming) }
            let start = datagram.lowerBound
            let type = slot[start]
            guard type == AuthenticatedEncapsulation.authenticatedType || type == AuthenticatedEncapsulation.encryptedType,
                  slot[start + 1] == 0, slot.span.u16(at: start + 2) == 0 else { return .failure(.badFraming) }
            let sender = slot.span.u64(at: start + 4)
            let counter = slot.span.u64(at: start + 12)
            let known = senders[sender]
            if let known, !known.window.check(counter) { return .failure(.replayed) }
            // A new sender's key is derived before its first packet is verified (within the
            // new-sender budget), but nothing is remembered about it unless the tag checks out.
            if known == nil, !newSenders.take(now: clock()) { return .failure(.senderLimit) }
            let senderKey = known?.key ?? SenderKey(key, sender: sender)
            let payload = (start + header)..<(datagram.upperBound - tag)
            guard PacketCrypto.open(&slot, header: start..<payload.lowerBound, payload: payload, tagOffset: payload.upperBound,
                                    encrypted: type == AuthenticatedEncapsulation.encryptedType, key: senderKey, counter: counter)
            else { return .failure(.badTag) }
            if known == nil {
                if senders.count >= AuthenticatedEncapsulation.maximumSenders, let any = senders.keys.first {
                    senders.removeValue(forKey: any)
                }
                senders[sender] = (senderKey, ReplayWindow())
            }
            senders[sender]!.window.accept(counter)
            return .success(payload)
        }
    }
}
