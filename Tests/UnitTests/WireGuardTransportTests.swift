import TestSupport
import Testing

@testable import WireGuard

@Suite("WireGuard transport")
struct WireGuardTransportTests {
    func keys() throws -> (TransportKeys, TransportKeys) {
        var pair = WireGuardPair()
        return try pair.complete()
    }

    @Test func sealsInPlacePaddedToSixteen() throws {
        let (a, b) = try keys()
        var sender = a.sender, receiver = b.receiver
        var generator = SeededGenerator()
        print("seed \(TestSeed.value)")
        for length in [0, 1, 15, 16, 17, 1420] + (0..<40).map({ _ in Int.random(in: 0...1500, using: &generator) }) {
            let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let trailer = TransportSender.trailerLength(forPacketLength: length)
            #expect((length + trailer - 16) % 16 == 0 && trailer >= 16 && trailer < 32)
            var buffer = [UInt8](repeating: 0xAA, count: 20) + payload + [UInt8](repeating: 0xBB, count: trailer + 4)
            let datagram: Range<Int>
            do {
                var span = buffer.mutableSpan
                datagram = try sender.seal(&span, packet: 20..<(20 + length))
            }
            #expect(datagram == 4..<(20 + length + trailer))
            #expect(Array(buffer[0..<4]) == [0xAA, 0xAA, 0xAA, 0xAA] && Array(buffer.suffix(4)) == [0xBB, 0xBB, 0xBB, 0xBB])
            #expect(Array(buffer[4..<8]) == [4, 0, 0, 0] && receiverIndex(of: Array(buffer[datagram]).span) == b.localIndex)
            let opened: Result<(Range<Int>, UInt64), TransportError>
            do {
                var span = buffer.mutableSpan
                opened = receiver.open(&span, datagram: datagram)
            }
            let (plain, counter) = try opened.get()
            #expect(counter == sender.nextCounter - 1)
            #expect(plain == 20..<(20 + length + trailer - 16))
            #expect(Array(buffer[plain].prefix(length)) == payload, "length \(length), seed \(TestSeed.value)")
            #expect(buffer[plain].dropFirst(length).allSatisfy { $0 == 0 }, "zero padding")
        }
        // A keepalive: header and tag only.
        var buffer = [UInt8](repeating: 0, count: 32)
        var span = buffer.mutableSpan
        let keepalive = try sender.seal(&span, packet: 16..<16)
        let openedKeepalive = receiver.open(&span, datagram: 0..<32)
        #expect(keepalive == 0..<32)
        #expect(try openedKeepalive.get().0.isEmpty)
        var refusals: [TransportError] = []
        for packet in [15..<15, 16..<17] {
            do { _ = try sender.seal(&span, packet: packet) } catch { refusals.append(error) }
        }
        #expect(refusals == [.noRoom, .noRoom])
    }

    @Test func openRefusals() throws {
        let (a, b) = try keys()
        var sender = a.sender, receiver = b.receiver
        var buffer = [UInt8](repeating: 0, count: 16) + Array(0..<32) + [UInt8](repeating: 0, count: 16)
        do {
            var span = buffer.mutableSpan
            _ = try sender.seal(&span, packet: 16..<48)
        }
        let sealed = buffer
        func open(_ bytes: [UInt8]) -> Result<(Range<Int>, UInt64), TransportError> {
            var copy = bytes
            let count = copy.count
            var span = copy.mutableSpan
            return receiver.open(&span, datagram: 0..<count)
        }
        #expect(open(Array(sealed.prefix(31))).map(\.1) == .failure(.malformed))
        var wrong = sealed
        wrong[0] = 3
        #expect(open(wrong).map(\.1) == .failure(.malformed))
        wrong = sealed
        wrong[5] ^= 1
        #expect(open(wrong).map(\.1) == .failure(.unknownReceiver))
        for index in [8, 20, 47, 60] {
            wrong = sealed
            wrong[index] ^= 0x80
            #expect(open(wrong).map(\.1) == .failure(.decryptFailed), "byte \(index)")
        }
        // The forgeries did not spend counter 0: the real datagram still opens, once.
        #expect(open(sealed).map(\.1) == .success(0))
        #expect(open(sealed).map(\.1) == .failure(.replayed))
    }

    @Test func replayWindow() {
        var filter = ReplayFilter()
        #expect(ReplayFilter.windowSize >= 2048)
        func take(_ counter: UInt64) -> Bool {
            guard filter.check(counter) else { return false }
            filter.accept(counter)
            return true
        }
        // In order.
        for counter in 0..<100 as Range<UInt64> { #expect(take(counter)) }
        #expect(!take(99) && !take(0))
        // Out of order within the window.
        #expect(take(200) && take(150) && take(199) && !take(150))
        // A jump: what is more than the window behind is too old; what is just inside is fine.
        let top: UInt64 = 100_000
        #expect(take(top))
        #expect(take(top - 2047) && take(top - (ReplayFilter.windowSize - 1)))
        #expect(!take(top - ReplayFilter.windowSize) && !take(300))
        #expect(!take(top - 2047))
        // The counter limit.
        let limit = TransportLimits.rejectAfterMessages
        #expect(limit == UInt64.max - 8192)
        #expect(!filter.check(limit) && !filter.check(UInt64.max))
        #expect(take(limit - 1) && !take(limit - 1))
    }

    @Test func counterLimit() throws {
        let (a, b) = try keys()
        var sender = TransportSender(key: a.sending, remoteIndex: a.remoteIndex)
        sender.skip(to: TransportLimits.rejectAfterMessages - 1)
        var receiver = b.receiver
        #expect(roundTrip([1, 2, 3], &sender, &receiver) == .success([1, 2, 3]))
        #expect(roundTrip([1, 2, 3], &sender, &receiver) == .failure(.counterExhausted))
        // A datagram naming a counter at the limit is refused before any decryption.
        var buffer = [UInt8](repeating: 0, count: 32)
        buffer[0] = 4
        for offset in 0..<4 { buffer[4 + offset] = UInt8(truncatingIfNeeded: b.localIndex >> UInt32(8 * offset)) }
        for offset in 0..<8 { buffer[8 + offset] = UInt8(truncatingIfNeeded: TransportLimits.rejectAfterMessages >> UInt64(8 * offset)) }
        var span = buffer.mutableSpan
        let refused = receiver.open(&span, datagram: 0..<32).map(\.1)
        #expect(refused == .failure(.counterExhausted))
    }
}
