import Foundation
import Glibc
import TestSupport
import Testing
import WireFormat

extension EndToEnd {
    /// What the tunnel must not do to the end-to-end checks the inner packets carry.
    @Suite("Integrity of inner packets", .serialized, .requiresRoot)
    struct IntegrityTests {
        /// One counter of `/proc/net/snmp` in `node`'s namespace (`group` "Tcp" or "Udp").
        static func snmp(_ lab: Lab, _ node: Lab.Node, _ group: String, _ name: String) throws -> Int {
            let result = lab.run(node, ["cat", "/proc/net/snmp"])
            let lines = result.stdout.split(separator: "\n").filter { $0.hasPrefix(group + ":") }
            guard lines.count == 2 else { throw LabError("no \(group) lines in /proc/net/snmp: \(result.stdout)") }
            let names = lines[0].split(separator: " "), values = lines[1].split(separator: " ")
            guard let index = names.firstIndex(of: Substring(name)), let value = Int(values[index]) else {
                throw LabError("no \(group) \(name) in /proc/net/snmp")
            }
            return value
        }

        /// Four consecutive packets of one flow from A's inner address to C (UDP probes to the sink, or
        /// TCP segments to a closed port), each with a valid transport checksum.
        static func flow(_ proto: String) throws -> [[UInt8]] {
            if proto == "tcp" {
                let (packet, header) = PacketBuilder.tcpSuperPacket(
                    payload: (0..<4000).map { UInt8(truncatingIfNeeded: $0) },
                    flags: TCPFlag.ack, segmentSize: 1000)
                var output = [UInt8](repeating: 0, count: 65536)
                var span = output.mutableSpan
                let layout = try GSOSegmenter.segment(packet.span, header: header, into: &span).get()
                return (0..<layout.count).map { Array(output[($0 * layout.stride)..<($0 * layout.stride + layout.length(of: $0))]) }
            }
            return (0..<4).map { sequence in
                var packet = PacketBuilder.probePacket(
                    source: 0xC613_0001, destination: 0xC612_0202, destinationPort: 8080,
                    sequence: UInt64(sequence), streamID: 31, length: 1000)
                let length = packet.count
                var span = packet.mutableSpan
                TransportChecksum.complete(&span, packet: 0..<length, version: 4, proto: IPProtocolNumber.udp, start: 20, offset: 6)
                return packet
            }
        }

        @Test(
            "a segment whose payload was corrupted on the way keeps its failing checksum through the relay's coalescing: C's kernel drops it",
            arguments: ["udp", "tcp"])
        func corruptSegmentsAreNotRepaired(proto: String) throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let relay = try lab.relay()
                let sink = try lab.sink()
                var packets = try Self.flow(proto)
                #expect(packets.count == 4)
                packets[1][packets[1].count - 1] ^= 0x40  // the original checksum now fails
                let group = proto == "tcp" ? "Tcp" : "Udp"
                let errorsBefore = try Self.snmp(lab, .c, group, "InCsumErrors")
                // Held while the datagrams queue, the relay takes all four in one batch: coalescible.
                kill(relay.process.processIdentifier, SIGSTOP)
                defer { kill(relay.process.processIdentifier, SIGCONT) }
                // From one endpoint, as a client sends: the relay binds an inner address in use to it.
                for packet in packets { try lab.sendDatagram(packet, from: .a, to: "\(Lab.addressB):8080", bind: "\(Lab.addressA):40200") }
                kill(relay.process.processIdentifier, SIGCONT)
                Thread.sleep(forTimeInterval: 0.5)
                #expect(relay.stop() == 0)
                #expect(sink.stop() == 0)
                let relayReport = try #require(relay.report())
                #expect(relayReport.int("forwarded") == 4, "\(relayReport)")
                #expect(
                    try Self.snmp(lab, .c, group, "InCsumErrors") == errorsBefore + 1,
                    "C's kernel saw the corrupt segment's failing checksum and dropped it")
                if proto == "udp" {
                    let sinkReport = try #require(sink.report())
                    #expect(sinkReport.int("corrupt") == 0, "the corrupt datagram never reached the sink: \(sinkReport)")
                    #expect(sinkReport.int("received") == 3, "the three intact ones did: \(sinkReport)")
                }
            }
        }
    }
}
