import Foundation
import Testing

extension EndToEnd {
    /// socat's TUN ↔ UDP bridge speaks the raw format (one IP packet per datagram), as the seed programs
    /// did. Each side of udptun must work with socat as its peer.
    @Suite("Interoperability with socat", .serialized, .requiresRoot)
    struct InteropTests {
        static let payloads = 2000

        @Test("socat as the client (A) → udptun-relay (B) → sink (C), and TCP both ways")
        func socatClientWithOurRelay() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                _ = try lab.relay()
                let sink = try lab.sink(["--expect", "\(Self.payloads)", "--timeout", "30"])
                let socat = try lab.spawn(
                    .a,
                    [
                        "socat", "UDP:\(Lab.addressB):8080,bind=\(Lab.addressA):40000",
                        "TUN,tun-name=tun1,iff-no-pi,iff-up"
                    ], name: "socat-client")
                Thread.sleep(forTimeInterval: 0.5)
                #expect(socat.isRunning, "socat exited: \(socat.stderr)")
                // The generator alone: ordinary UDP that A's kernel routes into socat's tun1.
                let generator = try lab.client(
                    [
                        "--no-tunnel", "--generate", "\(Lab.addressC):8080", "--count", "\(Self.payloads)",
                        "--rate", "2000", "--exit-when-done"
                    ], name: "generator")
                #expect(sink.wait(timeout: 40) == 0, "sink: \(sink.stdout)")
                #expect(generator.wait(timeout: 10) == 0)
                let report = try #require(sink.report())
                #expect(report.int("received") == Self.payloads)
                #expect(report.int("lost") == 0)
                #expect(report.int("corrupt") == 0)
                try TCPTransfer.bothWays(lab, size: 1 << 20)
            }
        }

        @Test("udptun-client (A) → socat as the relay (B) → sink (C), and TCP both ways")
        func ourClientWithSocatRelay() throws {
            try Lab.ensureCommand("socat", package: "socat")
            try Lab.with { lab in
                let socat = try lab.spawn(
                    .b,
                    [
                        "socat", "UDP-LISTEN:8080,bind=\(Lab.addressB)",
                        "TUN,tun-name=tun2,iff-no-pi,iff-up"
                    ], name: "socat-relay")
                Thread.sleep(forTimeInterval: 0.5)
                #expect(socat.isRunning, "socat exited: \(socat.stderr)")
                let sink = try lab.sink(["--expect", "\(Self.payloads)", "--timeout", "30"])
                let client = try lab.client([
                    "--relay", "\(Lab.addressB):8080", "--generate", "\(Lab.addressC):8080",
                    "--count", "\(Self.payloads)", "--rate", "2000"
                ])
                #expect(sink.wait(timeout: 40) == 0, "sink: \(sink.stdout)")
                let report = try #require(sink.report())
                #expect(report.int("received") == Self.payloads)
                #expect(report.int("lost") == 0)
                #expect(report.int("corrupt") == 0)
                try TCPTransfer.bothWays(lab, size: 1 << 20)
                #expect(client.stop() == 0)
                let clientReport = try #require(client.report())
                #expect(clientReport.int("forwarded") > 0, "return traffic from socat reached tun1")
            }
        }
    }
}
