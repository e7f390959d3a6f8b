import TestSupport
import Testing
import WireFormat

@testable import WireGuard

/// Two peers with fixed keys, as the handshake tests use them.
struct WireGuardPair {
    static let initiatorKey = PrivateKey(base64: "EKf7tq8kE2cqPS5CJ6QwWa6gWlm2+ohhXyZ5e8QKPWo=")!
    static let responderKey = PrivateKey(base64: "CBeY8CI8kwBg9bXWJeD5LAJ43hXQwkCs87J8pZqkv1k=")!
    let initiator = StaticIdentity(privateKey: Self.initiatorKey)
    let responder = StaticIdentity(privateKey: Self.responderKey)
    var initiatorSide: Handshake
    var responderSide: Handshake

    init(presharedKey: PresharedKey = .none, responderPresharedKey: PresharedKey? = nil) {
        initiatorSide = Handshake(identity: initiator, peer: responder.publicKey, presharedKey: presharedKey)
        responderSide = Handshake(
            identity: responder, peer: initiator.publicKey, presharedKey: responderPresharedKey ?? presharedKey)
    }

    /// A whole handshake; the keys of both ends.
    mutating func complete(now: UInt64 = 1_000_000_000) throws -> (TransportKeys, TransportKeys) {
        let initiation = try initiatorSide.createInitiation(now: now)
        let opened = try responder.openInitiation(initiation.span)
        try responderSide.consumeInitiation(opened, now: now)
        let response = try responderSide.createResponse(now: now)
        try initiatorSide.consumeResponse(response.span, identity: initiator)
        let initiatorKeys = initiatorSide.transportKeys(), responderKeys = responderSide.transportKeys()
        return (try #require(initiatorKeys), try #require(responderKeys))
    }
}

/// Seals `payload` with `sender` and opens it with `receiver`; the plaintext (padding stripped to
/// the payload's length) or the error.
func roundTrip(_ payload: [UInt8], _ sender: inout TransportSender, _ receiver: inout TransportReceiver) -> Result<[UInt8], TransportError>
{
    var buffer =
        [UInt8](repeating: 0xEE, count: 16) + payload
        + [UInt8](repeating: 0xEE, count: TransportSender.trailerLength(forPacketLength: payload.count))
    let count = payload.count
    let opened: Result<(Range<Int>, UInt64), TransportError>
    do {
        var span = buffer.mutableSpan
        let datagram: Range<Int>
        do { datagram = try sender.seal(&span, packet: 16..<(16 + count)) } catch { return .failure(error) }
        opened = receiver.open(&span, datagram: datagram)
    }
    return opened.map { Array(buffer[$0.0].prefix(count)) }
}

@Suite("WireGuard handshake")
struct WireGuardHandshakeTests {
    @Test func handshakeGivesMatchingKeys() throws {
        for psk in [PresharedKey.none, PresharedKey(bytes: [UInt8](repeating: 0x42, count: 32))!] {
            var pair = WireGuardPair(presharedKey: psk)
            let (initiatorKeys, responderKeys) = try pair.complete()
            #expect(initiatorKeys.isInitiator && !responderKeys.isInitiator)
            #expect(initiatorKeys.localIndex == responderKeys.remoteIndex)
            #expect(initiatorKeys.remoteIndex == responderKeys.localIndex)
            var up = initiatorKeys.sender, upReceiver = responderKeys.receiver
            var down = responderKeys.sender, downReceiver = initiatorKeys.receiver
            #expect(roundTrip(Array(0..<77), &up, &upReceiver) == .success(Array(0..<77)))
            #expect(roundTrip(Array(5..<40), &down, &downReceiver) == .success(Array(5..<40)))
            // Each direction has its own key: what one side sends, it cannot open itself.
            var selfReceiver = TransportReceiver(key: initiatorKeys.receiving, localIndex: responderKeys.localIndex)
            var upAgain = initiatorKeys.sender
            #expect(roundTrip([1, 2, 3], &upAgain, &selfReceiver) == .failure(.decryptFailed))
            #expect(pair.initiatorSide.state == .idle && pair.responderSide.state == .idle)
        }
    }

