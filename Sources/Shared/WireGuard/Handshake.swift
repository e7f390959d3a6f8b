/// Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard runs it (the paper's §5.4; wireguard-go's
/// noise-protocol.go): the initiator knows the responder's static key beforehand; one round trip
/// authenticates both and yields a pair of transport keys.
enum Noise {
    static let construction = Array("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s".utf8)
    static let identifier = Array("WireGuard v1 zx2c4 Jason@zx2c4.com".utf8)
    static let initialChainingKey = BLAKE2s.hash(construction)
    static let initialHash = BLAKE2s.hash(initialChainingKey, identifier)
    /// wireguard-go's HandshakeInitationRate: one initiation per peer per 50 ms.
    static let initiationInterval: UInt64 = 50_000_000
}

/// Our long-term key pair, with what every handshake message to us is checked against.
public struct StaticIdentity: Sendable {
    public let privateKey: PrivateKey
    public var publicKey: PublicKey { privateKey.publicKey }
    let mac1Key: [UInt8]

    public init(privateKey: PrivateKey) {
        self.privateKey = privateKey
        mac1Key = MACs.mac1Key(privateKey.publicKey)
    }

    /// The first half of answering an initiation, before the peer is known: length, type, MAC1,
    /// then es and the decryption of the initiator's static key. The caller finds that key's peer
    /// and hands the result to its `Handshake.consumeInitiation`.
    public func openInitiation(_ bytes: Span<UInt8>) throws(HandshakeError) -> OpenedInitiation {
        let message = try InitiationMessage(parsing: bytes)
        guard constantTimeEqual(MACs.mac1(bytes, key: mac1Key).span, message.mac1.span) else { throw .badMAC1 }
        guard let ephemeral = PublicKey(bytes: message.ephemeral) else { throw .invalidKey }
        var hash = BLAKE2s.hash(Noise.initialHash, publicKey.bytes)
        hash = BLAKE2s.hash(hash, message.ephemeral)
        var chainingKey = WireGuardKDF.kdf1(key: Noise.initialChainingKey, input: message.ephemeral)
        guard var shared = privateKey.sharedSecret(with: ephemeral) else { throw .invalidKey }
        defer { wipe(&shared) }
        var key: [UInt8]
        (chainingKey, key) = WireGuardKDF.kdf2(key: chainingKey, input: shared)
        defer { wipe(&key) }
        guard let staticBytes = HandshakeAEAD.open(key: key, message.encryptedStatic, authenticating: hash),
            let peer = PublicKey(bytes: staticBytes)
        else { throw .decryptFailed }
        hash = BLAKE2s.hash(hash, message.encryptedStatic)
        return OpenedInitiation(
            peer: peer, senderIndex: message.senderIndex, ephemeral: ephemeral, hash: hash, chainingKey: chainingKey,
            encryptedTimestamp: message.encryptedTimestamp)
    }
}

/// An initiation whose static key decrypted: who claims to send it. Not yet authenticated (the
/// timestamp, under the static-static secret, proves it).
public struct OpenedInitiation: Sendable {
    public let peer: PublicKey
    public let senderIndex: UInt32
    let ephemeral: PublicKey
    let hash: [UInt8]
    let chainingKey: [UInt8]
    let encryptedTimestamp: [UInt8]
}

/// The handshake with one peer, owned by that peer (as wireguard-go's Peer owns its handshake):
/// either side, one handshake at a time; `transportKeys()` ends it with the session's keys.
public struct Handshake: Sendable {
    public enum State: Sendable, Equatable {
        case idle, initiationSent, initiationConsumed, responseSent, responseConsumed
    }

    public let remoteStatic: PublicKey
    let presharedKey: PresharedKey
    /// DH(our static, their static): the same for every handshake, so computed once. Nil for a
    /// low-order peer key, which no handshake can then complete with.
    private let staticStatic: [UInt8]?
    private let localStatic: PublicKey
    /// MAC1/MAC2 on our messages to this peer and its cookie replies.
    public var cookies: CookieGenerator

    public private(set) var state: State = .idle
    private var hash: [UInt8] = []
    private var chainingKey: [UInt8] = []
    private var localEphemeral: PrivateKey?
    private var remoteEphemeral: PublicKey?
    public private(set) var localIndex: UInt32 = 0
    public private(set) var remoteIndex: UInt32 = 0
    /// The newest initiation timestamp accepted from this peer (kept across handshakes: replay protection).
    public private(set) var latestTimestamp: TAI64N?
    private var latestInitiationAt: UInt64?

