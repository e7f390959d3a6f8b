/// udptun's authenticated framing, for tunnels that hold a key (`--key-file`, the relay's `--client-key`):
///
///     0  type: 0x11 authenticated (ChaCha20-Poly1305's Poly1305), 0x12 encrypted with
///        ChaCha20-Poly1305, 0x13 encrypted with AES-256-GCM         1  reserved (zero)
///     2  key id (u16, `TunnelKey.id`)
///     4  sender id (u64, random per sending worker)                   12  counter (u64)
///     20 the inner IP packet (encrypted with 0x12 and 0x13)           end  tag (16 bytes)
///
/// The tag covers the header and the packet. A receiver opens all three types (each end chooses
/// how it seals); one sender id keeps to one cipher. Each sender seals with its own key, derived from the
/// tunnel key and its sender id, and a nonce made of its counter, so nonces never repeat. Receivers
/// keep a replay window per sender and commit to it only after the tag verified. A receiver may hold
/// several keys (one per client); the key id says which one a datagram claims, and its tag proves
/// it. The type byte's high nibble (1) can never be an IP version, so raw and authenticated
/// datagrams are never confused.
public struct AuthenticatedFraming: Framing {
    public static let headerLength = 20
    public static let tagLength = 16
    static let authenticatedType: UInt8 = 0x11
    static let encryptedType: UInt8 = 0x12
    static let aesEncryptedType: UInt8 = 0x13
    /// Senders remembered by an opener (keys and replay windows).
    public static let maximumSenders = 4096
    /// New senders whose key an opener sets up per second, after a first burst of `maximumSenders`.
    /// Before its tag is checked, a datagram under an unknown sender id costs a key derivation; a
    /// flood of made-up ids (from an allowed source) is held to this rate and the rest dropped as
    /// `sender_limit` at the price of a table lookup. Senders already known are never limited.
    public static let newSendersPerSecond: UInt64 = 1000

    /// The keys datagrams may be sealed with; a client seals with the first, a relay answers each
    /// client with the key that client used.
    public let keys: [TunnelKey]
    public let encrypts: Bool
    /// What this end encrypts with (with `encrypts`); authentication alone is always Poly1305.
    public let cipher: AEADCipher

    public init(key: TunnelKey, encrypt: Bool, cipher: AEADCipher = .chacha20Poly1305) {
        self.init(keys: [key], encrypt: encrypt, cipher: cipher)
    }

    /// `keys` must be non-empty, with distinct ids (see `clashingKeys`).
    public init(keys: [TunnelKey], encrypt: Bool, cipher: AEADCipher = .chacha20Poly1305) {
        precondition(!keys.isEmpty && Self.clashingKeys(keys) == nil, "keys must be given, with distinct ids")
        self.keys = keys
        encrypts = encrypt
        self.cipher = cipher
    }

    /// The type byte of a datagram sealed this way, and the cipher whose key it takes.
    static func type(encrypt: Bool, cipher: AEADCipher) -> UInt8 {
        guard encrypt else { return authenticatedType }
        return cipher == .aes256GCM ? aesEncryptedType : encryptedType
    }

    /// The cipher a datagram of `type` was sealed with and whether it is encrypted; nil if no such type.
    static func sealing(ofType type: UInt8) -> (cipher: AEADCipher, encrypted: Bool)? {
        switch type {
        case authenticatedType: (.chacha20Poly1305, false)
        case encryptedType: (.chacha20Poly1305, true)
        case aesEncryptedType: (.aes256GCM, true)
        default: nil
        }
    }

    /// The indices of two keys whose ids are equal, if any (one in 65,536 per pair: make a new key).
    public static func clashingKeys(_ keys: [TunnelKey]) -> (Int, Int)? {
        for second in keys.indices {
            if let first = keys[..<second].firstIndex(where: { $0.id == keys[second].id }) { return (first, second) }
        }
        return nil
    }

    public var name: String { encrypts ? cipher.rawValue : "poly1305 (authenticated, not encrypted)" }
    public var overhead: Int { Self.headerLength + Self.tagLength }
    public var headroom: Int { Self.headerLength }
    public var isAuthenticated: Bool { true }

