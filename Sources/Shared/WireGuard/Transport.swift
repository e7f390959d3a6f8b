import CAEAD
import WireFormat

/// One direction's ChaCha20-Poly1305 key with its BoringSSL context set up once; immutable, so
/// workers may share it.
public final class TransportKey: @unchecked Sendable {
    let cipher: OpaquePointer

    init(_ key: [UInt8]) {
        guard let made = key.withUnsafeBufferPointer({ caead_chacha20_poly1305_new($0.baseAddress) }) else {
            fatalError("out of memory setting up a transport key")
        }
        cipher = made
    }

    deinit { caead_free(cipher) }
}

/// A session's keys and indices, from `Handshake.transportKeys()`.
public struct TransportKeys: Sendable {
    public let sending: TransportKey
    public let receiving: TransportKey
    /// Ours: the receiver index the peer puts on what it sends us.
    public let localIndex: UInt32
    /// The peer's: the receiver index we put on what we send.
    public let remoteIndex: UInt32
    public let isInitiator: Bool

    public var sender: TransportSender { TransportSender(key: sending, remoteIndex: remoteIndex) }
    public var receiver: TransportReceiver { TransportReceiver(key: receiving, localIndex: localIndex) }
}

/// Why a transport message was refused or could not be sealed.
public enum TransportError: Error, Equatable, Sendable {
    /// Shorter than header and tag, or not type 4.
    case malformed
    /// The receiver index is not this session's.
    case unknownReceiver
    /// Seen already, or older than the replay window.
    case replayed
    /// The counter is at or past REJECT_AFTER_MESSAGES: the session must rekey.
    case counterExhausted
    /// The tag did not verify.
    case decryptFailed
    /// The buffer has no room for header, padding or tag around the packet.
    case noRoom
}

public enum TransportLimits {
    /// REJECT_AFTER_MESSAGES: 2^64 − 2^13 − 1, no counter at or above it is sent or accepted.
    public static let rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)
    /// REKEY_AFTER_MESSAGES: 2^60, when the initiator should start a new handshake.
    public static let rekeyAfterMessages: UInt64 = 1 << 60
}

/// Nonce for transport counter `counter`: four zero bytes, then the counter little-endian.
@inline(__always)
func withNonce<R>(_ counter: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
    var nonce: (UInt64, UInt64) = (0, 0)
    return withUnsafeMutableBytes(of: &nonce) { out in
        out.storeBytes(of: counter.littleEndian, toByteOffset: 4, as: UInt64.self)
        return body(UnsafePointer(out.baseAddress!.assumingMemoryBound(to: UInt8.self)))
    }
}

/// Seals transport messages of one session, in place: counter from 0 up.
public struct TransportSender: Sendable {
    let key: TransportKey
    public let remoteIndex: UInt32
    public private(set) var nextCounter: UInt64 = 0

    init(key: TransportKey, remoteIndex: UInt32) {
        self.key = key
        self.remoteIndex = remoteIndex
    }

    /// Moves the counter on (tests: the limit without 2^64 seals).
    mutating func skip(to counter: UInt64) { nextCounter = counter }

    /// The room `seal` needs around a packet of `length` bytes: 16 before, padding and tag after.
    public static func trailerLength(forPacketLength length: Int) -> Int { (16 - length % 16) % 16 + 16 }