    public init(identity: StaticIdentity, peer: PublicKey, presharedKey: PresharedKey = .none) {
        remoteStatic = peer
        self.presharedKey = presharedKey
        staticStatic = identity.privateKey.sharedSecret(with: peer)
        localStatic = identity.publicKey
        cookies = CookieGenerator(peer: peer)
    }

    // MARK: initiator

    /// A new initiation (148 bytes, MACs included); any handshake in progress is abandoned.
    /// `ephemeral`, `localIndex` and `timestamp` are fresh unless a test fixes them; `now` is the
    /// monotonic clock in nanoseconds (for the cookie's age).
    public mutating func createInitiation(
        localIndex: UInt32 = UInt32.random(in: 0...UInt32.max), ephemeral: PrivateKey = PrivateKey(),
        timestamp: TAI64N = .now(), now: UInt64
    ) throws(HandshakeError) -> [UInt8] {
        reset()
        guard let staticStatic else { throw .invalidKey }
        var hash = BLAKE2s.hash(Noise.initialHash, remoteStatic.bytes)
        var chainingKey = WireGuardKDF.kdf1(key: Noise.initialChainingKey, input: ephemeral.publicKey.bytes)
        hash = BLAKE2s.hash(hash, ephemeral.publicKey.bytes)
        guard var shared = ephemeral.sharedSecret(with: remoteStatic) else { throw .invalidKey }
        defer { wipe(&shared) }
        var key: [UInt8]
        (chainingKey, key) = WireGuardKDF.kdf2(key: chainingKey, input: shared)
        let encryptedStatic = HandshakeAEAD.seal(key: key, localStatic.bytes, authenticating: hash)
        hash = BLAKE2s.hash(hash, encryptedStatic)
        wipe(&key)
        (chainingKey, key) = WireGuardKDF.kdf2(key: chainingKey, input: staticStatic)
        let encryptedTimestamp = HandshakeAEAD.seal(key: key, timestamp.bytes, authenticating: hash)
        hash = BLAKE2s.hash(hash, encryptedTimestamp)
        wipe(&key)
        var bytes = InitiationMessage(
            senderIndex: localIndex, ephemeral: ephemeral.publicKey.bytes, encryptedStatic: encryptedStatic,
            encryptedTimestamp: encryptedTimestamp
        ).bytes
        cookies.addMACs(to: &bytes, now: now)
        self.hash = hash
        self.chainingKey = chainingKey
        localEphemeral = ephemeral
        self.localIndex = localIndex
        state = .initiationSent
        return bytes
    }

    /// Takes the peer's response to our initiation (the caller routed it here by `receiverIndex(of:)`).
    /// MAC1 must be for our key; on success the handshake is complete (`transportKeys()`).
    public mutating func consumeResponse(_ bytes: Span<UInt8>, identity: StaticIdentity) throws(HandshakeError) {
        let message = try ResponseMessage(parsing: bytes)
        guard constantTimeEqual(MACs.mac1(bytes, key: identity.mac1Key).span, message.mac1.span) else { throw .badMAC1 }
        guard state == .initiationSent, message.receiverIndex == localIndex, let localEphemeral else { throw .unexpected }
        guard let ephemeral = PublicKey(bytes: message.ephemeral) else { throw .invalidKey }
        guard var ee = localEphemeral.sharedSecret(with: ephemeral), var se = identity.privateKey.sharedSecret(with: ephemeral)
        else { throw .invalidKey }
        var (hash, next, key) = responseKeySchedule(ephemeral: message.ephemeral, ee: &ee, se: &se)
        defer { wipe(&key) }
        guard HandshakeAEAD.open(key: key, message.encryptedNothing, authenticating: hash) != nil else {
            wipe(&next)
            throw .decryptFailed
        }
        hash = BLAKE2s.hash(hash, message.encryptedNothing)
        self.hash = hash
        self.chainingKey = next
        wipe(&next)
        remoteIndex = message.senderIndex
        self.localEphemeral = nil
        state = .responseConsumed
    }

    // MARK: responder