    /// One session per key, in the order the keys were given.
    public var sessionCount: Int { keys.count }
    public func makeSealer() -> any PacketSealer { Sealer(keys: keys, encrypt: encrypts, cipher: cipher) }
    public func makeOpener() -> any PacketOpener { Opener(keys: keys) }

    /// Seals for every key: a client has one, a relay answers each client with the key that client
    /// used (the session its datagrams opened under). Each key has its own random sender id.
    public struct Sealer: PacketSealer {
        private var senders: [KeySender]

        public init(keys: [TunnelKey], encrypt: Bool, cipher: AEADCipher = .chacha20Poly1305) {
            senders = keys.map { KeySender(key: $0, encrypt: encrypt, cipher: cipher, sender: UInt64.random(in: 1...UInt64.max)) }
        }

        /// A sealer for one key with a chosen sender id (tests, fixed vectors).
        public init(key: TunnelKey, encrypt: Bool, cipher: AEADCipher = .chacha20Poly1305, sender: UInt64) {
            senders = [KeySender(key: key, encrypt: encrypt, cipher: cipher, sender: sender)]
        }

        public var sender: UInt64 { senders[0].sender }
        public var counter: UInt64 { senders[0].counter }

        public mutating func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>, session: PeerSession) -> Range<Int>? {
            guard senders.indices.contains(session.index) else { return nil }
            return senders[session.index].seal(&slot, packet: packet)
        }
    }

    struct KeySender {
        let sender: UInt64
        let senderKey: SenderKey
        let keyID: UInt16
        let encrypt: Bool
        let type: UInt8
        private(set) var counter: UInt64 = 0

        init(key: TunnelKey, encrypt: Bool, cipher: AEADCipher, sender: UInt64) {
            self.sender = sender
            self.encrypt = encrypt
            type = AuthenticatedFraming.type(encrypt: encrypt, cipher: cipher)
            keyID = key.id
            senderKey = SenderKey(key, sender: sender, cipher: encrypt ? cipher : .chacha20Poly1305)
        }

        mutating func seal(_ slot: inout MutableSpan<UInt8>, packet: Range<Int>) -> Range<Int>? {
            let start = packet.lowerBound - AuthenticatedFraming.headerLength
            let end = packet.upperBound + AuthenticatedFraming.tagLength
            guard start >= 0, end <= slot.count, counter < UInt64.max else { return nil }
            slot[start] = type
            slot[start + 1] = 0
            slot.setU16(keyID, at: start + 2)
            slot.setU64(sender, at: start + 4)
            slot.setU64(counter, at: start + 12)
            guard
                PacketCrypto.seal(
                    &slot, header: start..<packet.lowerBound, payload: packet, tagOffset: packet.upperBound,
                    encrypt: encrypt, key: senderKey, counter: counter)
            else { return nil }
            counter += 1
            return start..<end
        }
    }

    public struct Opener: PacketOpener {
        let keys: [TunnelKey]
        private let keyIDs: [UInt16]
        /// Senders remembered: their keys and replay windows, in place (a window is 512 bytes; a
        /// dictionary of them would copy one out and back per packet), found through `senderIndex`.
        private var senders: [KnownSender] = []
        private var senderIndex: [UInt64: Int] = [:]
        /// The sender of the last packet that opened: a tunnel's datagrams come in runs from one
        /// sender, so most lookups skip the hash.
        private var lastSender: (id: UInt64, index: Int)?
        /// The slot the next new sender takes once the table is full (round robin).
        private var nextEviction = 0
        private var newSenders: TokenBucket
        private let clock: @Sendable () -> UInt64

        private struct KnownSender {
            let id: UInt64
            let key: SenderKey
            let keyIndex: Int
            var window: ReplayWindow
        }

        public init(
            key: TunnelKey,
            newSenders: TokenBucket = TokenBucket(
                rate: AuthenticatedFraming.newSendersPerSecond,
                burst: UInt64(AuthenticatedFraming.maximumSenders)),
            clock: @escaping @Sendable () -> UInt64 = { Clock.monotonicNanoseconds() }
        ) {
            self.init(keys: [key], newSenders: newSenders, clock: clock)
        }

        public init(
            keys: [TunnelKey],
            newSenders: TokenBucket = TokenBucket(
                rate: AuthenticatedFraming.newSendersPerSecond,
                burst: UInt64(AuthenticatedFraming.maximumSenders)),
            clock: @escaping @Sendable () -> UInt64 = { Clock.monotonicNanoseconds() }
        ) {
            self.keys = keys
            keyIDs = keys.map(\.id)
            self.newSenders = newSenders
            self.clock = clock
            senders.reserveCapacity(AuthenticatedFraming.maximumSenders)
            senderIndex.reserveCapacity(AuthenticatedFraming.maximumSenders)
        }

        public var knownSenders: Int { senders.count }

        public mutating func open(
            _ slot: inout MutableSpan<UInt8>, datagram: Range<Int>, from peer: SocketAddress,
            reply: inout MutableSpan<UInt8>
        ) -> OpenedDatagram {
            switch open(&slot, datagram: datagram) {
            case let .success((payload, keyIndex)): .forward(payload, session: PeerSession(index: keyIndex))
            case let .failure(reason): .drop(reason, reply: nil)
            }
        }

        private func index(of sender: UInt64) -> Int? {
            if let lastSender, lastSender.id == sender { return lastSender.index }
            return senderIndex[sender]
        }

        /// The inner packet's range and the index of the key it was sealed with, or why not.
        public mutating func open(_ slot: inout MutableSpan<UInt8>, datagram: Range<Int>) -> Result<(Range<Int>, Int), DropReason> {
            let header = AuthenticatedFraming.headerLength
            let tag = AuthenticatedFraming.tagLength
            guard datagram.count > header + tag else { return .failure(datagram.isEmpty ? .truncated : .badFraming) }
            let start = datagram.lowerBound
            guard let sealing = AuthenticatedFraming.sealing(ofType: slot[start]), slot[start + 1] == 0
            else { return .failure(.badFraming) }
            guard let keyIndex = keyIDs.firstIndex(of: slot.span.u16(at: start + 2)) else { return .failure(.unknownKey) }
            let sender = slot.span.u64(at: start + 4)
            let counter = slot.span.u64(at: start + 12)
            let known = index(of: sender)
            if let known {
                // A sender id belongs to one key and one cipher: the same id under another is somebody
                // else's forgery.
                guard senders[known].keyIndex == keyIndex, senders[known].key.algorithm == sealing.cipher else { return .failure(.badTag) }
                guard senders[known].window.check(counter) else { return .failure(.replayed) }
            }
            // A new sender's key is derived before its first packet is verified (within the
            // new-sender budget), but nothing is remembered about it unless the tag checks out.
            if known == nil, !newSenders.take(now: clock()) { return .failure(.senderLimit) }
            let senderKey = known.map { senders[$0].key } ?? SenderKey(keys[keyIndex], sender: sender, cipher: sealing.cipher)
            let payload = (start + header)..<(datagram.upperBound - tag)
            guard
                PacketCrypto.open(
                    &slot, header: start..<payload.lowerBound, payload: payload, tagOffset: payload.upperBound,
                    encrypted: sealing.encrypted, key: senderKey, counter: counter)
            else { return .failure(.badTag) }
            let index = known ?? remember(sender, key: senderKey, keyIndex: keyIndex)
            senders[index].window.accept(counter)
            lastSender = (sender, index)
            return .success((payload, keyIndex))
        }

        /// Adds a sender whose first packet verified, in place of an old one when the table is full.
        private mutating func remember(_ sender: UInt64, key: SenderKey, keyIndex: Int) -> Int {
            let entry = KnownSender(id: sender, key: key, keyIndex: keyIndex, window: ReplayWindow())
            let index: Int
            if senders.count < AuthenticatedFraming.maximumSenders {
                index = senders.count
                senders.append(entry)
            } else {
                index = nextEviction
                nextEviction = (nextEviction + 1) % senders.count
                senderIndex.removeValue(forKey: senders[index].id)
                if lastSender?.index == index { lastSender = nil }
                senders[index] = entry
            }
            senderIndex[sender] = index
            return index
        }
    }
}
