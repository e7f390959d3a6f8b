import Crypto
import WireFormat

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A Curve25519 public key: 32 bytes, base64 in WireGuard's configuration files.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        self.bytes = Array(bytes)
    }

    public init?(base64 text: some StringProtocol) {
        guard let bytes = keyBytes(base64: text) else { return nil }
        self.init(bytes: bytes)
    }

    public var base64: String { Data(bytes).base64EncodedString() }
    public var description: String { base64 }
}

/// A Curve25519 private key (swift-crypto keeps the secret and wipes it when freed).
public struct PrivateKey: Sendable {
    let key: Curve25519.KeyAgreement.PrivateKey
    public let publicKey: PublicKey

    /// A new random key.
    public init() { self.init(key: Curve25519.KeyAgreement.PrivateKey()) }

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32, let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Array(bytes)) else {
            return nil
        }
        self.init(key: key)
    }

    public init?(base64 text: some StringProtocol) {
        guard let bytes = keyBytes(base64: text) else { return nil }
        self.init(bytes: bytes)
    }

    private init(key: Curve25519.KeyAgreement.PrivateKey) {
        self.key = key
        publicKey = PublicKey(bytes: Array(key.publicKey.rawRepresentation))!
    }

    /// The raw key, for writing a configuration file.
    public var bytes: [UInt8] { Array(key.rawRepresentation) }

    /// X25519 with `peer`; nil when the result is all zeros (a low-order point: the paper says to refuse).
    func sharedSecret(with peer: PublicKey) -> [UInt8]? {
        guard let peerKey = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: peer.bytes),
            let secret = try? key.sharedSecretFromKeyAgreement(with: peerKey)
        else { return nil }
        let bytes = secret.withUnsafeBytes { Array($0) }
        return bytes.reduce(0, |) == 0 ? nil : bytes
    }
}

/// The optional symmetric key mixed into the handshake (psk2); all zeros when none is configured.
public struct PresharedKey: Sendable {
    public let bytes: [UInt8]
    public static let none = PresharedKey(uncheckedBytes: [UInt8](repeating: 0, count: 32))

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        self.bytes = Array(bytes)
    }

    public init?(base64 text: some StringProtocol) {
        guard let bytes = keyBytes(base64: text) else { return nil }
        self.init(bytes: bytes)
    }

    private init(uncheckedBytes: [UInt8]) { bytes = uncheckedBytes }
}
