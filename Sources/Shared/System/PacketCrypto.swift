import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The shared secret of an authenticated tunnel: 32 random bytes, kept base64-encoded in a key file.
public struct TunnelKey: Sendable {
    let key: SymmetricKey

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(String)
        case malformed(String)

        public var description: String {
            switch self {
            case let .unreadable(path): "cannot read key file \(path) (create one: udptun-relay --genkey > \(path); chmod 600 \(path))"
            case let .malformed(path): "key file \(path) must hold 32 random bytes in base64 (44 characters), as udptun-relay --genkey prints"
            }
        }
    }

    public init?(base64 text: some StringProtocol) {
        guard let data = Data(base64Encoded: String(text.filter { !$0.isWhitespace })), data.count == 32 else { return nil }
        key = SymmetricKey(data: data)
    }

    public init(contentsOf path: String) throws(Failure) {
        guard let text = TextFile.read(path) else { throw .unreadable(path) }
        guard let key = TunnelKey(base64: text) else { throw .malformed(path) }
        self = key
    }

    /// A new random key, base64-encoded.
    public static func generate() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// The key one sender seals with: HKDF-SHA256 of the shared key and the sender's random id, so no
    /// two senders ever share a (key, nonce) pair even though all hold the same secret.
    func derived(forSender sender: UInt64) -> SymmetricKey {
        var info: [UInt8] = Array("udptun v1 sender".utf8)
        withUnsafeBytes(of: sender.bigEndian) { info.append(contentsOf: $0) }
        return HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: info, outputByteCount: 32)
    }
}

/// A sender's derived key, opaque above this layer.
public struct SenderKey: Sendable {
    let key: SymmetricKey

    public init(_ tunnelKey: TunnelKey, sender: UInt64) { key = tunnelKey.derived(forSender: sender) }
}

/// ChaCha20-Poly1305 over regions of a packet buffer, in place. The nonce is the 64-bit counter
/// (big-endian) behind four zero bytes; each (sender key, counter) is used once.
enum PacketCrypto {
    static let tagLength = 16

    private static func nonce(_ counter: UInt64) -> ChaChaPoly.Nonce {
        // 16 defined bytes (no padding); the nonce is bytes 4..<16: four zeros, then the counter.
        var bytes: (UInt64, UInt64) = (0, counter.bigEndian)
        return withUnsafeBytes(of: &bytes) { raw in
            try! ChaChaPoly.Nonce(data: UnsafeRawBufferPointer(rebasing: raw[4..<16]))
        }
    }

    /// Seals `payload` (encrypting it when `encrypt`, else authenticating it with the header) and
    /// writes the tag at `tagOffset`. The header must directly precede the payload.
    static func seal(_ buffer: inout MutableSpan<UInt8>, header: Range<Int>, payload: Range<Int>, tagOffset: Int,
                     encrypt: Bool, key: SenderKey, counter: UInt64) -> Bool {
        precondition(header.upperBound == payload.lowerBound && tagOffset + tagLength <= buffer.count)
        return buffer.withUnsafeMutableBytes { raw -> Bool in
            let nonce = nonce(counter)
            do {
                if encrypt {
                    let box = try ChaChaPoly.seal(UnsafeRawBufferPointer(rebasing: raw[payload]), using: key.key, nonce: nonce,
                                                  authenticating: UnsafeRawBufferPointer(rebasing: raw[header]))
                    box.ciphertext.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: raw[payload]))
                    box.tag.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: raw[tagOffset..<(tagOffset + tagLength)]))
                } else {
                    let box = try ChaChaPoly.seal(UnsafeRawBufferPointer(start: nil, count: 0), using: key.key, nonce: nonce,
                                                  authenticating: UnsafeRawBufferPointer(rebasing: raw[header.lowerBound..<payload.upperBound]))
                    box.tag.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: raw[tagOffset..<(tagOffset + tagLength)]))
                }
                return true
            } catch {
                return false
            }
        }
    }

    /// Verifies (and decrypts in place, when `encrypted`) what `seal` produced. False on any mismatch.
    static func open(_ buffer: inout MutableSpan<UInt8>, header: Range<Int>, payload: Range<Int>, tagOffset: Int,
                     encrypted: Bool, key: SenderKey, counter: UInt64) -> Bool {
        guard header.upperBound == payload.lowerBound, tagOffset + tagLength <= buffer.count else { return false }
        return buffer.withUnsafeMutableBytes { raw -> Bool in
            let tag = UnsafeRawBufferPointer(rebasing: raw[tagOffset..<(tagOffset + tagLength)])
            do {
                if encrypted {
                    let box = try ChaChaPoly.SealedBox(nonce: nonce(counter), ciphertext: UnsafeRawBufferPointer(rebasing: raw[payload]), tag: tag)
                    let plaintext = try ChaChaPoly.open(box, using: key.key, authenticating: UnsafeRawBufferPointer(rebasing: raw[header]))
                    plaintext.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: raw[payload]))
                } else {
                    let box = try ChaChaPoly.SealedBox(nonce: nonce(counter), ciphertext: UnsafeRawBufferPointer(start: nil, count: 0), tag: tag)
                    _ = try ChaChaPoly.open(box, using: key.key,
                                            authenticating: UnsafeRawBufferPointer(rebasing: raw[header.lowerBound..<payload.upperBound]))
                }
                return true
            } catch {
                return false
            }
        }
    }
}
