import CAEAD
import Crypto

/// ChaCha20-Poly1305 as the handshake uses it: each key once, nonce zero, through swift-crypto
/// (allocation per call is fine here: four per handshake).
enum HandshakeAEAD {
    static let tagLength = 16
    private static let zeroNonce = try! ChaChaPoly.Nonce(data: [UInt8](repeating: 0, count: 12))

    /// Ciphertext followed by the 16-byte tag.
    static func seal(key: [UInt8], _ plaintext: [UInt8], authenticating ad: [UInt8]) -> [UInt8] {
        // Cannot fail for a 32-byte key and a 12-byte nonce.
        let box = try! ChaChaPoly.seal(plaintext, using: SymmetricKey(data: key), nonce: zeroNonce, authenticating: ad)
        return Array(box.ciphertext) + Array(box.tag)
    }

    static func open(key: [UInt8], _ sealed: [UInt8], authenticating ad: [UInt8]) -> [UInt8]? {
        guard sealed.count >= tagLength,
            let box = try? ChaChaPoly.SealedBox(
                nonce: zeroNonce, ciphertext: sealed.dropLast(tagLength), tag: sealed.suffix(tagLength)),
            let plaintext = try? ChaChaPoly.open(box, using: SymmetricKey(data: key), authenticating: ad)
        else { return nil }
        return Array(plaintext)
    }
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) from BoringSSL, for cookie replies: 24-byte random
/// nonces. Set up once per key; immutable, so threads may share it.
public final class XChaCha20Poly1305Key: @unchecked Sendable {
    let cipher: OpaquePointer
    public static let nonceLength = 24
    public static let tagLength = 16

    public init(_ key: [UInt8]) {
        precondition(key.count == 32, "XChaCha20-Poly1305 key length \(key.count)")
        guard let made = key.withUnsafeBufferPointer({ caead_xchacha20_poly1305_new($0.baseAddress) }) else {
            fatalError("out of memory setting up an XChaCha20-Poly1305 key")
        }
        cipher = made
    }

    deinit { caead_free(cipher) }

    /// Ciphertext followed by the tag.
    public func seal(_ plaintext: [UInt8], nonce: [UInt8], authenticating ad: [UInt8]) -> [UInt8] {
        precondition(nonce.count == Self.nonceLength, "XChaCha20-Poly1305 nonce length \(nonce.count)")
        var output = plaintext + [UInt8](repeating: 0, count: Self.tagLength)
        let count = plaintext.count
        let ok = output.withUnsafeMutableBufferPointer { out in
            nonce.withUnsafeBufferPointer { nonceBytes in
                ad.withUnsafeBufferPointer { adBytes in
                    caead_xseal(
                        cipher, out.baseAddress, count, out.baseAddress! + count, nonceBytes.baseAddress, adBytes.baseAddress,
                        adBytes.count)
                }
            }
        }
        precondition(ok == 1, "XChaCha20-Poly1305 seal failed")
        return output
    }

    /// The plaintext, or nil when the tag does not match.
    public func open(_ sealed: [UInt8], nonce: [UInt8], authenticating ad: [UInt8]) -> [UInt8]? {
        guard nonce.count == Self.nonceLength, sealed.count >= Self.tagLength else { return nil }
        var data = Array(sealed.dropLast(Self.tagLength))
        let tag = Array(sealed.suffix(Self.tagLength))
        let count = data.count
        let ok = data.withUnsafeMutableBufferPointer { out in
            tag.withUnsafeBufferPointer { tagBytes in
                nonce.withUnsafeBufferPointer { nonceBytes in
                    ad.withUnsafeBufferPointer { adBytes in
                        caead_xopen(
                            cipher, out.baseAddress, count, tagBytes.baseAddress, nonceBytes.baseAddress, adBytes.baseAddress,
                            adBytes.count)
                    }
                }
            }
        }
        return ok == 1 ? data : nil
    }
}
