import CAEAD
import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The 32 bytes of a key written in base64 (whitespace ignored), as key files and WireGuard's
/// configuration hold them; nil when the text is not base64 of exactly 32 bytes.
public func keyBytes(base64 text: some StringProtocol) -> [UInt8]? {
    guard let data = Data(base64Encoded: String(text.filter { !$0.isWhitespace })), data.count == 32 else { return nil }
    return Array(data)
}

/// The shared secret of an authenticated tunnel: 32 random bytes, kept base64-encoded in a key file.
public struct TunnelKey: Sendable {
    let key: SymmetricKey
    /// Names the key on the wire (bytes 2–3 of the header), so a relay holding several keys picks the
    /// right one without trying each: HKDF-SHA256 of the key, so it tells nothing about the key.
    public let id: UInt16

    public init?(base64 text: some StringProtocol) {
        guard let bytes = keyBytes(base64: text) else { return nil }
        key = SymmetricKey(data: bytes)
        id = HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Array("udptun v1 key id".utf8), outputByteCount: 2)
            .withUnsafeBytes { UInt16($0[0]) << 8 | UInt16($0[1]) }
    }

    /// A new random key, base64-encoded.
    public static func generate() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// The key one sender seals with: HKDF-SHA256 of the shared key and the sender's random id, so no
    /// two senders ever share a (key, nonce) pair even though all hold the same secret. Each cipher
    /// has its own derivation, so no key is ever used with two algorithms.
    func derived(forSender sender: UInt64, cipher: AEADCipher) -> SymmetricKey {
        var info: [UInt8] = Array(cipher.derivationLabel.utf8)
        withUnsafeBytes(of: sender.bigEndian) { info.append(contentsOf: $0) }
        return HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: info, outputByteCount: 32)
    }
}

/// The AEADs an authenticated tunnel can encrypt with. Both take a 32-byte key and a 96-bit nonce
/// and make a 16-byte tag. ChaCha20-Poly1305 is fast everywhere; AES-256-GCM is about three times
/// faster where the CPU has AES and carry-less multiply instructions (docs/BENCHMARKS.md) and much
/// slower where it has none.
public enum AEADCipher: String, CaseIterable, Sendable {
    case chacha20Poly1305 = "chacha20-poly1305"
    case aes256GCM = "aes-256-gcm"

    /// HKDF info for a sender's key. ChaCha20-Poly1305's is the one udptun has always used.
    var derivationLabel: String {
        switch self {
        case .chacha20Poly1305: "udptun v1 sender"
        case .aes256GCM: "udptun v1 aes-256-gcm sender"
        }
    }
}

/// A sender's derived key with its cipher state set up once, opaque above this layer. Immutable
/// after init (BoringSSL seals and opens through a const context), so workers may share it.
public final class SenderKey: @unchecked Sendable {
    fileprivate let cipher: OpaquePointer
    public let algorithm: AEADCipher

    public init(_ tunnelKey: TunnelKey, sender: UInt64, cipher algorithm: AEADCipher = .chacha20Poly1305) {
        let derived = tunnelKey.derived(forSender: sender, cipher: algorithm)
        let made = derived.withUnsafeBytes { bytes in
            let key = bytes.bindMemory(to: UInt8.self).baseAddress
            switch algorithm {
            case .chacha20Poly1305: return caead_chacha20_poly1305_new(key)
            case .aes256GCM: return caead_aes_256_gcm_new(key)
            }
        }
        guard let made else { fatalError("out of memory setting up a \(algorithm.rawValue) key") }
        cipher = made
        self.algorithm = algorithm
    }

    deinit { caead_free(cipher) }
}

/// An AEAD (the sender key's) over regions of a packet buffer, in place and without allocating. The
/// nonce is the 64-bit counter (big-endian) behind four zero bytes; each (sender key, counter) is
/// used once.
enum PacketCrypto {
    static let tagLength = 16

    /// Seals `payload` (encrypting it when `encrypt`, else authenticating it with the header) and
    /// writes the tag at `tagOffset`. The header must directly precede the payload.
    static func seal(
        _ buffer: inout MutableSpan<UInt8>, header: Range<Int>, payload: Range<Int>, tagOffset: Int,
        encrypt: Bool, key: SenderKey, counter: UInt64
    ) -> Bool {
        precondition(header.upperBound == payload.lowerBound && tagOffset + tagLength <= buffer.count)
        return apply(&buffer, header: header, payload: payload, tagOffset: tagOffset, encrypted: encrypt, counter: counter) {
            caead_seal(key.cipher, $0, $1, $2, $3, $4, $5)
        }
    }

    /// Verifies (and decrypts in place, when `encrypted`) what `seal` produced. False on any mismatch.
    static func open(
        _ buffer: inout MutableSpan<UInt8>, header: Range<Int>, payload: Range<Int>, tagOffset: Int,
        encrypted: Bool, key: SenderKey, counter: UInt64
    ) -> Bool {
        guard header.upperBound == payload.lowerBound, tagOffset + tagLength <= buffer.count else { return false }
        return apply(&buffer, header: header, payload: payload, tagOffset: tagOffset, encrypted: encrypted, counter: counter) {
            caead_open(key.cipher, $0, $1, $2, $3, $4, $5)
        }
    }

    /// Hands `operation` (caead_seal or caead_open) the bytes to en- or decrypt in place, the tag, the
    /// nonce and the bytes only authenticated: the header alone when encrypted, else header and
    /// payload with nothing encrypted.
    private static func apply(
        _ buffer: inout MutableSpan<UInt8>, header: Range<Int>, payload: Range<Int>, tagOffset: Int, encrypted: Bool,
        counter: UInt64,
        _ operation: (UnsafeMutablePointer<UInt8>, Int, UnsafeMutablePointer<UInt8>, UnsafePointer<UInt8>, UnsafePointer<UInt8>, Int) ->
            Int32
    ) -> Bool {
        let associated = encrypted ? header : header.lowerBound..<payload.upperBound
        let ciphertext = encrypted ? payload : payload.upperBound..<payload.upperBound
        // 16 defined bytes (no padding); the nonce is bytes 4..<16: four zeros, then the counter.
        let nonce: (UInt64, UInt64) = (0, counter.bigEndian)
        return buffer.withUnsafeMutableBufferPointer { bytes in
            withUnsafeBytes(of: nonce) { nonceBytes in
                let base = bytes.baseAddress!
                return operation(
                    base + ciphertext.lowerBound, ciphertext.count, base + tagOffset,
                    nonceBytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + 4,
                    base + associated.lowerBound, associated.count) == 1
            }
        }
    }
}