    /// The second half of answering an initiation: ss, the timestamp (newer than the last from this
    /// peer, or it is a replay) and the 50 ms flood guard. `now` is the monotonic clock in nanoseconds.
    public mutating func consumeInitiation(_ opened: OpenedInitiation, now: UInt64) throws(HandshakeError) {
        guard opened.peer == remoteStatic else { throw .unknownPeer }
        guard let staticStatic else { throw .invalidKey }
        var (chainingKey, key) = WireGuardKDF.kdf2(key: opened.chainingKey, input: staticStatic)
        defer { wipe(&key) }
        guard let stampBytes = HandshakeAEAD.open(key: key, opened.encryptedTimestamp, authenticating: opened.hash),
            let timestamp = TAI64N(bytes: stampBytes)
        else { throw .decryptFailed }
        // Authenticated from here on: it is this peer, or a replay of it.
        if let latestTimestamp, timestamp <= latestTimestamp { throw .replayedTimestamp }
        if let latestInitiationAt, now &- latestInitiationAt < Noise.initiationInterval { throw .initiationTooSoon }
        reset()
        hash = BLAKE2s.hash(opened.hash, opened.encryptedTimestamp)
        self.chainingKey = chainingKey
        wipe(&chainingKey)
        remoteEphemeral = opened.ephemeral
        remoteIndex = opened.senderIndex
        latestTimestamp = timestamp
        latestInitiationAt = now
        state = .initiationConsumed
    }

    /// The response (92 bytes, MACs included) to the initiation just consumed; the handshake is then
    /// complete on our side (`transportKeys()`). `ephemeral` and `localIndex` are fresh unless fixed.
    public mutating func createResponse(
        localIndex: UInt32 = UInt32.random(in: 0...UInt32.max), ephemeral: PrivateKey = PrivateKey(), now: UInt64
    ) throws(HandshakeError) -> [UInt8] {
        guard state == .initiationConsumed, let remoteEphemeral else { throw .unexpected }
        guard var ee = ephemeral.sharedSecret(with: remoteEphemeral), var se = ephemeral.sharedSecret(with: remoteStatic) else {
            throw .invalidKey
        }
        var (hash, next, key) = responseKeySchedule(ephemeral: ephemeral.publicKey.bytes, ee: &ee, se: &se)
        defer { wipe(&key) }
        let encryptedNothing = HandshakeAEAD.seal(key: key, [], authenticating: hash)
        hash = BLAKE2s.hash(hash, encryptedNothing)
        var bytes = ResponseMessage(
            senderIndex: localIndex, receiverIndex: remoteIndex, ephemeral: ephemeral.publicKey.bytes,
            encryptedNothing: encryptedNothing
        ).bytes
        cookies.addMACs(to: &bytes, now: now)
        self.hash = hash
        self.chainingKey = next
        wipe(&next)
        self.localIndex = localIndex
        self.remoteEphemeral = nil
        state = .responseSent
        return bytes
    }

    // MARK: both

    /// The response's key schedule, the same on both sides (Noise's e, ee, se, psk): the hash and
    /// chaining key after it, and the key that seals the empty payload. Wipes `ee` and `se`.
    private func responseKeySchedule(
        ephemeral: [UInt8], ee: inout [UInt8], se: inout [UInt8]
    ) -> (hash: [UInt8], chainingKey: [UInt8], key: [UInt8]) {
        defer {
            wipe(&ee)
            wipe(&se)
        }
        var hash = BLAKE2s.hash(self.hash, ephemeral)
        var chainingKey = WireGuardKDF.kdf1(key: self.chainingKey, input: ephemeral)
        chainingKey = WireGuardKDF.kdf1(key: chainingKey, input: ee)
        chainingKey = WireGuardKDF.kdf1(key: chainingKey, input: se)
        // (next chaining key, tau, key): tau is mixed into the hash and wiped in place.
        var derived = WireGuardKDF.kdf3(key: chainingKey, input: presharedKey.bytes)
        wipe(&chainingKey)
        hash = BLAKE2s.hash(hash, derived.1)
        wipe(&derived.1)
        return (hash, derived.0, derived.2)
    }

    /// The session's keys once the handshake is complete (initiator: response consumed; responder:
    /// response sent); the handshake is then reset, its secrets wiped. Nil before that.
    public mutating func transportKeys() -> TransportKeys? {
        let initiator: Bool
        switch state {
        case .responseConsumed: initiator = true
        case .responseSent: initiator = false
        default: return nil
        }
        var (first, second) = WireGuardKDF.kdf2(key: chainingKey, input: [])
        defer {
            wipe(&first)
            wipe(&second)
        }
        let keys = TransportKeys(
            sending: TransportKey(initiator ? first : second), receiving: TransportKey(initiator ? second : first),
            localIndex: localIndex, remoteIndex: remoteIndex, isInitiator: initiator)
        reset()
        return keys
    }

    /// Forgets the handshake in progress (not the latest timestamp: that guards against replays).
    public mutating func reset() {
        wipe(&hash)
        wipe(&chainingKey)
        hash = []
        chainingKey = []
        localEphemeral = nil
        remoteEphemeral = nil
        state = .idle
    }
}
