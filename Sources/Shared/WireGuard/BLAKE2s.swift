/// BLAKE2s (RFC 7693): WireGuard's hash, and its MAC when keyed. Neither swift-crypto nor BoringSSL
/// has it. The state and the block live inline, so hashing allocates only the digest it returns;
/// handshakes use it, packets do not.
public struct BLAKE2s: Sendable {
    static let iv: InlineArray<8, UInt32> = [
        0x6A09_E667, 0xBB67_AE85, 0x3C6E_F372, 0xA54F_F53A, 0x510E_527F, 0x9B05_688C, 0x1F83_D9AB, 0x5BE0_CD19
    ]
    /// The message schedule, ten rounds of sixteen word indices.
    static let sigma: InlineArray<160, UInt8> = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
        11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
        7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
        9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
        2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
        12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
        13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
        6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
        10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0
    ]
    public static let blockLength = 64

    private var h: InlineArray<8, UInt32>
    private var block = InlineArray<64, UInt8>(repeating: 0)
    private var filled = 0
    private var counter: UInt64 = 0
    public let outputLength: Int

    /// Unkeyed BLAKE2s with a digest of `outputLength` bytes (1...32; WireGuard uses 32 and 16).
    public init(outputLength: Int = 32) {
        precondition((1...32).contains(outputLength), "BLAKE2s digest length \(outputLength)")
        self.outputLength = outputLength
        h = Self.iv
        h[0] ^= 0x0101_0000 ^ UInt32(outputLength)
    }

    /// Keyed BLAKE2s (the MAC of RFC 7693 §2.5): `key` of 1...32 bytes, processed as a first block.
    public init(outputLength: Int = 32, key: Span<UInt8>) {
        precondition((1...32).contains(outputLength), "BLAKE2s digest length \(outputLength)")
        precondition((1...32).contains(key.count), "BLAKE2s key length \(key.count)")
        self.outputLength = outputLength
        h = Self.iv
        h[0] ^= 0x0101_0000 ^ UInt32(key.count) << 8 ^ UInt32(outputLength)
        for index in 0..<key.count { block[index] = key[index] }
        filled = 64
    }

    public init(outputLength: Int = 32, key: [UInt8]) { self.init(outputLength: outputLength, key: key.span) }

    public mutating func update(_ bytes: Span<UInt8>) {
        var index = 0
        while index < bytes.count {
            // The last block is compressed differently, so a full block waits for more input.
            if filled == 64 {
                counter &+= 64
                compress(final: false)
                filled = 0
            }
            let run = min(64 - filled, bytes.count - index)
            for offset in 0..<run { block[filled + offset] = bytes[index + offset] }
            filled += run
            index += run
        }
    }

    public mutating func update(_ bytes: [UInt8]) { update(bytes.span) }

    /// The digest; the state is wiped (it may hold a key).
    public consuming func finalize() -> [UInt8] {
        counter &+= UInt64(filled)
        for index in filled..<64 { block[index] = 0 }
        compress(final: true)
        var digest = [UInt8](repeating: 0, count: outputLength)
        for index in 0..<outputLength { digest[index] = UInt8(truncatingIfNeeded: h[index / 4] >> (8 * UInt32(index % 4))) }
        for index in 0..<8 { h[index] = 0 }
        for index in 0..<64 { block[index] = 0 }
        return digest
    }

    private mutating func compress(final: Bool) {
        var m = InlineArray<16, UInt32>(repeating: 0)
        for word in 0..<16 {
            let base = word * 4
            m[word] =
                UInt32(block[base]) | UInt32(block[base + 1]) << 8 | UInt32(block[base + 2]) << 16
                | UInt32(block[base + 3]) << 24
        }
        var v = InlineArray<16, UInt32>(repeating: 0)
        for index in 0..<8 {
            v[index] = h[index]
            v[index + 8] = Self.iv[index]
        }
        v[12] ^= UInt32(truncatingIfNeeded: counter)
        v[13] ^= UInt32(truncatingIfNeeded: counter >> 32)
        if final { v[14] = ~v[14] }
        for round in 0..<10 {
            let s = round * 16
            func mix(_ a: Int, _ b: Int, _ c: Int, _ d: Int, _ x: Int, _ y: Int) {
                v[a] = v[a] &+ v[b] &+ m[Int(Self.sigma[s + x])]
                v[d] = (v[d] ^ v[a]).rotatedRight(16)
                v[c] = v[c] &+ v[d]
                v[b] = (v[b] ^ v[c]).rotatedRight(12)
                v[a] = v[a] &+ v[b] &+ m[Int(Self.sigma[s + y])]
                v[d] = (v[d] ^ v[a]).rotatedRight(8)
                v[c] = v[c] &+ v[d]
                v[b] = (v[b] ^ v[c]).rotatedRight(7)
            }
            mix(0, 4, 8, 12, 0, 1)
            mix(1, 5, 9, 13, 2, 3)
            mix(2, 6, 10, 14, 4, 5)
            mix(3, 7, 11, 15, 6, 7)
            mix(0, 5, 10, 15, 8, 9)
            mix(1, 6, 11, 12, 10, 11)
            mix(2, 7, 8, 13, 12, 13)
            mix(3, 4, 9, 14, 14, 15)
        }
        for index in 0..<8 { h[index] ^= v[index] ^ v[index + 8] }
    }

    /// HASH of the concatenation of `parts`, 32 bytes (WireGuard's HASH).
    public static func hash(_ parts: [UInt8]..., outputLength: Int = 32) -> [UInt8] {
        var hasher = BLAKE2s(outputLength: outputLength)
        for part in parts { hasher.update(part.span) }
        return hasher.finalize()
    }

    /// Keyed BLAKE2s of `data` with a 16-byte digest (WireGuard's MAC, for MAC1, MAC2 and cookies).
    public static func mac(key: [UInt8], _ data: Span<UInt8>, outputLength: Int = 16) -> [UInt8] {
        var hasher = BLAKE2s(outputLength: outputLength, key: key.span)
        hasher.update(data)
        return hasher.finalize()
    }
}

