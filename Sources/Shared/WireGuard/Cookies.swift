import WireFormat

/// MAC1 and MAC2 sit in the last 32 bytes of an initiation or response: MAC1 covers what precedes
/// it, MAC2 that and MAC1.
enum MACs {
    static let cookieRefresh: UInt64 = 120_000_000_000
    static let mac1Label = Array("mac1----".utf8)
    static let cookieLabel = Array("cookie--".utf8)

    static func mac1Key(_ key: PublicKey) -> [UInt8] { BLAKE2s.hash(mac1Label, key.bytes) }
    static func cookieKey(_ key: PublicKey) -> [UInt8] { BLAKE2s.hash(cookieLabel, key.bytes) }

    static func mac1(_ message: Span<UInt8>, key: [UInt8]) -> [UInt8] {
        BLAKE2s.mac(key: key, message.extracting(0..<(message.count - 32)))
    }

    static func mac2(_ message: Span<UInt8>, cookie: [UInt8]) -> [UInt8] {
        BLAKE2s.mac(key: cookie, message.extracting(0..<(message.count - 16)))
    }

    /// An initiation or a response, by exact length and type: the only messages with MACs.
    static func hasMACs(_ message: Span<UInt8>) -> Bool {
        switch MessageType(of: message) {
        case .initiation: message.count == MessageLength.initiation
        case .response: message.count == MessageLength.response
        default: false
        }
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}

/// The responder's side of cookies, one per local identity: checks MAC1 on every handshake message,
/// and under load MAC2, answering a message without a valid MAC2 with a cookie reply instead of
/// doing any Curve25519. The cookie is a MAC of the sender's address under a secret that changes
/// every 120 s, so it proves the sender receives at that address and costs us no state per sender.
public struct CookieChecker: Sendable {
    let mac1Key: [UInt8]
    let encryption: XChaCha20Poly1305Key
    private var secret: [UInt8] = []
    private var secretSetAt: UInt64?

    public init(identity: StaticIdentity) {
        mac1Key = MACs.mac1Key(identity.publicKey)
        encryption = XChaCha20Poly1305Key(MACs.cookieKey(identity.publicKey))
    }

    /// Whether `message` (an initiation or response, exact length) carries a valid MAC1 for our key.
    public func checkMAC1(_ message: Span<UInt8>) -> Bool {
        guard MACs.hasMACs(message) else { return false }
        let mac = MACs.mac1(message, key: mac1Key)
        return constantTimeEqual(mac.span, message.extracting((message.count - 32)..<(message.count - 16)))
    }

    /// Whether `message` carries a valid MAC2 for the cookie `source` (the sender's address bytes,
    /// `sourceBytes`) would have now. False while no secret is current.
    public func checkMAC2(_ message: Span<UInt8>, source: Span<UInt8>, now: UInt64) -> Bool {
        guard MACs.hasMACs(message), let secretSetAt, now &- secretSetAt <= MACs.cookieRefresh else { return false }
        let cookie = BLAKE2s.mac(key: secret, source)
        let mac = MACs.mac2(message, cookie: cookie)
        return constantTimeEqual(mac.span, message.extracting((message.count - 16)..<message.count))
    }

    /// The cookie reply to `message` (whose MAC1 was valid) from `source`, to the sender's index
    /// `receiverIndex`. `nonce` is random unless a test fixes it.
    public mutating func makeReply(
        to message: Span<UInt8>, receiverIndex: UInt32, source: Span<UInt8>, now: UInt64,
        nonce fixed: [UInt8]? = nil
    ) throws(HandshakeError) -> [UInt8] {
        guard MACs.hasMACs(message) else { throw .wrongType }
        let nonce = fixed ?? MACs.randomBytes(XChaCha20Poly1305Key.nonceLength)
        if secretSetAt.map({ now &- $0 > MACs.cookieRefresh }) ?? true {
            wipe(&secret)
            secret = MACs.randomBytes(32)
            secretSetAt = now
        }
        let cookie = BLAKE2s.mac(key: secret, source)
        let mac1 = copy(message, (message.count - 32)..<(message.count - 16))
        let sealed = encryption.seal(cookie, nonce: nonce, authenticating: mac1)
        return CookieReplyMessage(receiverIndex: receiverIndex, nonce: nonce, encryptedCookie: sealed).bytes
    }

    /// An address as the cookie covers it: the IP's bytes then the port, little-endian (as
    /// wireguard-go's netip.AddrPort.MarshalBinary).
    public static func sourceBytes(_ address: SocketAddress) -> [UInt8] {
        var out: [UInt8] = []
        switch address.ip {
        case .v4(let value):
            for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
        case .v6(let high, let low):
            for half in [high, low] {
                for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: half >> UInt64(shift))) }
            }
        }
        out.append(UInt8(truncatingIfNeeded: address.port))
        out.append(UInt8(truncatingIfNeeded: address.port >> 8))
        return out
    }
}

/// The sender's side of cookies, one per peer: puts MAC1 (keyed by the peer's public key) on every
/// handshake message to it, and MAC2 while a cookie from it is fresh; takes the peer's cookie replies.
public struct CookieGenerator: Sendable {
    let mac1Key: [UInt8]
    let encryption: XChaCha20Poly1305Key
    private var lastMAC1: [UInt8]?
    private var cookie: [UInt8]?
    private var cookieSetAt: UInt64 = 0

    public init(peer: PublicKey) {
        mac1Key = MACs.mac1Key(peer)
        encryption = XChaCha20Poly1305Key(MACs.cookieKey(peer))
    }

    /// Whether a cookie is current, so that messages carry MAC2.
    public func hasCookie(now: UInt64) -> Bool { cookie != nil && now &- cookieSetAt <= MACs.cookieRefresh }

    /// Writes MAC1, and MAC2 when a cookie is current (else zeros), into the last 32 bytes of `message`.
    public mutating func addMACs(to message: inout [UInt8], now: UInt64) {
        let count = message.count
        let mac1 = MACs.mac1(message.span, key: mac1Key)
        message.replaceSubrange((count - 32)..<(count - 16), with: mac1)
        lastMAC1 = mac1
        let mac2 =
            if let cookie, hasCookie(now: now) { MACs.mac2(message.span, cookie: cookie) } else { [UInt8](repeating: 0, count: 16) }
        message.replaceSubrange((count - 16)..<count, with: mac2)
    }

    /// Takes a cookie reply to the last message we sent this peer; from then on our messages carry MAC2.
    public mutating func consumeReply(_ bytes: Span<UInt8>, now: UInt64) throws(HandshakeError) {
        let reply = try CookieReplyMessage(parsing: bytes)
        guard let lastMAC1 else { throw .unexpected }
        guard let opened = encryption.open(reply.encryptedCookie, nonce: reply.nonce, authenticating: lastMAC1) else {
            throw .decryptFailed
        }
        cookie = opened
        cookieSetAt = now
        self.lastMAC1 = nil
    }
}
