import Glibc
import Testing

@testable import KernelIO
@testable import WireFormat

/// Gathered UDP GSO sends, checked against the kernel over loopback: the receiver (no GRO) must see
/// every datagram, in order, with its own bytes, whatever the queue merged.
@Suite("Send queue: equal-length packets to one peer leave as one UDP GSO message")
struct SendQueueTests {
    /// Sends one datagram per entry of `lengths` (slot i holds bytes i, i+1, …) to `peers[i]`, through
    /// a queue that gathers; returns the messages used and what each receiver got.
    private func send(lengths: [Int], peers peerIndex: [Int]) throws -> (messages: Int, received: [[[UInt8]]]) {
        let loopback = SocketAddress(ip: .v4(0x7F00_0001), port: 0)
        let sender = try UDPSocket(for: loopback, bind: true)
        try #require(sender.enableUDPGSO(), "UDP GSO (Linux 4.18+) is needed")
        let receivers = try (0..<(peerIndex.max()! + 1)).map { _ in try UDPSocket(for: loopback, bind: true) }
        let addresses = receivers.map { $0.localAddress! }
        let batch = PacketBatch(slotCount: lengths.count, slotSize: 2048)
        let queue = SendQueue(capacity: 64)
        for (slot, length) in lengths.enumerated() {
            batch.withMutableSlot(slot) { bytes in
                for index in 0..<length { bytes[index] = UInt8(truncatingIfNeeded: slot &+ index) }
            }
            #expect(
                queue.append(
                    batch, slot: slot, range: 0..<length, to: addresses[peerIndex[slot]],
                    family: sender.family, gather: true))
        }
        let messages = queue.count
        #expect(queue.datagramTotal == lengths.count)
        let result = sender.send(queue, waker: nil)
        #expect(result.sent == lengths.count && result.failed == 0, "\(result)")
        var received: [[[UInt8]]] = []
        for receiver in receivers {
            let inbox = PacketBatch(slotCount: 64, slotSize: 2048)
            var datagrams: [[UInt8]] = []
            while true {
                let count = try receiver.receive(into: inbox, waker: nil, timeoutMilliseconds: 200)
                if count == 0 { break }
                for slot in 0..<count { datagrams.append(inbox.withPacket(slot) { span in (0..<span.count).map { span[$0] } }) }
            }
            received.append(datagrams)
        }
        return (messages, received)
    }

    private func expected(_ lengths: [Int], _ slots: [Int]) -> [[UInt8]] {
        slots.map { slot in (0..<lengths[slot]).map { UInt8(truncatingIfNeeded: slot &+ $0) } }
    }

    @Test("a run of equal lengths, ended by a shorter one, is one message; a longer one starts the next")
    func equalLengthsGather() throws {
        let lengths = [100, 100, 100, 60, 100, 100, 120, 120]
        let (messages, received) = try send(lengths: lengths, peers: Array(repeating: 0, count: lengths.count))
        // [100 100 100 60] [100 100] [120 120]: a datagram longer than the message's size cannot join it.
        #expect(messages == 3)
        #expect(received[0] == expected(lengths, Array(0..<lengths.count)))
    }

    @Test("packets to different peers never share a message, and each peer gets its own in order")
    func peersKeptApart() throws {
        let lengths = [80, 80, 80, 80, 80, 80]
        let peers = [0, 0, 1, 1, 0, 0]
        let (messages, received) = try send(lengths: lengths, peers: peers)
        #expect(messages == 3)
        #expect(received[0] == expected(lengths, [0, 1, 4, 5]))
        #expect(received[1] == expected(lengths, [2, 3]))
    }

    @Test("a message stops at 64 datagrams")
    func segmentLimit() throws {
        let lengths = Array(repeating: 40, count: 64 + 10)
        let queue = SendQueue(capacity: 128)
        let batch = PacketBatch(slotCount: lengths.count, slotSize: 64)
        let peer = SocketAddress(ip: .v4(0x7F00_0001), port: 9)
        for slot in lengths.indices { #expect(queue.append(batch, slot: slot, range: 0..<40, to: peer, family: AF_INET, gather: true)) }
        #expect(queue.count == 2)
        #expect(queue.datagramTotal == lengths.count)
    }

    @Test("without gather (GSO off), every packet is its own message")
    func noGather() throws {
        let queue = SendQueue(capacity: 16)
        let batch = PacketBatch(slotCount: 4, slotSize: 64)
        let peer = SocketAddress(ip: .v4(0x7F00_0001), port: 9)
        for slot in 0..<4 { queue.append(batch, slot: slot, range: 0..<40, to: peer, family: AF_INET) }
        #expect(queue.count == 4)
    }
}
