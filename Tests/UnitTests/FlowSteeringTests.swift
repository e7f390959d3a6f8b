import Testing

@testable import KernelIO
@testable import TestSupport
@testable import WireFormat

/// Which TUN queue a packet is written through: one queue per flow, and flows spread over the queues.
@Suite("Flow steering: every flow keeps one TUN queue, and flows spread over the queues")
struct FlowSteeringTests {
    private func queue(_ packet: [UInt8], of queues: Int) -> Int { FlowSteering.queue(for: packet.span, queues: queues) }

    /// A TCP packet from the client's inner address to C, from `sourcePort`.
    private func tcp(sourcePort: UInt16, payload: [UInt8] = [], ttl: UInt8 = 64) -> [UInt8] {
        var segment = PacketBuilder.tcp(payload: payload)
        PacketBuilder.put16(&segment, 0, sourcePort)
        return PacketBuilder.ipv4(proto: IPProtocolNumber.tcp, ttl: ttl, transport: segment)
    }

    @Test("packets of one flow take one queue, whatever their length, payload or TTL")
    func oneFlowOneQueue() {
        for queues in [2, 3, 4, 8, 64] {
            let first = queue(tcp(sourcePort: 40_000), of: queues)
            for length in [0, 1, 100, 1400] {
                let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
                #expect(queue(tcp(sourcePort: 40_000, payload: payload, ttl: UInt8(1 + length % 200)), of: queues) == first)
            }
        }
    }

    /// Linux hands connect() even ephemeral ports; a hash whose low bits follow the parity of its
    /// input (plain FNV-1a modulo 2) put every such flow on one queue.
    @Test("flows that differ only in even source ports spread over every queue", arguments: [2, 4, 8])
    func evenPortsSpread(queues: Int) {
        let ports = (0..<64).map { UInt16(40_000 + 2 * $0) }
        var perQueue = [Int](repeating: 0, count: queues)
        for port in ports { perQueue[queue(tcp(sourcePort: port), of: queues)] += 1 }
        #expect(perQueue.allSatisfy { $0 > 0 }, "\(perQueue)")
        // Roughly even: no queue takes more than half again its share (plus slack for small shares).
        #expect(perQueue.max()! <= 64 / queues * 3 / 2 + 4, "\(perQueue)")
    }

    @Test("the queue is always in range, and a single queue is always 0")
    func inRange() {
        for port in stride(from: UInt16(1), to: 60_000, by: 997) {
            let packet = tcp(sourcePort: port)
            #expect(queue(packet, of: 1) == 0)
            for queues in [2, 3, 5, 7, 64] { #expect((0..<queues).contains(queue(packet, of: queues))) }
        }
    }

    @Test("the fragments of one datagram take one queue (later fragments carry no ports)")
    func fragmentsStayTogether() {
        let udp = PacketBuilder.udp(sourcePort: 40_002, destinationPort: 8080, payload: [UInt8](repeating: 1, count: 32))
        let firstFragment = PacketBuilder.ipv4(flagsAndOffset: 0x2000, transport: udp)  // MF, offset 0
        let laterFragment = PacketBuilder.ipv4(flagsAndOffset: 0x0005, transport: [UInt8](repeating: 2, count: 40))
        for queues in [2, 4, 8] { #expect(queue(firstFragment, of: queues) == queue(laterFragment, of: queues)) }
    }

    @Test("IPv6 flows spread by their ports too; what is not IP goes to queue 0")
    func ipv6AndGarbage() {
        var perQueue = [0, 0]
        for index in 0..<32 {
            let udp = PacketBuilder.udp(sourcePort: UInt16(50_000 + 2 * index), payload: [0])
            perQueue[queue(PacketBuilder.ipv6(transport: udp), of: 2)] += 1
        }
        #expect(perQueue.allSatisfy { $0 > 0 }, "\(perQueue)")
        #expect(queue([UInt8](repeating: 0, count: 60), of: 4) == 0)  // version 0
        #expect(queue([0x45, 0, 0], of: 4) == 0)  // too short
        #expect(queue([0x60] + [UInt8](repeating: 0, count: 30), of: 4) == 0)  // IPv6, cut
    }
}

@Suite("UDP socket group: one address, several SO_REUSEPORT sockets")
struct SocketGroupTests {
    private let loopback = SocketAddress(ip: .v4(0x7F00_0001), port: 0)

    @Test("port 0 gives the whole group one free port")
    func groupSharesOnePort() throws {
        let group = try UDPSocket.bindGroup(loopback, count: 3)
        let ports = Set(group.compactMap { $0.localAddress?.port })
        #expect(group.count == 3 && ports.count == 1 && ports.first != 0, "\(ports)")
    }

    /// What a relay with many clients relies on: the kernel hands each peer (source address and
    /// port) to one socket of the group, and different peers to different sockets.
    @Test("each sender keeps one socket of the group, and sixteen senders reach more than one")
    func sendersSpreadOverTheGroup() throws {
        let group = try UDPSocket.bindGroup(loopback, count: 2)
        let address = try #require(group[0].localAddress)
        let senders = try (0..<16).map { _ in try UDPSocket(for: loopback, bind: true) }
        for round in 0..<3 {
            for (index, sender) in senders.enumerated() {
                try sender.send([UInt8(index), UInt8(round)].span, to: address)
            }
        }
        var socketsBySender: [UInt8: Set<Int>] = [:]
        for (socketIndex, socket) in group.enumerated() {
            let inbox = PacketBatch(slotCount: 64, slotSize: 2048)
            while true {
                let count = try socket.receive(into: inbox, waker: nil, timeoutMilliseconds: 200)
                if count == 0 { break }
                for slot in 0..<count { socketsBySender[inbox.withPacket(slot) { $0[0] }, default: []].insert(socketIndex) }
            }
        }
        #expect(socketsBySender.count == 16, "every sender's datagrams arrived: \(socketsBySender)")
        #expect(socketsBySender.values.allSatisfy { $0.count == 1 }, "a sender split over sockets: \(socketsBySender)")
        // All sixteen on one socket of two: 2 in 65,536.
        #expect(Set(socketsBySender.values.flatMap { $0 }).count == 2, "\(socketsBySender)")
    }

    @Test("an address someone else holds is refused, even with SO_REUSEPORT on our side")
    func heldAddressIsRefused() throws {
        let holder = try UDPSocket(for: loopback, bind: true)
        let taken = try #require(holder.localAddress)
        #expect(throws: SocketFailure.self) { _ = try UDPSocket.bindGroup(taken, count: 2) }
        // Another group holds it the same way: a second group may not join it.
        let group = try UDPSocket.bindGroup(loopback, count: 2)
        let groupAddress = try #require(group[0].localAddress)
        #expect(throws: SocketFailure.self) { _ = try UDPSocket.bindGroup(groupAddress, count: 2) }
        #expect(throws: SocketFailure.self) { _ = try UDPSocket.bindGroup(groupAddress, count: 1) }
    }
}