    @Test func presharedKeyMismatchFailsTheResponse() throws {
        var pair = WireGuardPair(presharedKey: .none, responderPresharedKey: PresharedKey(bytes: [UInt8](repeating: 1, count: 32))!)
        let initiation = try pair.initiatorSide.createInitiation(now: 0)
        try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(initiation.span), now: 0)
        let response = try pair.responderSide.createResponse(now: 0)
        #expect(throws: HandshakeError.decryptFailed) { try pair.initiatorSide.consumeResponse(response.span, identity: pair.initiator) }
        let keys = pair.initiatorSide.transportKeys()
        #expect(keys == nil)
    }

    @Test func fixedInputsGiveFixedBytes() throws {
        let ephemeral = PrivateKey(base64: "YFzXfNqJ0Qq8uZrL2Z9XyRcvYkzcQm9C4pMxyf3sVlE=")!
        let stamp = TAI64N(unixNanoseconds: 1_700_000_000_123_456_789)
        var first = WireGuardPair(), second = WireGuardPair()
        let a = try first.initiatorSide.createInitiation(localIndex: 7, ephemeral: ephemeral, timestamp: stamp, now: 0)
        let b = try second.initiatorSide.createInitiation(localIndex: 7, ephemeral: ephemeral, timestamp: stamp, now: 0)
        #expect(a == b && a.count == MessageLength.initiation)
        let message = try InitiationMessage(parsing: a.span)
        #expect(message.senderIndex == 7 && message.ephemeral == ephemeral.publicKey.bytes)
        #expect(message.bytes == a)
        #expect(message.mac2 == [UInt8](repeating: 0, count: 16))
    }