extension UInt32 {
    @inline(__always) fileprivate func rotatedRight(_ count: UInt32) -> UInt32 { self >> count | self << (32 - count) }
}

/// HMAC (RFC 2104) over BLAKE2s-256, block 64 bytes: WireGuard's HMAC, the core of its KDF.
public enum HMACBLAKE2s {
    public static func authenticate(key: [UInt8], _ parts: [UInt8]...) -> [UInt8] {
        var padded = InlineArray<64, UInt8>(repeating: 0)
        if key.count > BLAKE2s.blockLength {
            let digest = BLAKE2s.hash(key)
            for index in 0..<digest.count { padded[index] = digest[index] }
        } else {
            for index in 0..<key.count { padded[index] = key[index] }
        }
        var pad = InlineArray<64, UInt8>(repeating: 0)
        for index in 0..<64 { pad[index] = padded[index] ^ 0x36 }
        var inner = BLAKE2s()
        inner.update(pad.span)
        for part in parts { inner.update(part.span) }
        let innerDigest = inner.finalize()
        for index in 0..<64 { pad[index] = padded[index] ^ 0x5C }
        var outer = BLAKE2s()
        outer.update(pad.span)
        outer.update(innerDigest.span)
        for index in 0..<64 {
            pad[index] = 0
            padded[index] = 0
        }
        return outer.finalize()
    }
}

/// WireGuard's KDF_n (HKDF with HMAC-BLAKE2s, §5.4 of the paper): n 32-byte outputs from a chaining
/// key and input key material.
public enum WireGuardKDF {
    public static func kdf1(key: [UInt8], input: [UInt8]) -> [UInt8] {
        var secret = HMACBLAKE2s.authenticate(key: key, input)
        defer { wipe(&secret) }
        return HMACBLAKE2s.authenticate(key: secret, [1])
    }

    public static func kdf2(key: [UInt8], input: [UInt8]) -> ([UInt8], [UInt8]) {
        var secret = HMACBLAKE2s.authenticate(key: key, input)
        defer { wipe(&secret) }
        let first = HMACBLAKE2s.authenticate(key: secret, [1])
        return (first, HMACBLAKE2s.authenticate(key: secret, first, [2]))
    }

    public static func kdf3(key: [UInt8], input: [UInt8]) -> ([UInt8], [UInt8], [UInt8]) {
        var secret = HMACBLAKE2s.authenticate(key: key, input)
        defer { wipe(&secret) }
        let first = HMACBLAKE2s.authenticate(key: secret, [1])
        let second = HMACBLAKE2s.authenticate(key: secret, first, [2])
        return (first, second, HMACBLAKE2s.authenticate(key: secret, second, [3]))
    }
}

/// Equal lengths and equal bytes, in time that depends on the length only (for MACs and tags: an
/// early exit would tell an attacker how many leading bytes were right).
public func constantTimeEqual(_ a: Span<UInt8>, _ b: Span<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in 0..<a.count { difference |= a[index] ^ b[index] }
    return difference == 0
}

/// Overwrites a secret in place (its buffer, not a copy), so it does not linger in freed memory.
@inline(never)
public func wipe(_ bytes: inout [UInt8]) {
    for index in bytes.indices { bytes[index] = 0 }
}
