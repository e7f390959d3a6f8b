import WireFormat

/// Why a handshake or cookie message was refused (a counter label each, for the integrator).
public enum HandshakeError: Error, Equatable, Sendable {
    /// The datagram is not the exact length of its message type.
    case wrongLength(expected: Int, actual: Int)
    /// The first four bytes are not this message's type (with its three reserved zero bytes).
    case wrongType
    /// MAC1 does not match our public key: not meant for us, or damaged. Checked before any DH.
    case badMAC1
    /// A Curve25519 result was all zeros (a low-order point).
    case invalidKey
    /// An AEAD tag did not verify (encrypted static, timestamp, empty payload or cookie).
    case decryptFailed
    /// The initiation came from a static key this handshake is not for (or no peer has).
    case unknownPeer
    /// The initiation's timestamp is not newer than the last one accepted from that peer.
    case replayedTimestamp
    /// A second initiation from the same peer within 50 ms (wireguard-go's flood guard).
    case initiationTooSoon
    /// The message answers something this handshake did not send (no initiation outstanding, or
    /// the receiver index is not ours; for a cookie reply, no MAC1 to answer).
    case unexpected
}

/// The first byte of every WireGuard message; the three after it are zero.
public enum MessageType: UInt8, Sendable {
    case initiation = 1, response = 2, cookieReply = 3, transport = 4

    /// The type of `datagram`, or nil when it has none (too short, or reserved bytes not zero).
    public init?(of datagram: Span<UInt8>) {
        guard datagram.count >= 4, datagram[1] == 0, datagram[2] == 0, datagram[3] == 0 else { return nil }
        self.init(rawValue: datagram[0])
    }
}

/// Message lengths, exact for the handshake messages; a transport message is at least its header and tag.
public enum MessageLength {
    public static let initiation = 148
    public static let response = 92
    public static let cookieReply = 64
    public static let transportHeader = 16
    public static let transportMinimum = 32
}

/// Little-endian 32-bit field reads and writes (WireGuard's integers are little-endian).
func readUInt32(_ bytes: Span<UInt8>, at offset: Int) -> UInt32 {
    UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
}

func appendUInt32(_ value: UInt32, to bytes: inout [UInt8]) {
    for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
}

func copy(_ bytes: Span<UInt8>, _ range: Range<Int>) -> [UInt8] { range.map { bytes[$0] } }

/// Checks the exact length and the type of a handshake message.
func checkFrame(_ bytes: Span<UInt8>, _ type: MessageType, length: Int) throws(HandshakeError) {
    guard bytes.count == length else { throw .wrongLength(expected: length, actual: bytes.count) }
    guard MessageType(of: bytes) == type else { throw .wrongType }
}

/// Handshake initiation (type 1, 148 bytes): sender index, unencrypted ephemeral, encrypted static
/// (32 + tag) and timestamp (12 + tag), MAC1, MAC2.
public struct InitiationMessage: Equatable, Sendable {
    public var senderIndex: UInt32
    public var ephemeral: [UInt8]
    public var encryptedStatic: [UInt8]
    public var encryptedTimestamp: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    public init(parsing bytes: Span<UInt8>) throws(HandshakeError) {
        try checkFrame(bytes, .initiation, length: MessageLength.initiation)
        senderIndex = readUInt32(bytes, at: 4)
        ephemeral = copy(bytes, 8..<40)
        encryptedStatic = copy(bytes, 40..<88)
        encryptedTimestamp = copy(bytes, 88..<116)
        mac1 = copy(bytes, 116..<132)
        mac2 = copy(bytes, 132..<148)
    }

    init(senderIndex: UInt32, ephemeral: [UInt8], encryptedStatic: [UInt8], encryptedTimestamp: [UInt8]) {
        self.senderIndex = senderIndex
        self.ephemeral = ephemeral
        self.encryptedStatic = encryptedStatic
        self.encryptedTimestamp = encryptedTimestamp
        mac1 = [UInt8](repeating: 0, count: 16)
        mac2 = mac1
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [MessageType.initiation.rawValue, 0, 0, 0]
        out.reserveCapacity(MessageLength.initiation)
        appendUInt32(senderIndex, to: &out)
        out += ephemeral + encryptedStatic + encryptedTimestamp + mac1 + mac2
        return out
    }
}

/// Handshake response (type 2, 92 bytes): sender and receiver indices, ephemeral, encrypted empty
/// payload (the tag alone), MAC1, MAC2.
public struct ResponseMessage: Equatable, Sendable {
    public var senderIndex: UInt32
    public var receiverIndex: UInt32
    public var ephemeral: [UInt8]
    public var encryptedNothing: [UInt8]
    public var mac1: [UInt8]
    public var mac2: [UInt8]

    public init(parsing bytes: Span<UInt8>) throws(HandshakeError) {
        try checkFrame(bytes, .response, length: MessageLength.response)
        senderIndex = readUInt32(bytes, at: 4)
        receiverIndex = readUInt32(bytes, at: 8)
        ephemeral = copy(bytes, 12..<44)
        encryptedNothing = copy(bytes, 44..<60)
        mac1 = copy(bytes, 60..<76)
        mac2 = copy(bytes, 76..<92)
    }

    init(senderIndex: UInt32, receiverIndex: UInt32, ephemeral: [UInt8], encryptedNothing: [UInt8]) {
        self.senderIndex = senderIndex
        self.receiverIndex = receiverIndex
        self.ephemeral = ephemeral
        self.encryptedNothing = encryptedNothing
        mac1 = [UInt8](repeating: 0, count: 16)
        mac2 = mac1
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [MessageType.response.rawValue, 0, 0, 0]
        out.reserveCapacity(MessageLength.response)
        appendUInt32(senderIndex, to: &out)
        appendUInt32(receiverIndex, to: &out)
        out += ephemeral + encryptedNothing + mac1 + mac2
        return out
    }
}

/// Cookie reply (type 3, 64 bytes): receiver index, 24-byte nonce, encrypted cookie (16 + tag).
public struct CookieReplyMessage: Equatable, Sendable {
    public var receiverIndex: UInt32
    public var nonce: [UInt8]
    public var encryptedCookie: [UInt8]

    public init(parsing bytes: Span<UInt8>) throws(HandshakeError) {
        try checkFrame(bytes, .cookieReply, length: MessageLength.cookieReply)
        receiverIndex = readUInt32(bytes, at: 4)
        nonce = copy(bytes, 8..<32)
        encryptedCookie = copy(bytes, 32..<64)
    }

    init(receiverIndex: UInt32, nonce: [UInt8], encryptedCookie: [UInt8]) {
        self.receiverIndex = receiverIndex
        self.nonce = nonce
        self.encryptedCookie = encryptedCookie
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = [MessageType.cookieReply.rawValue, 0, 0, 0]
        appendUInt32(receiverIndex, to: &out)
        return out + nonce + encryptedCookie
    }
}

/// The receiver index of a response, cookie reply or transport message (bytes 4..<8 for the latter
/// two, 8..<12 for a response), so the caller can find the peer that owns that index before any
/// cryptography; nil for an initiation or a datagram too short to have one.
public func receiverIndex(of datagram: Span<UInt8>) -> UInt32? {
    switch MessageType(of: datagram) {
    case .response: datagram.count >= 12 ? readUInt32(datagram, at: 8) : nil
    case .cookieReply, .transport: datagram.count >= 8 ? readUInt32(datagram, at: 4) : nil
    case .initiation, nil: nil
    }
}