    @Test func initiationRefusals() throws {
        var pair = WireGuardPair()
        let initiation = try pair.initiatorSide.createInitiation(now: 0)
        for length in [0, 4, 147, 149] {
            let cut = Array((initiation + [0]).prefix(length))
            #expect(throws: HandshakeError.wrongLength(expected: 148, actual: length)) { try pair.responder.openInitiation(cut.span) }
        }
        var wrongType = initiation
        wrongType[0] = 2
        #expect(throws: HandshakeError.wrongType) { try pair.responder.openInitiation(wrongType.span) }
        wrongType = initiation
        wrongType[3] = 1
        #expect(throws: HandshakeError.wrongType) { try pair.responder.openInitiation(wrongType.span) }
        // Any changed byte before MAC1 breaks it, and so does MAC1 itself.
        for index in [4, 20, 60, 100, 120] {
            var damaged = initiation
            damaged[index] ^= 0x10
            #expect(throws: HandshakeError.badMAC1) { try pair.responder.openInitiation(damaged.span) }
        }
        // With MAC1 made right again, the AEAD catches it.
        var cookies = CookieGenerator(peer: pair.responder.publicKey)
        var damaged = initiation
        damaged[50] ^= 1
        cookies.addMACs(to: &damaged, now: 0)
        #expect(throws: HandshakeError.decryptFailed) { try pair.responder.openInitiation(damaged.span) }
        damaged = initiation
        damaged[100] ^= 1
        cookies.addMACs(to: &damaged, now: 0)
        let opened = try pair.responder.openInitiation(damaged.span)
        #expect(opened.peer == pair.initiator.publicKey)
        #expect(throws: HandshakeError.decryptFailed) { try pair.responderSide.consumeInitiation(opened, now: 0) }
        // An initiation meant for another responder key fails MAC1 there.
        let stranger = StaticIdentity(privateKey: PrivateKey())
        #expect(throws: HandshakeError.badMAC1) { try stranger.openInitiation(initiation.span) }
        // A handshake for another peer refuses it.
        var other = Handshake(identity: pair.responder, peer: stranger.publicKey)
        #expect(throws: HandshakeError.unknownPeer) {
            try other.consumeInitiation(try pair.responder.openInitiation(initiation.span), now: 0)
        }
    }

    @Test func replayedAndOldTimestampsAreRefused() throws {
        var pair = WireGuardPair()
        let second: UInt64 = 1_000_000_000
        let early = try pair.initiatorSide.createInitiation(timestamp: TAI64N(unixNanoseconds: 1_700_000_000 * second), now: 0)
        let late = try pair.initiatorSide.createInitiation(timestamp: TAI64N(unixNanoseconds: 1_700_000_001 * second), now: 0)
        try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(late.span), now: second)
        // The same initiation again, much later: a replay.
        #expect(throws: HandshakeError.replayedTimestamp) {
            try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(late.span), now: 100 * second)
        }
        #expect(throws: HandshakeError.replayedTimestamp) {
            try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(early.span), now: 100 * second)
        }
        // A newer one within 50 ms of the last: the flood guard.
        let newer = try pair.initiatorSide.createInitiation(timestamp: TAI64N(unixNanoseconds: 1_700_000_002 * second), now: 0)
        #expect(throws: HandshakeError.initiationTooSoon) {
            try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(newer.span), now: second + 10_000_000)
        }
        try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(newer.span), now: second + 60_000_000)
        #expect(pair.responderSide.latestTimestamp == TAI64N(unixNanoseconds: 1_700_000_002 * second))
    }

    @Test func responseRefusals() throws {
        var pair = WireGuardPair()
        // A response when no initiation is outstanding.
        var other = WireGuardPair()
        let initiation = try other.initiatorSide.createInitiation(now: 0)
        try other.responderSide.consumeInitiation(try other.responder.openInitiation(initiation.span), now: 0)
        let response = try other.responderSide.createResponse(now: 0)
        #expect(throws: HandshakeError.unexpected) { try pair.initiatorSide.consumeResponse(response.span, identity: pair.initiator) }
        // A response to another initiation than ours (a different receiver index).
        _ = try pair.initiatorSide.createInitiation(localIndex: 99, now: 0)
        #expect(throws: HandshakeError.unexpected) { try pair.initiatorSide.consumeResponse(response.span, identity: pair.initiator) }
        #expect(throws: HandshakeError.wrongLength(expected: 92, actual: 91)) {
            try pair.initiatorSide.consumeResponse(Array(response.dropLast()).span, identity: pair.initiator)
        }
        var damaged = response
        damaged[30] ^= 1
        #expect(throws: HandshakeError.badMAC1) { try pair.initiatorSide.consumeResponse(damaged.span, identity: pair.initiator) }
        let early = pair.responderSide.transportKeys()
        #expect(early == nil)
        // Tampered with MAC1 made right: the tag fails.
        var fresh = WireGuardPair()
        let start = try fresh.initiatorSide.createInitiation(now: 0)
        try fresh.responderSide.consumeInitiation(try fresh.responder.openInitiation(start.span), now: 0)
        var answer = try fresh.responderSide.createResponse(now: 0)
        answer[50] ^= 1
        var cookies = CookieGenerator(peer: fresh.initiator.publicKey)
        cookies.addMACs(to: &answer, now: 0)
        #expect(throws: HandshakeError.decryptFailed) { try fresh.initiatorSide.consumeResponse(answer.span, identity: fresh.initiator) }
        #expect(throws: HandshakeError.unexpected) { _ = try fresh.initiatorSide.createResponse(now: 0) }
    }

    @Test func cookiesUnderLoad() throws {
        var pair = WireGuardPair()
        var checker = CookieChecker(identity: pair.responder)
        let source = CookieChecker.sourceBytes(SocketAddress(ip: .v4(0xC612_0101), port: 51820))
        let elsewhere = CookieChecker.sourceBytes(SocketAddress(ip: .v6(0x2001_0db8_0000_0000, 1), port: 51820))
        #expect(source.count == 6 && elsewhere.count == 18)
        let second: UInt64 = 1_000_000_000
        let initiation = try pair.initiatorSide.createInitiation(now: 0)
        #expect(Bool(checker.checkMAC1(initiation.span)))
        #expect(!Bool(checker.checkMAC2(initiation.span, source: source.span, now: 0)))
        let reply = try checker.makeReply(to: initiation.span, receiverIndex: pair.initiatorSide.localIndex, source: source.span, now: 0)
        #expect(reply.count == MessageLength.cookieReply)
        #expect(receiverIndex(of: reply.span) == pair.initiatorSide.localIndex)
        var tampered = reply
        tampered[40] ^= 1
        var spare = pair.initiatorSide.cookies
        #expect(throws: HandshakeError.decryptFailed) { try spare.consumeReply(tampered.span, now: 0) }
        try pair.initiatorSide.cookies.consumeReply(reply.span, now: second)
        // The reply answered one MAC1; a second copy of it has nothing left to answer.
        #expect(throws: HandshakeError.unexpected) { try pair.initiatorSide.cookies.consumeReply(reply.span, now: second) }
        let retry = try pair.initiatorSide.createInitiation(now: 2 * second)
        #expect(Bool(checker.checkMAC2(retry.span, source: source.span, now: 2 * second)))
        #expect(!Bool(checker.checkMAC2(retry.span, source: elsewhere.span, now: 2 * second)))
        // The secret is 120 s old: the cookie no longer counts, and the next reply has a new one.
        #expect(!Bool(checker.checkMAC2(retry.span, source: source.span, now: 121 * second)))
        // The initiator drops its cookie after 120 s too.
        let stale = try pair.initiatorSide.createInitiation(now: 122 * second)
        #expect(Array(stale.suffix(16)) == [UInt8](repeating: 0, count: 16))
        // The handshake still completes with MAC2 present.
        try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(retry.span), now: 2 * second)
        // A cookie reply cannot come from a stranger who lacks our peer's public key.
        let stranger = StaticIdentity(privateKey: PrivateKey())
        var strangeChecker = CookieChecker(identity: stranger)
        _ = try pair.initiatorSide.createInitiation(now: 3 * second)
        let forged = try strangeChecker.makeReply(to: stale.span, receiverIndex: 1, source: source.span, now: 0)
        #expect(throws: HandshakeError.decryptFailed) { try pair.initiatorSide.cookies.consumeReply(forged.span, now: 3 * second) }
        #expect(throws: HandshakeError.wrongLength(expected: 64, actual: 63)) {
            try pair.initiatorSide.cookies.consumeReply(Array(reply.dropLast()).span, now: 0)
        }
    }

    @Test func messagesRoundTrip() throws {
        var pair = WireGuardPair()
        let initiation = try pair.initiatorSide.createInitiation(localIndex: 0x0102_0304, now: 0)
        #expect(Array(initiation.prefix(8)) == [1, 0, 0, 0, 4, 3, 2, 1])
        #expect(MessageType(of: initiation.span) == .initiation && receiverIndex(of: initiation.span) == nil)
        try pair.responderSide.consumeInitiation(try pair.responder.openInitiation(initiation.span), now: 0)
        let response = try pair.responderSide.createResponse(localIndex: 0x0A0B_0C0D, now: 0)
        let parsed = try ResponseMessage(parsing: response.span)
        #expect(parsed.bytes == response && parsed.senderIndex == 0x0A0B_0C0D && parsed.receiverIndex == 0x0102_0304)
        #expect(receiverIndex(of: response.span) == 0x0102_0304)
        #expect(MessageType(of: [4, 0, 0].span) == nil && MessageType(of: [5, 0, 0, 0].span) == nil)
        #expect(TAI64N(unixNanoseconds: 0).bytes == [0x40, 0, 0, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0])
        #expect(TAI64N(unixNanoseconds: 1_999_999_999).bytes.suffix(4) == [0x3B, 0x00, 0x00, 0x00])
        #expect(TAI64N(unixNanoseconds: 5) < TAI64N(unixNanoseconds: 1_000_000_000))
    }
}
