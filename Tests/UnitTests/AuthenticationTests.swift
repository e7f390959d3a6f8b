import Crypto
import KernelIO
import Testing

@testable import TestSupport
@testable import WireFormat

@Suite("Authenticated framing")
struct AuthenticationTests {
    static let key = TunnelKey(base64: "4bSnGPpLdMwaTD4gZ/K7VF3eNTGhwavHxA7aWTVMwK8=")!
    // Fixed, so that its key id is known to differ from `key`'s (random keys clash 1 time in 65,536).
    static let otherKey = TunnelKey(base64: "q0Zs6N3lQpUjV2mYb1n8cT5rWx4eHf7gKd9aLs2uYiA=")!
    let packet = PacketBuilder.probePacket(source: 0xC613_0001, destination: 0xC612_0202, destinationPort: 8080, sequence: 7, streamID: 1)

    /// Seals `packet` in a buffer with room around it; returns the datagram.
    func seal(_ sealer: inout AuthenticatedFraming.Sealer, _ packet: [UInt8]) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 20) + packet + [UInt8](repeating: 0, count: 16)
        var span = buffer.mutableSpan
        let range = try #require(sealer.seal(&span, packet: 20..<(20 + packet.count), session: PeerSession()))
        return Array(buffer[range])
    }

    func open(_ opener: inout AuthenticatedFraming.Opener, _ datagram: [UInt8]) -> Result<[UInt8], DropReason> {
        var buffer = datagram
        let count = buffer.count
        var span = buffer.mutableSpan
        let result = opener.open(&span, datagram: 0..<count)
        return result.map { Array(buffer[$0.0]) }
    }

    /// The index of the key `datagram` opened with, or nil.
    func keyIndex(_ opener: inout AuthenticatedFraming.Opener, _ datagram: [UInt8]) -> Int? {
        var buffer = datagram
        let count = buffer.count
        var span = buffer.mutableSpan
        return try? opener.open(&span, datagram: 0..<count).get().1
    }

    @Test func keysParseAndGenerate() {
        let generated = TunnelKey.generate()
        #expect(generated.count == 44)
        #expect(TunnelKey(base64: generated) != nil)
        #expect(TunnelKey(base64: generated + "\n") != nil)
        #expect(TunnelKey(base64: "c2hvcnQ=") == nil)  // 5 bytes
        #expect(TunnelKey(base64: "not base64 at all!") == nil)
    }

    /// Authenticated only, and encrypted with each cipher.
    static let modes: [(encrypt: Bool, cipher: AEADCipher)] = [(false, .chacha20Poly1305), (true, .chacha20Poly1305), (true, .aes256GCM)]

    @Test(arguments: modes)
    func sealedPacketsOpenToTheSameBytes(mode: (encrypt: Bool, cipher: AEADCipher)) throws {
        let encrypt = mode.encrypt
        let framing = AuthenticatedFraming(key: Self.key, encrypt: encrypt, cipher: mode.cipher)
        var sealer = framing.concreteSealer()
        var opener = AuthenticatedFraming(key: Self.key, encrypt: false).concreteOpener()  // opens every type
        let datagram = try seal(&sealer, packet)
        #expect(datagram.count == packet.count + framing.overhead)
        #expect(datagram[0] == (encrypt ? (mode.cipher == .aes256GCM ? 0x13 : 0x12) : 0x11))
        let body = Array(datagram[20..<(datagram.count - 16)])
        #expect((body == packet) == !encrypt, "encrypted payloads must not be readable; authenticated ones stay readable")
        #expect(try open(&opener, datagram).get() == packet)
        #expect(sealer.counter == 1)
    }

    /// The in-place cipher (BoringSSL's EVP_AEAD through CAEAD) must produce exactly what swift-crypto's
    /// ChaChaPoly does with the sender's derived key and the counter nonce, and open what it seals.
    @Test("in-place sealing matches swift-crypto's ChaChaPoly byte for byte, both ways", arguments: [false, true])
    func matchesSwiftCrypto(encrypt: Bool) throws {
        let framing = AuthenticatedFraming(key: Self.key, encrypt: encrypt)
        var sealer = AuthenticatedFraming.Sealer(key: Self.key, encrypt: encrypt, sender: 0x0123_4567_89AB_CDEF)
        var opener = framing.concreteOpener()
        let derived = Self.key.derived(forSender: sealer.sender, cipher: .chacha20Poly1305)
        var generator = SeededGenerator()
        for length in [1, 15, 16, 17, 63, 64, 65, 255, 1400, 1500, 9000] {
            let packet = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let counter = sealer.counter
            let nonce = try ChaChaPoly.Nonce(data: [0, 0, 0, 0] + withUnsafeBytes(of: counter.bigEndian) { Array($0) })
            let datagram = try seal(&sealer, packet)
            let header = Array(datagram[0..<20]), body = Array(datagram[20..<(datagram.count - 16)]), tag = Array(datagram.suffix(16))

            // What we sealed, swift-crypto opens.
            let box = try ChaChaPoly.SealedBox(nonce: nonce, ciphertext: encrypt ? body : [], tag: tag)
            let opened = try ChaChaPoly.open(box, using: derived, authenticating: encrypt ? header : header + body)
            #expect(encrypt ? Array(opened) == packet : opened.isEmpty && body == packet, "seed \(TestSeed.value), length \(length)")

            // What swift-crypto seals with the next counter, we open.
            let next = sealer.counter
            var nextHeader = header
            nextHeader.replaceSubrange(12..<20, with: withUnsafeBytes(of: next.bigEndian) { Array($0) })
            let nextNonce = try ChaChaPoly.Nonce(data: [0, 0, 0, 0] + withUnsafeBytes(of: next.bigEndian) { Array($0) })
            let theirs = try ChaChaPoly.seal(
                encrypt ? packet : [], using: derived, nonce: nextNonce,
                authenticating: encrypt ? nextHeader : nextHeader + packet)
            let theirDatagram = nextHeader + (encrypt ? Array(theirs.ciphertext) : packet) + Array(theirs.tag)
            #expect(try open(&opener, datagram).get() == packet, "length \(length)")
            #expect(try open(&opener, theirDatagram).get() == packet, "length \(length)")
            _ = try seal(&sealer, [0])  // keep the sealer's counter ahead of the one used above
        }
    }

    /// The same for AES-256-GCM against swift-crypto's AES.GCM, with the key derived for that cipher.
    @Test("in-place AES-256-GCM matches swift-crypto's AES.GCM byte for byte, both ways")
    func aesMatchesSwiftCrypto() throws {
        let framing = AuthenticatedFraming(key: Self.key, encrypt: true, cipher: .aes256GCM)
        var sealer = AuthenticatedFraming.Sealer(key: Self.key, encrypt: true, cipher: .aes256GCM, sender: 0x0123_4567_89AB_CDEF)
        var opener = framing.concreteOpener()
        let derived = Self.key.derived(forSender: sealer.sender, cipher: .aes256GCM)
        #expect(derived != Self.key.derived(forSender: sealer.sender, cipher: .chacha20Poly1305), "one key per cipher")
        var generator = SeededGenerator()
        for length in [1, 15, 16, 17, 63, 64, 65, 255, 1400, 1500, 9000] {
            let packet = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let nonceBytes = { (counter: UInt64) in [UInt8](repeating: 0, count: 4) + withUnsafeBytes(of: counter.bigEndian) { Array($0) } }
            let nonce = try AES.GCM.Nonce(data: nonceBytes(sealer.counter))
            let datagram = try seal(&sealer, packet)
            #expect(datagram[0] == 0x13)
            let header = Array(datagram[0..<20]), body = Array(datagram[20..<(datagram.count - 16)]), tag = Array(datagram.suffix(16))
            let box = try AES.GCM.SealedBox(nonce: nonce, ciphertext: body, tag: tag)
            #expect(
                Array(try AES.GCM.open(box, using: derived, authenticating: header)) == packet, "seed \(TestSeed.value), length \(length)")

            let next = sealer.counter
            var nextHeader = header
            nextHeader.replaceSubrange(12..<20, with: withUnsafeBytes(of: next.bigEndian) { Array($0) })
            let theirs = try AES.GCM.seal(
                packet, using: derived, nonce: try AES.GCM.Nonce(data: nonceBytes(next)), authenticating: nextHeader)
            #expect(try open(&opener, datagram).get() == packet, "length \(length)")
            #expect(try open(&opener, nextHeader + Array(theirs.ciphertext) + Array(theirs.tag)).get() == packet, "length \(length)")
            _ = try seal(&sealer, [0])
        }
    }

    @Test("a sender keeps to one cipher: its id under the other is refused, and leaves its window alone")
    func senderCannotSwitchCipher() throws {
        var chacha = AuthenticatedFraming.Sealer(key: Self.key, encrypt: true, cipher: .chacha20Poly1305, sender: 42)
        var aes = AuthenticatedFraming.Sealer(key: Self.key, encrypt: true, cipher: .aes256GCM, sender: 42)
        var opener = AuthenticatedFraming(key: Self.key, encrypt: true).concreteOpener()
        #expect(try open(&opener, try seal(&chacha, packet)).get() == packet)
        #expect(throws: DropReason.badTag) { try open(&opener, try seal(&aes, packet)).get() }
        #expect(try open(&opener, try seal(&chacha, packet)).get() == packet)
        // A type byte changed in flight names the other cipher: the tag no longer verifies.
        var relabelled = try seal(&chacha, packet)
        relabelled[0] = 0x13
        var fresh = AuthenticatedFraming(key: Self.key, encrypt: true).concreteOpener()
        #expect(throws: DropReason.badTag) { try open(&fresh, relabelled).get() }
        #expect(fresh.knownSenders == 0)
    }

    @Test(arguments: modes)
    func everyBitFlipIsRejected(mode: (encrypt: Bool, cipher: AEADCipher)) throws {
        let encrypt = mode.encrypt
        let framing = AuthenticatedFraming(key: Self.key, encrypt: encrypt, cipher: mode.cipher)
        var sealer = framing.concreteSealer()
        let datagram = try seal(&sealer, packet)
        for bit in stride(from: 0, to: datagram.count * 8, by: 3) {
            var opener = framing.concreteOpener()
            var damaged = datagram
            damaged[bit / 8] ^= 1 << (bit % 8)
            let result = open(&opener, damaged)
            #expect(throws: DropReason.self, "bit \(bit) flipped was accepted") { try result.get() }
            #expect(opener.knownSenders == 0, "a failed packet must leave no state")
        }
    }

    @Test func replaysAreDroppedAndReorderingIsNot() throws {
        let framing = AuthenticatedFraming(key: Self.key, encrypt: true)
        var sealer = framing.concreteSealer()
        var opener = framing.concreteOpener()
        let datagrams = try (0..<5).map { _ in try seal(&sealer, packet) }
        #expect(throws: Never.self) { try open(&opener, datagrams[0]).get() }
        #expect(throws: DropReason.replayed) { try open(&opener, datagrams[0]).get() }
        #expect(throws: Never.self) { try open(&opener, datagrams[3]).get() }
        #expect(throws: Never.self) { try open(&opener, datagrams[1]).get() }  // late but new
        #expect(throws: DropReason.replayed) { try open(&opener, datagrams[3]).get() }
        // Another sender (a restarted client) has its own window.
        var restarted = framing.concreteSealer()
        #expect(throws: Never.self) { try open(&opener, try seal(&restarted, packet)).get() }
        #expect(opener.knownSenders == 2)
    }

    /// `datagram` with its key id replaced by `key`'s: a forger's datagram claiming a key it lacks.
    func claiming(_ key: TunnelKey, _ datagram: [UInt8]) -> [UInt8] {
        var forged = datagram
        forged[2] = UInt8(key.id >> 8)
        forged[3] = UInt8(key.id & 0xff)
        return forged
    }

    @Test func wrongKeysRawPacketsAndScrapsAreRefused() throws {
        #expect(Self.key.id != Self.otherKey.id)
        var stranger = AuthenticatedFraming(key: Self.otherKey, encrypt: true).concreteSealer()
        var opener = AuthenticatedFraming(key: Self.key, encrypt: true).concreteOpener()
        #expect(throws: DropReason.unknownKey) { try open(&opener, try seal(&stranger, packet)).get() }
        #expect(throws: DropReason.badTag) { try open(&opener, claiming(Self.key, try seal(&stranger, packet))).get() }
        #expect(throws: DropReason.badFraming) { try open(&opener, packet).get() }  // a raw IPv4 packet
        #expect(throws: DropReason.badFraming) { try open(&opener, [0x12, 0, 0, 0]).get() }
        #expect(throws: DropReason.truncated) { try open(&opener, []).get() }
        #expect(opener.knownSenders == 0)
    }

    /// A relay holding one key per client: each datagram is opened with the key its id names, and
    /// the opener says which, so the relay can hold it to that client's inner addresses.
    @Test("an opener with several keys opens each client's datagrams with that client's key and says which")
    func severalKeysAreTellApart() throws {
        let alice = Self.key, bob = Self.otherKey
        let third = try #require(TunnelKey(base64: "WBtbZczXQonyHVUGzMkgWqP1q4ejJ0j++tEK/KHl4Fw="))
        #expect(Set([alice.id, bob.id, third.id]).count == 3)
        var opener = AuthenticatedFraming(keys: [alice, bob], encrypt: true).concreteOpener()
        var aliceSealer = AuthenticatedFraming(key: alice, encrypt: true).concreteSealer()
        var bobSealer = AuthenticatedFraming(key: bob, encrypt: true).concreteSealer()
        let fromAlice = try seal(&aliceSealer, packet)
        #expect(fromAlice[1] == 0 && UInt16(fromAlice[2]) << 8 | UInt16(fromAlice[3]) == alice.id, "the key id travels in bytes 2-3")
        #expect(keyIndex(&opener, fromAlice) == 0)
        #expect(keyIndex(&opener, try seal(&bobSealer, packet)) == 1)
        // A key the opener does not hold is refused by its id, before any key is derived.
        var stranger = AuthenticatedFraming(key: third, encrypt: true).concreteSealer()
        #expect(throws: DropReason.unknownKey) { try open(&opener, try seal(&stranger, packet)).get() }
        // Bob cannot pass his datagrams off as Alice's: her id with his tag fails, and so does her
        // known sender id under his key id.
        #expect(throws: DropReason.badTag) { try open(&opener, claiming(alice, try seal(&bobSealer, packet))).get() }
        var bobAsAlicesSender = AuthenticatedFraming.Sealer(key: bob, encrypt: true, sender: aliceSealer.sender)
        #expect(throws: DropReason.badTag) { try open(&opener, try seal(&bobAsAlicesSender, packet)).get() }
        #expect(opener.knownSenders == 2)
        #expect(AuthenticatedFraming.clashingKeys([alice, bob, alice]).map { [$0.0, $0.1] } == [0, 2])
        #expect(AuthenticatedFraming.clashingKeys([alice, bob, third]) == nil)
    }

    @Test("key setups for unknown senders are held to the budget; known senders never wait for it")
    func newSendersAreBudgeted() throws {
        let framing = AuthenticatedFraming(key: Self.key, encrypt: true)
        let now = Locked<UInt64>(1_000_000_000)
        var opener = AuthenticatedFraming.Opener(
            key: Self.key, newSenders: TokenBucket(rate: 10, burst: 3),
            clock: { now.withLock { $0 } })
        var senders = (0..<3).map { _ in framing.concreteSealer() }
        for index in senders.indices { #expect(throws: Never.self) { try open(&opener, try seal(&senders[index], packet)).get() } }
        // Budget spent: made-up sender ids under a wrong key, and a genuine newcomer, are both refused
        // before any key is derived; the three known senders go on as before.
        var forger = AuthenticatedFraming(key: Self.otherKey, encrypt: true).concreteSealer()
        var newcomer = framing.concreteSealer()
        #expect(throws: DropReason.senderLimit) { try open(&opener, claiming(Self.key, try seal(&forger, packet))).get() }
        #expect(throws: DropReason.senderLimit) { try open(&opener, try seal(&newcomer, packet)).get() }
        for index in senders.indices { #expect(throws: Never.self) { try open(&opener, try seal(&senders[index], packet)).get() } }
        // 100 ms later one token has come back (10 per second): the forger's next datagram spends it on
        // a key setup that fails its tag, and is remembered nowhere.
        now.withLock { $0 += 100_000_000 }
        #expect(throws: DropReason.badTag) { try open(&opener, claiming(Self.key, try seal(&forger, packet))).get() }
        #expect(throws: DropReason.senderLimit) { try open(&opener, try seal(&newcomer, packet)).get() }
        now.withLock { $0 += 100_000_000 }
        #expect(throws: Never.self) { try open(&opener, try seal(&newcomer, packet)).get() }
        #expect(opener.knownSenders == 4)
    }

    @Test("a full sender table makes room for a newcomer by forgetting its oldest sender; the others keep their windows")
    func fullSenderTableEvictsTheOldest() throws {
        let maximum = AuthenticatedFraming.maximumSenders
        var opener = AuthenticatedFraming.Opener(key: Self.key, newSenders: TokenBucket(rate: 1, burst: UInt64(maximum + 10)))
        var sealers = (0..<(maximum + 1)).map {
            AuthenticatedFraming.Sealer(key: Self.key, encrypt: true, sender: UInt64($0) + 1)
        }
        var first: [UInt8] = []
        var second: [UInt8] = []
        for index in sealers.indices {
            let datagram = try seal(&sealers[index], packet)
            if index == 0 { first = datagram }
            if index == 1 { second = datagram }
            #expect(throws: Never.self) { try open(&opener, datagram).get() }
        }
        #expect(opener.knownSenders == maximum)
        // The first sender was forgotten for the newcomer: its replayed datagram looks new again. The
        // second is still known until then (its replay is refused).
        #expect(throws: DropReason.replayed) { try open(&opener, second).get() }
        #expect(throws: Never.self) { try open(&opener, first).get() }
        #expect(opener.knownSenders == maximum)
    }

    @Test("the token bucket spends its burst, refills at its rate, keeps fractions and caps at the burst")
    func tokenBucket() {
        let second: UInt64 = 1_000_000_000
        var bucket = TokenBucket(rate: 3, burst: 2)
        /// Takes at each time in turn; returns which takes got a token.
        func take(_ times: UInt64...) -> [Bool] { times.map { bucket.take(now: $0) } }
        #expect(take(5 * second, 5 * second, 5 * second) == [true, true, false])
        // A third of a second earns one token; a sixth and then another sixth add up to it.
        #expect(take(5 * second + second / 6) == [false])
        #expect(take(5 * second + 2 * second / 6 + 1, 5 * second + 2 * second / 6 + 2) == [true, false])
        // A long quiet spell refills to the burst, no more.
        #expect(take(500 * second, 500 * second, 500 * second) == [true, true, false])
        // Rate 0 never refills; a clock at its far end does not overflow.
        var fixed = TokenBucket(rate: 0, burst: 1)
        let fixedTakes = [fixed.take(now: 0), fixed.take(now: .max)]
        #expect(fixedTakes == [true, false])
        var fast = TokenBucket(rate: 1_000_000_000, burst: 1_000_000)
        let fastTakes = [fast.take(now: 0), fast.take(now: .max)]
        #expect(fastTakes == [true, true])
        #expect(fast.tokens == 999_999)
    }

    @Test func replayWindowSlides() {
        var window = ReplayWindow()
        #expect(window.check(0))
        window.accept(0)
        #expect(!window.check(0))
        window.accept(10_000)
        #expect(!window.check(10_000 - ReplayWindow.size), "older than the window")
        #expect(window.check(10_000 - ReplayWindow.size + 1))
        #expect(window.check(9_999))
        window.accept(9_999)
        #expect(!window.check(9_999))
        window.accept(10_001)
        #expect(window.check(10_000 - 5))
    }

    @Test func segmentsOfASuperPacketAreSealedBackToBack() throws {
        // What the fast path does: segment with the framing's headroom and overhead, seal each
        // segment in place, send the run with UDP GSO; the receiver opens each datagram.
        let framing = AuthenticatedFraming(key: Self.key, encrypt: true)
        var sealer = framing.concreteSealer()
        var opener = framing.concreteOpener()
        var tcp = [UInt8](repeating: 0, count: 20)
        tcp[12] = 0x50
        tcp[13] = TCPFlag.ack
        let superPacket = PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, transport: tcp + [UInt8](repeating: 0x5a, count: 5000))
        var header = VirtioNetHeader()
        header.gsoTypeRaw = VirtioNetHeader.GSOType.tcpv4.rawValue
        header.gsoSize = 1400
        header.checksumStart = 20
        header.checksumOffset = 16
        var output = [UInt8](repeating: 0, count: 16_384)
        var span = output.mutableSpan
        let layout = try GSOSegmenter.segment(
            superPacket.span, header: header, into: &span,
            headroom: framing.headroom, overhead: framing.overhead
        ).get()
        #expect(layout.stride == 20 + 20 + 1400 + 36)
        var end = 0
        for index in 0..<layout.count {
            let start = index * layout.stride + framing.headroom
            let sealed = try #require(sealer.seal(&span, packet: start..<(start + layout.length(of: index)), session: PeerSession()))
            #expect(sealed.lowerBound == index * layout.stride, "datagrams must lie back to back")
            end = sealed.upperBound
        }
        for index in 0..<layout.count {
            let datagram = Array(output[(index * layout.stride)..<min((index + 1) * layout.stride, end)])
            let inner = try open(&opener, datagram).get()
            #expect(try IPPacket.validate(inner.span).get().totalLength == inner.count)
        }
    }
}

extension AuthenticatedFraming {
    /// The sealer and opener as their own types, for the tests that look inside them.
    func concreteSealer() -> Sealer { makeSealer() as! Sealer }
    func concreteOpener() -> Opener { makeOpener() as! Opener }
}
