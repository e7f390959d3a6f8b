import WireGuard

// The WireGuard handshake as an attacker reaches it: any bytes to a responder (wg-initiation), and
// any bytes to an initiator awaiting a response or a cookie reply, and to a session's transport
// receiver (wg-response). Each input runs as given and, when it has a handshake message's length,
// again with MAC1 (and MAC2) made right, so mutations get past the MAC to the Curve25519 and AEAD
// steps. The states are built once with fixed keys and copied per input (they are values).

struct WireGuardFixture {
    let initiator = StaticIdentity(privateKey: PrivateKey(base64: "EKf7tq8kE2cqPS5CJ6QwWa6gWlm2+ohhXyZ5e8QKPWo=")!)
    let responder = StaticIdentity(privateKey: PrivateKey(base64: "CBeY8CI8kwBg9bXWJeD5LAJ43hXQwkCs87J8pZqkv1k=")!)
    let stamp = TAI64N(unixNanoseconds: 1_765_000_000_000_000_000)
    var responderSide: Handshake
    var initiatorSide: Handshake
    var checker: CookieChecker
    let initiation: [UInt8]
    let response: [UInt8]
    let cookieReply: [UInt8]
    let transport: [UInt8]
    var receiver: TransportReceiver

    init() {
        let psk = PresharedKey(bytes: [UInt8](repeating: 3, count: 32))!
        let responderTemplate = Handshake(identity: responder, peer: initiator.publicKey, presharedKey: psk)
        var initiatorTemplate = Handshake(identity: initiator, peer: responder.publicKey, presharedKey: psk)
        var cookieChecker = CookieChecker(identity: responder)
        let firstMessage = try! initiatorTemplate.createInitiation(
            localIndex: 1, ephemeral: PrivateKey(base64: "cDl0mHnb4HvY0tV+1X7yLkSg3pQ9Tz6fWv2eRb8aUnE=")!, timestamp: stamp, now: 0)
        let reply = try! cookieChecker.makeReply(
            to: firstMessage.span, receiverIndex: 1, source: [198, 18, 0, 1, 0x1F, 0x90].span, now: 0)
        var answering = responderTemplate
        try! answering.consumeInitiation(try! responder.openInitiation(firstMessage.span), now: 0)
        let secondMessage = try! answering.createResponse(
            localIndex: 2, ephemeral: PrivateKey(base64: "sO9Fp3m0Y2q7hJkqVb5y+e8rTfZ1nWcX4d6GaL0iM1g=")!, now: 0)
        var sender = answering.transportKeys()!.sender
        var buffer = [UInt8](repeating: 0, count: 16) + [UInt8](repeating: 0x45, count: 20) + [UInt8](repeating: 0, count: 28)
        var span = buffer.mutableSpan
        let range = try! sender.seal(&span, packet: 16..<36)
        var finishing = initiatorTemplate
        try! finishing.consumeResponse(secondMessage.span, identity: initiator)
        responderSide = responderTemplate
        initiatorSide = initiatorTemplate
        checker = cookieChecker
        initiation = firstMessage
        response = secondMessage
        cookieReply = reply
        transport = Array(buffer[range])
        receiver = finishing.transportKeys()!.receiver
    }
}

nonisolated(unsafe) let wireGuard = WireGuardFixture()

/// `input` as given, and (when it has the length of a message with MACs) with MAC1/MAC2 made right for `peer`.
func withMACVariants(_ input: [UInt8], for peer: PublicKey, _ body: ([UInt8]) -> Void) {
    body(input)
    guard input.count == MessageLength.initiation || input.count == MessageLength.response else { return }
    var fixed = input
    var macs = CookieGenerator(peer: peer)
    macs.addMACs(to: &fixed, now: 0)
    body(fixed)
}

func fuzzWireGuardInitiation(_ input: [UInt8]) {
    let fixture = wireGuard
    withMACVariants(input, for: fixture.responder.publicKey) { bytes in
        let mac1 = fixture.checker.checkMAC1(bytes.span)
        _ = fixture.checker.checkMAC2(bytes.span, source: [1, 2, 3, 4, 5, 6].span, now: 1)
        let opened: OpenedInitiation
        do { opened = try fixture.responder.openInitiation(bytes.span) } catch {
            check((error as? HandshakeError) != .badMAC1 || !mac1, "openInitiation refused a message checkMAC1 accepts")
            return
        }
        check(mac1 && bytes.count == MessageLength.initiation && MessageType(of: bytes.span) == .initiation, "opened without MAC1")
        check(opened.peer == fixture.initiator.publicKey, "a static key nobody holds decrypted")
        var responder = fixture.responderSide
        do { try responder.consumeInitiation(opened, now: 0) } catch { return }
        // Authenticated: only the initiator could have made it, with our fixed timestamp.
        check(responder.latestTimestamp == fixture.stamp, "accepted timestamp")
        guard let response = try? responder.createResponse(now: 0), response.count == MessageLength.response,
            responder.transportKeys() != nil
        else { return check(false, "no response to an accepted initiation") }
    }
}

func fuzzWireGuardResponse(_ input: [UInt8]) {
    let fixture = wireGuard
    if let type = MessageType(of: input.span), let parsed = try? ResponseMessage(parsing: input.span) {
        check(type == .response && parsed.bytes == input, "response round trip")
    }
    if let parsed = try? CookieReplyMessage(parsing: input.span) { check(parsed.bytes == input, "cookie reply round trip") }
    if let index = receiverIndex(of: input.span) { check(input.count >= 8, "receiver index of \(input.count) bytes: \(index)") }
    withMACVariants(input, for: fixture.initiator.publicKey) { bytes in
        var initiator = fixture.initiatorSide
        do {
            try initiator.consumeResponse(bytes.span, identity: fixture.initiator)
            check(bytes.count == MessageLength.response, "accepted a response of \(bytes.count) bytes")
            check(initiator.transportKeys() != nil, "no keys after a response")
        } catch {
            check(initiator.state == .initiationSent, "a refused response changed the state")
        }
        var cookies = fixture.initiatorSide.cookies
        if (try? cookies.consumeReply(bytes.span, now: 0)) != nil {
            check(bytes.count == MessageLength.cookieReply && cookies.hasCookie(now: 0), "cookie reply accepted")
        }
    }
    var receiver = fixture.receiver
    var buffer = input
    let count = buffer.count
    var span = buffer.mutableSpan
    if case .success(let (plain, _)) = receiver.open(&span, datagram: 0..<count) {
        check(plain.lowerBound == 16 && plain.upperBound == count - 16, "plaintext range \(plain) of \(count)")
    }
}