    /// Seals the packet at `packet` (empty: a keepalive) where it lies: the 16-byte header goes in the
    /// 16 bytes before it, zero padding to a multiple of 16 and the tag after it. Returns the
    /// datagram's range. No allocation.
    public mutating func seal(_ buffer: inout MutableSpan<UInt8>, packet: Range<Int>) throws(TransportError) -> Range<Int> {
        let padded = packet.count + (16 - packet.count % 16) % 16
        guard packet.lowerBound >= MessageLength.transportHeader, packet.lowerBound + padded + 16 <= buffer.count else {
            throw .noRoom
        }
        guard nextCounter < TransportLimits.rejectAfterMessages else { throw .counterExhausted }
        let counter = nextCounter
        nextCounter += 1
        let start = packet.lowerBound - MessageLength.transportHeader
        buffer[start] = MessageType.transport.rawValue
        buffer[start + 1] = 0
        buffer[start + 2] = 0
        buffer[start + 3] = 0
        for offset in 0..<4 { buffer[start + 4 + offset] = UInt8(truncatingIfNeeded: remoteIndex >> UInt32(8 * offset)) }
        for offset in 0..<8 { buffer[start + 8 + offset] = UInt8(truncatingIfNeeded: counter >> UInt64(8 * offset)) }
        for index in packet.upperBound..<(packet.lowerBound + padded) { buffer[index] = 0 }
        let cipher = key.cipher
        let ok = buffer.withUnsafeMutableBufferPointer { bytes in
            withNonce(counter) { nonce in
                let base = bytes.baseAddress!
                return caead_seal(cipher, base + packet.lowerBound, padded, base + packet.lowerBound + padded, nonce, nil, 0)
            }
        }
        precondition(ok == 1, "ChaCha20-Poly1305 seal failed")
        return start..<(packet.lowerBound + padded + 16)
    }
}

/// Opens transport messages of one session, in place, behind its replay filter.
public struct TransportReceiver: Sendable {
    let key: TransportKey
    public let localIndex: UInt32
    public private(set) var replay = ReplayFilter()

    init(key: TransportKey, localIndex: UInt32) {
        self.key = key
        self.localIndex = localIndex
    }

    /// Verifies and decrypts the transport message at `datagram` in place; returns the range of the
    /// plaintext (padding included: the inner IP header says the packet's length; empty for a
    /// keepalive) and its counter. The replay filter records the counter only once the tag verified.
    public mutating func open(_ buffer: inout MutableSpan<UInt8>, datagram: Range<Int>) -> Result<(Range<Int>, UInt64), TransportError> {
        guard datagram.count >= MessageLength.transportMinimum, datagram.upperBound <= buffer.count,
            buffer[datagram.lowerBound] == MessageType.transport.rawValue, buffer[datagram.lowerBound + 1] == 0,
            buffer[datagram.lowerBound + 2] == 0, buffer[datagram.lowerBound + 3] == 0
        else { return .failure(.malformed) }
        let start = datagram.lowerBound
        var receiver: UInt32 = 0
        for offset in 0..<4 { receiver |= UInt32(buffer[start + 4 + offset]) << UInt32(8 * offset) }
        guard receiver == localIndex else { return .failure(.unknownReceiver) }
        var counter: UInt64 = 0
        for offset in 0..<8 { counter |= UInt64(buffer[start + 8 + offset]) << UInt64(8 * offset) }
        guard counter < TransportLimits.rejectAfterMessages else { return .failure(.counterExhausted) }
        guard replay.check(counter) else { return .failure(.replayed) }
        let payload = (start + MessageLength.transportHeader)..<(datagram.upperBound - 16)
        let cipher = key.cipher
        let ok = buffer.withUnsafeMutableBufferPointer { bytes in
            withNonce(counter) { nonce in
                let base = bytes.baseAddress!
                return caead_open(cipher, base + payload.lowerBound, payload.count, base + payload.upperBound, nonce, nil, 0)
            }
        }
        guard ok == 1 else { return .failure(.decryptFailed) }
        replay.accept(counter)
        return .success((payload, counter))
    }
}

/// The anti-replay window of one session (RFC 6479-style, as wireguard-go's replay filter): the
/// last 8,192 counters in an inline bitmap. `check` does not change it; `accept` after authentication.
public struct ReplayFilter: Sendable {
    public static var windowSize: UInt64 { SlidingBitmap<128>.size }
    private var seen = SlidingBitmap<128>()

    public init() {}

    public func check(_ counter: UInt64) -> Bool {
        guard counter < TransportLimits.rejectAfterMessages else { return false }
        switch seen.position(of: counter) {
        case .ahead, .unmarked: return true
        case .marked, .tooOld: return false
        }
    }

    public mutating func accept(_ counter: UInt64) { seen.mark(counter) }
}
