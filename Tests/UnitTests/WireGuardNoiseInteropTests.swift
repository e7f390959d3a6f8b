import Foundation
import Testing

@testable import WireGuard

/// udptun's handshake against PyPI noiseprotocol playing Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s
/// with WireGuard's prologue (Tests/scripts/noise-ikpsk2.py): each side's messages consumed by the
/// other, byte for byte equal to udptun's own where the inputs are fixed, and equal transport keys
/// (one transport message each way).
@Suite("WireGuard handshake against noiseprotocol")
struct WireGuardNoiseInteropTests {
    let initiatorKey = WireGuardPair.initiatorKey
    let responderKey = WireGuardPair.responderKey
    let initiatorEphemeral = PrivateKey(base64: "cDl0mHnb4HvY0tV+1X7yLkSg3pQ9Tz6fWv2eRb8aUnE=")!
    let responderEphemeral = PrivateKey(base64: "sO9Fp3m0Y2q7hJkqVb5y+e8rTfZ1nWcX4d6GaL0iM1g=")!
    let psk = PresharedKey(bytes: (0..<32).map { UInt8($0 * 7) })!
    let timestamp = TAI64N(unixNanoseconds: 1_765_000_000_500_000_000)

    func python(_ request: [String: String]) throws -> [String: Any] {
        let script = PythonReference.scriptDirectory.appendingPathComponent("noise-ikpsk2.py").path
        let input = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        let output = try PythonReference.run([script], input: input)
        return try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], "output: \(output)")
    }

    func hex(_ object: [String: Any], _ key: String) throws -> [UInt8] {
        [UInt8](hex: try #require(object[key] as? String, "no \(key) in \(object)"))
    }

    /// The transport message `sender` seals around `plaintext` (a multiple of 16 bytes, so no padding).
    func seal(_ plaintext: [UInt8], _ sender: inout TransportSender) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 16) + plaintext + [UInt8](repeating: 0, count: 16)
        let count = plaintext.count
        let range: Range<Int>
        do {
            var span = buffer.mutableSpan
            range = try sender.seal(&span, packet: 16..<(16 + count))
        }
        return Array(buffer[range])
    }

    /// A transport message with counter 0 to `receiver` around noiseprotocol's ciphertext, opened.
    func open(_ ciphertext: [UInt8], _ receiver: inout TransportReceiver) throws -> [UInt8] {
        var buffer: [UInt8] = [4, 0, 0, 0]
        for shift in stride(from: 0, to: 32, by: 8) { buffer.append(UInt8(truncatingIfNeeded: receiver.localIndex >> UInt32(shift))) }
        buffer += [UInt8](repeating: 0, count: 8) + ciphertext
        let count = buffer.count
        var span = buffer.mutableSpan
        let (plain, _) = try receiver.open(&span, datagram: 0..<count).get()
        return Array(buffer[plain])
    }

    @Test func theirInitiatorOurResponder() throws {
        let initiator = StaticIdentity(privateKey: initiatorKey), responder = StaticIdentity(privateKey: responderKey)
        var request = [
            "role": "initiator", "static": initiatorKey.bytes.hex, "remote_static": responderKey.publicKey.bytes.hex,
            "ephemeral": initiatorEphemeral.bytes.hex, "psk": psk.bytes.hex, "payload": timestamp.bytes.hex
        ]
        let first = try python(request)
        let noiseInitiation = try hex(first, "message1")
        #expect(noiseInitiation.count == 32 + 48 + 28)
        // udptun's initiator, given the same ephemeral key and timestamp, writes the same bytes.
        var ours = Handshake(identity: initiator, peer: responder.publicKey, presharedKey: psk)
        let ownInitiation = try ours.createInitiation(localIndex: 5, ephemeral: initiatorEphemeral, timestamp: timestamp, now: 0)
        #expect(Array(ownInitiation[8..<116]) == noiseInitiation)
        // Their message in WireGuard's framing, consumed by udptun's responder.
        var framed: [UInt8] = [1, 0, 0, 0, 5, 0, 0, 0] + noiseInitiation + [UInt8](repeating: 0, count: 32)
        var macs = CookieGenerator(peer: responder.publicKey)
        macs.addMACs(to: &framed, now: 0)
        let opened = try responder.openInitiation(framed.span)
        #expect(opened.peer == initiator.publicKey)
        var responderSide = Handshake(identity: responder, peer: initiator.publicKey, presharedKey: psk)
        try responderSide.consumeInitiation(opened, now: 0)
        #expect(responderSide.latestTimestamp == timestamp)
        let response = try responderSide.createResponse(localIndex: 9, ephemeral: responderEphemeral, now: 0)
        let derived = responderSide.transportKeys()
        let responderKeys = try #require(derived)
        // Our response read by them; one transport message each way.
        let fromUs = Array("udptun responder to noiseprotocol".utf8.prefix(32))
        var responderSender = responderKeys.sender
        let sealed = try seal(fromUs, &responderSender)
        let fromThem = Array("noiseprotocol initiator to udptun".utf8.prefix(32))
        request["message2"] = Array(response[12..<60]).hex
        request["send"] = fromThem.hex
        request["receive"] = Array(sealed[16...]).hex
        let second = try python(request)
        #expect(second["handshake_finished"] as? Bool == true)
        #expect(try hex(second, "payload2").isEmpty)
        #expect(try hex(second, "received") == fromUs)
        var responderReceiver = responderKeys.receiver
        let theirs = try hex(second, "sent")
        #expect(try open(theirs, &responderReceiver) == fromThem)
        // udptun's own initiator takes the same response and derives the same keys: its transport
        // message is theirs byte for byte.
        try ours.consumeResponse(response.span, identity: initiator)
        let ourKeys = ours.transportKeys()
        var initiatorSender = try #require(ourKeys).sender
        #expect(Array(try seal(fromThem, &initiatorSender)[16...]) == theirs)
    }

    @Test func ourInitiatorTheirResponder() throws {
        let initiator = StaticIdentity(privateKey: initiatorKey), responder = StaticIdentity(privateKey: responderKey)
        var initiatorSide = Handshake(identity: initiator, peer: responder.publicKey, presharedKey: psk)
        let initiation = try initiatorSide.createInitiation(
            localIndex: 0x1234_5678, ephemeral: initiatorEphemeral, timestamp: timestamp, now: 0)
        var request = [
            "role": "responder", "static": responderKey.bytes.hex, "ephemeral": responderEphemeral.bytes.hex,
            "psk": psk.bytes.hex, "message1": Array(initiation[8..<116]).hex
        ]
        let first = try python(request)
        #expect(try hex(first, "payload") == timestamp.bytes)
        #expect(try hex(first, "remote_static") == initiator.publicKey.bytes)
        let noiseResponse = try hex(first, "message2")
        #expect(noiseResponse.count == 48)
        // udptun's responder with the same ephemeral key answers with the same bytes.
        var ownResponder = Handshake(identity: responder, peer: initiator.publicKey, presharedKey: psk)
        try ownResponder.consumeInitiation(try responder.openInitiation(initiation.span), now: 0)
        let ownResponse = try ownResponder.createResponse(localIndex: 77, ephemeral: responderEphemeral, now: 0)
        #expect(Array(ownResponse[12..<60]) == noiseResponse)
        // Their response in WireGuard's framing, consumed by udptun's initiator.
        var framed: [UInt8] = [2, 0, 0, 0, 77, 0, 0, 0, 0x78, 0x56, 0x34, 0x12] + noiseResponse + [UInt8](repeating: 0, count: 32)
        var macs = CookieGenerator(peer: initiator.publicKey)
        macs.addMACs(to: &framed, now: 0)
        #expect(framed == ownResponse)
        try initiatorSide.consumeResponse(framed.span, identity: initiator)
        let derived = initiatorSide.transportKeys()
        let keys = try #require(derived)
        #expect(keys.remoteIndex == 77 && keys.localIndex == 0x1234_5678)
        let fromUs = Array("udptun initiator to noiseprotocol".utf8.prefix(32))
        var sender = keys.sender
        let sealed = try seal(fromUs, &sender)
        let fromThem = Array("noiseprotocol responder to udptun".utf8.prefix(32))
        request["send"] = fromThem.hex
        request["receive"] = Array(sealed[16...]).hex
        let second = try python(request)
        #expect(try hex(second, "message2") == noiseResponse)
        #expect(try hex(second, "received") == fromUs)
        var receiver = keys.receiver
        let theirs = try hex(second, "sent")
        #expect(try open(theirs, &receiver) == fromThem)
        let ownKeys = ownResponder.transportKeys()
        var ownSender = try #require(ownKeys).sender
        #expect(Array(try seal(fromThem, &ownSender)[16...]) == theirs)
    }
}
