import Foundation
import TestSupport
import Testing

@testable import WireGuard

@Suite("WireGuard primitives")
struct WireGuardPrimitiveTests {
    @Test func blake2sOfABC() {
        // RFC 7693 Appendix B.
        #expect(BLAKE2s.hash(Array("abc".utf8)).hex == "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    }

    /// RFC 7693 Appendix E: the hash of every digest length's unkeyed and keyed hashes of generated inputs.
    @Test func blake2sSelfTest() {
        func sequence(_ count: Int, seed: UInt32) -> [UInt8] {
            var a = 0xDEAD_4BAD &* seed, b: UInt32 = 1
            return (0..<count).map { _ in
                let t = a &+ b
                a = b
                b = t
                return UInt8(t >> 24)
            }
        }
        var grand = BLAKE2s()
        for outputLength in [16, 20, 28, 32] {
            for inputLength in [0, 3, 64, 65, 255, 1024] {
                let input = sequence(inputLength, seed: UInt32(inputLength))
                var unkeyed = BLAKE2s(outputLength: outputLength)
                unkeyed.update(input)
                grand.update(unkeyed.finalize())
                var keyed = BLAKE2s(outputLength: outputLength, key: sequence(outputLength, seed: UInt32(outputLength)))
                keyed.update(input)
                grand.update(keyed.finalize())
            }
        }
        #expect(grand.finalize().hex == "6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe")
    }

    /// Seeded random inputs of many lengths (the block boundaries among them), keyed and not, fed in
    /// random pieces, against Python's hashlib.blake2s and hmac.
    @Test func blake2sMatchesPython() throws {
        var generator = SeededGenerator()
        print("seed \(TestSeed.value)")
        var lengths = [0, 1, 3, 63, 64, 65, 127, 128, 129, 1000]
        for _ in 0..<30 { lengths.append(Int.random(in: 0...700, using: &generator)) }
        struct Case {
            let mode: String, key: [UInt8], data: [UInt8], outputLength: Int
        }
        var cases: [Case] = []
        for length in lengths {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let keyLength = Int.random(in: 1...32, using: &generator)
            let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let outputLength = [16, 32, Int.random(in: 1...32, using: &generator)].randomElement(using: &generator)!
            cases.append(Case(mode: "hash", key: [], data: data, outputLength: outputLength))
            cases.append(Case(mode: "keyed", key: key, data: data, outputLength: outputLength))
            let hmacKey = (0..<Int.random(in: 0...80, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            cases.append(Case(mode: "hmac", key: hmacKey, data: data, outputLength: 32))
        }
        let script = """
            import sys, hashlib, hmac
            for line in sys.stdin:
                mode, key, data, n = line.split()
                key, data, n = bytes.fromhex(key[1:]), bytes.fromhex(data[1:]), int(n)
                if mode == "hash": print(hashlib.blake2s(data, digest_size=n).hexdigest())
                elif mode == "keyed": print(hashlib.blake2s(data, digest_size=n, key=key).hexdigest())
                else: print(hmac.new(key, data, hashlib.blake2s).hexdigest())
            """
        let input = cases.map { "\($0.mode) x\($0.key.hex) x\($0.data.hex) \($0.outputLength)\n" }.joined()
        let expected = try PythonReference.run(["-c", script], input: input).split(separator: "\n").map(String.init)
        try #require(expected.count == cases.count)
        for (index, test) in cases.enumerated() {
            let digest: [UInt8]
            switch test.mode {
            case "hash", "keyed":
                var hasher =
                    test.mode == "hash"
                    ? BLAKE2s(outputLength: test.outputLength) : BLAKE2s(outputLength: test.outputLength, key: test.key)
                // In random pieces, so that buffering across update calls is exercised.
                var offset = 0
                while offset < test.data.count {
                    let piece = Int.random(in: 1...100, using: &generator)
                    let end = min(test.data.count, offset + piece)
                    hasher.update(Array(test.data[offset..<end]))
                    offset = end
                }
                digest = hasher.finalize()
            default:
                digest = HMACBLAKE2s.authenticate(key: test.key, test.data)
            }
            #expect(
                digest.hex == expected[index], "\(test.mode) of \(test.data.count) bytes, key \(test.key.count), seed \(TestSeed.value)")
        }
    }

    @Test func kdfIsHMACChain() {
        let key = [UInt8](repeating: 7, count: 32), input = [UInt8](repeating: 9, count: 32)
        let secret = HMACBLAKE2s.authenticate(key: key, input)
        let first = HMACBLAKE2s.authenticate(key: secret, [1])
        let second = HMACBLAKE2s.authenticate(key: secret, first + [2])
        let third = HMACBLAKE2s.authenticate(key: secret, second + [3])
        #expect(WireGuardKDF.kdf1(key: key, input: input) == first)
        let (a, b) = WireGuardKDF.kdf2(key: key, input: input)
        #expect(a == first && b == second)
        let (c, d, e) = WireGuardKDF.kdf3(key: key, input: input)
        #expect(c == first && d == second && e == third)
    }

    @Test func constantTimeComparison() {
        let a: [UInt8] = [1, 2, 3, 4]
        #expect(Bool(constantTimeEqual(a.span, [1, 2, 3, 4].span)))
        #expect(!Bool(constantTimeEqual(a.span, [1, 2, 3, 5].span)))
        #expect(!Bool(constantTimeEqual(a.span, [0, 2, 3, 4].span)))
        #expect(!Bool(constantTimeEqual(a.span, [1, 2, 3].span)))
    }

    /// draft-irtf-cfrg-xchacha-03, A.3.1.
    @Test func xchachaTestVector() throws {
        let key = XChaCha20Poly1305Key([UInt8](hex: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"))
        let nonce = [UInt8](hex: "404142434445464748494a4b4c4d4e4f5051525354555657")
        let ad = [UInt8](hex: "50515253c0c1c2c3c4c5c6c7")
        let plaintext = Array(
            "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
                .utf8)
        let sealed = key.seal(plaintext, nonce: nonce, authenticating: ad)
        let expected =
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
            + "c0875924c1c7987947deafd8780acf49"
        #expect(sealed.hex == expected)
        #expect(key.open(sealed, nonce: nonce, authenticating: ad) == plaintext)
        var forged = sealed
        forged[5] ^= 1
        #expect(key.open(forged, nonce: nonce, authenticating: ad) == nil)
        #expect(key.open(sealed, nonce: nonce, authenticating: [1]) == nil)
    }

    /// RFC 7748 §6.1 through the key types the handshake uses.
    @Test func x25519() throws {
        let alice = try #require(PrivateKey(bytes: [UInt8](hex: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")))
        let bob = try #require(PrivateKey(bytes: [UInt8](hex: "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")))
        #expect(alice.publicKey.bytes.hex == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        #expect(bob.publicKey.bytes.hex == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        #expect(alice.sharedSecret(with: bob.publicKey)?.hex == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        #expect(bob.sharedSecret(with: alice.publicKey) == alice.sharedSecret(with: bob.publicKey))
        // A low-order point gives all zeros, which the handshake must refuse.
        #expect(alice.sharedSecret(with: PublicKey(bytes: [UInt8](repeating: 0, count: 32))!) == nil)
        #expect(PublicKey(base64: alice.publicKey.base64) == alice.publicKey)
        #expect(PublicKey(bytes: [1, 2, 3]) == nil)
    }
}
